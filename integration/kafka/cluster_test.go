//go:build integration

package kafkatest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"os"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// TestCluster starts one broker with every listener and the authorizer,
// and reaches it over each: PLAINTEXT, SCRAM-SHA-512, TLS and mutual TLS.
func TestCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a JVM")
	}
	c := StartT(t, Options{SCRAMUsers: map[string]string{"admin": "admin-secret"}, TLS: true, Authorizer: true, SuperUsers: []string{"User:admin", "User:CN=" + ClientCN}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	caPEM, err := os.ReadFile(c.Certs.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	cert, err := tls.LoadX509KeyPair(c.Certs.ClientCertFile, c.Certs.ClientKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		opts    []kgo.Opt
		wantErr bool
	}{
		{"plaintext", []kgo.Opt{kgo.SeedBrokers(c.Addrs()...)}, false},
		{"scram", []kgo.Opt{kgo.SeedBrokers(c.SASLAddrs()...), kgo.SASL(scram.Auth{User: "admin", Pass: "admin-secret"}.AsSha512Mechanism())}, false},
		{"scram-wrong-password", []kgo.Opt{kgo.SeedBrokers(c.SASLAddrs()...), kgo.SASL(scram.Auth{User: "admin", Pass: "wrong"}.AsSha512Mechanism())}, true},
		{"tls", []kgo.Opt{kgo.SeedBrokers(c.TLSAddrs()...), kgo.DialTLSConfig(&tls.Config{RootCAs: pool})}, false},
		{"mtls", []kgo.Opt{kgo.SeedBrokers(c.MTLSAddrs()...), kgo.DialTLSConfig(&tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}})}, false},
		{"mtls-no-certificate", []kgo.Opt{kgo.SeedBrokers(c.MTLSAddrs()...), kgo.DialTLSConfig(&tls.Config{RootCAs: pool})}, true},
	} {
		cl, err := kgo.NewClient(append(tc.opts, kgo.RetryTimeout(3*time.Second))...)
		if err != nil {
			t.Fatal(err)
		}
		_, err = kadm.NewClient(cl).CreateTopic(ctx, 1, 1, nil, "t-"+tc.name)
		cl.Close()
		if (err != nil) != tc.wantErr {
			t.Errorf("%s: creating a topic: %v, want error %v", tc.name, err, tc.wantErr)
		}
	}
}

// TestThreeBrokers starts three brokers, kills one and restarts it: a
// replicated topic keeps a leader throughout, and the restarted broker
// rejoins.
func TestThreeBrokers(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three JVMs")
	}
	c := StartT(t, Options{Brokers: 3})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.Addrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	if _, err := adm.CreateTopic(ctx, 3, -1, nil, "replicated"); err != nil {
		t.Fatal(err)
	}
	td, err := adm.ListTopics(ctx, "replicated")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range td["replicated"].Partitions {
		if len(p.Replicas) != 3 {
			t.Errorf("partition %d has replicas %v, want 3", p.Partition, p.Replicas)
		}
	}
	c.Kill(0)
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "replicated", Value: []byte("x")}).FirstErr(); err != nil {
		t.Errorf("producing with broker 1 down: %v", err)
	}
	if err := c.Restart(ctx, 0); err != nil {
		t.Fatal(err)
	}
}
