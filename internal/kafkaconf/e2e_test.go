package kafkaconf_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/market-data-store/mds/internal/kafkaconf"
	"github.com/market-data-store/mds/internal/secret"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	topic    = "secure.ticks"
	user     = "mds-user"
	password = "pl4nted-Kafka-Pa55word"
	// failBound is how soon a rejected connection must be reported.
	failBound = 5 * time.Second
)

// newCluster starts a one-broker kfake cluster with the topic seeded.
func newCluster(t *testing.T, opts ...kfake.Opt) []string {
	t.Helper()
	c, err := kfake.NewCluster(append(opts, kfake.NumBrokers(1), kfake.SeedTopics(1, topic))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}

// roundTrip connects with cfg, checks the connection with Ping, produces a
// record and consumes it back. Every step is bounded by timeout.
func roundTrip(t *testing.T, cfg kafkaconf.Config, timeout time.Duration) error {
	t.Helper()
	opts, err := cfg.Opts(zap.NewNop())
	if err != nil {
		t.Fatalf("Opts: %v", err)
	}
	cl, err := kgo.NewClient(append(opts, kgo.DefaultProduceTopic(topic), kgo.ConsumeTopics(topic))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := cfg.Ping(ctx, cl); err != nil {
		return err
	}
	want := t.Name()
	if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte(want)}).FirstErr(); err != nil {
		return err
	}
	for {
		fs := cl.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			return err
		}
		for _, r := range fs.Records() {
			if string(r.Value) == want {
				return nil
			}
		}
	}
}

func tlsConfig(p pki, brokers []string) kafkaconf.Config {
	cfg := kafkaconf.DefaultConfig()
	cfg.Brokers = brokers
	cfg.TLSEnabled = true
	cfg.TLSCAFile = p.caFile
	cfg.TLSServerName = serverName
	return cfg
}

func TestTLS(t *testing.T) {
	p := newPKI(t)
	brokers := newCluster(t, kfake.TLS(p.serverTLS(false)))
	mutual := newCluster(t, kfake.TLS(p.serverTLS(true)))

	ok := []struct {
		name   string
		modify func(*kafkaconf.Config)
	}{
		{"server verified by CA file", func(*kafkaconf.Config) {}},
		{"mutual tls", func(c *kafkaconf.Config) {
			c.Brokers, c.TLSCertFile, c.TLSKeyFile = mutual, p.certFile, p.keyFile
		}},
		{"insecure skip verify", func(c *kafkaconf.Config) {
			c.TLSCAFile, c.TLSServerName, c.TLSInsecureSkipVerify = "", "", true
		}},
	}
	for _, tc := range ok {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tlsConfig(p, brokers)
			tc.modify(&cfg)
			if err := roundTrip(t, cfg, 15*time.Second); err != nil {
				t.Fatal(err)
			}
		})
	}

	fail := []struct {
		name   string
		modify func(*kafkaconf.Config)
		check  func(error) bool
	}{
		{"untrusted CA", func(c *kafkaconf.Config) { c.TLSCAFile = p.otherCAFile },
			func(err error) bool { var e x509.UnknownAuthorityError; return errors.As(err, &e) }},
		{"system roots only", func(c *kafkaconf.Config) { c.TLSCAFile = "" },
			func(err error) bool { var e *tls.CertificateVerificationError; return errors.As(err, &e) }},
		{"wrong server name", func(c *kafkaconf.Config) { c.TLSServerName = "other.test" },
			func(err error) bool { var e x509.HostnameError; return errors.As(err, &e) }},
		{"server name defaults to the broker host", func(c *kafkaconf.Config) { c.TLSServerName = "" },
			func(err error) bool { var e x509.HostnameError; return errors.As(err, &e) }},
		{"mutual tls without client certificate", func(c *kafkaconf.Config) { c.Brokers = mutual },
			func(err error) bool { return err != nil }},
		{"plaintext client to tls listener", func(c *kafkaconf.Config) {
			*c = kafkaconf.DefaultConfig()
			c.Brokers = brokers
		}, func(err error) bool { return strings.Contains(err.Error(), "MDS_KAFKA_TLS_ENABLED") }},
	}
	for _, tc := range fail {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tlsConfig(p, brokers)
			tc.modify(&cfg)
			start := time.Now()
			err := roundTrip(t, cfg, failBound+5*time.Second)
			if err == nil {
				t.Fatal("connected")
			}
			if took := time.Since(start); took > failBound {
				t.Errorf("failure took %v", took)
			}
			if !tc.check(err) || !strings.Contains(err.Error(), "reaching kafka brokers") {
				t.Errorf("unexpected error: %v", err)
			}
		})
	}
}

func TestSASL(t *testing.T) {
	p := newPKI(t)
	users := []kfake.Opt{
		kfake.EnableSASL(),
		kfake.Superuser("PLAIN", user, password),
		kfake.Superuser("SCRAM-SHA-256", user, password),
		kfake.Superuser("SCRAM-SHA-512", user, password),
	}
	plaintext := newCluster(t, users...)
	mutual := newCluster(t, append(users, kfake.TLS(p.serverTLS(true)))...)

	for _, mech := range []string{"plain", "scram-sha-256", "scram-sha-512", "SCRAM-SHA-512"} {
		for _, secure := range []bool{false, true} {
			cfg := kafkaconf.DefaultConfig()
			cfg.Brokers = plaintext
			if secure {
				cfg = tlsConfig(p, mutual)
				cfg.TLSCertFile, cfg.TLSKeyFile = p.certFile, p.keyFile
			}
			cfg.SASLMechanism, cfg.SASLUsername, cfg.SASLPassword = mech, user, secret.New(password)
			name := mech
			if secure {
				name += " over mutual tls"
			}
			t.Run(name, func(t *testing.T) {
				if err := roundTrip(t, cfg, 15*time.Second); err != nil {
					t.Fatal(err)
				}
			})
			t.Run(name+" wrong password", func(t *testing.T) {
				cfg.SASLPassword = secret.New("not-" + password)
				start := time.Now()
				err := roundTrip(t, cfg, failBound+5*time.Second)
				if err == nil {
					t.Fatal("connected with a wrong password")
				}
				if took := time.Since(start); took > failBound {
					t.Errorf("failure took %v", took)
				}
				msg := err.Error()
				if !strings.Contains(msg, "reaching kafka brokers") || !strings.Contains(msg, user) ||
					!strings.Contains(msg, "check the credentials") || strings.Contains(msg, password) {
					t.Errorf("unclear error: %v", err)
				}
			})
		}
	}

	t.Run("wrong user", func(t *testing.T) {
		cfg := kafkaconf.DefaultConfig()
		cfg.Brokers = plaintext
		cfg.SASLMechanism, cfg.SASLUsername, cfg.SASLPassword = "scram-sha-256", "nobody", secret.New(password)
		if err := roundTrip(t, cfg, failBound); err == nil {
			t.Fatal("connected as an unknown user")
		}
	})
	t.Run("no sasl against a sasl cluster", func(t *testing.T) {
		cfg := kafkaconf.DefaultConfig()
		cfg.Brokers = plaintext
		if err := roundTrip(t, cfg, failBound); err == nil {
			t.Fatal("connected without authenticating")
		}
	})
}

// TestPasswordFileRotation shows that the password file is read at each
// authentication: a corrected file takes effect without a new Config.
func TestPasswordFileRotation(t *testing.T) {
	brokers := newCluster(t, kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-512", user, password))
	file := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(file, []byte("stale\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := kafkaconf.DefaultConfig()
	cfg.Brokers = brokers
	cfg.SASLMechanism, cfg.SASLUsername, cfg.SASLPasswordFile = "scram-sha-512", user, file
	opts, err := cfg.Opts(zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cfg.Ping(ctx, cl); err == nil {
		t.Fatal("stale password accepted")
	}
	if err := os.WriteFile(file, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Ping(ctx, cl); err != nil {
		t.Fatalf("rotated password not used: %v", err)
	}
}

func TestOptsWarnings(t *testing.T) {
	p := newPKI(t)
	for _, tc := range []struct {
		name   string
		cfg    kafkaconf.Config
		warned []string
	}{
		{"plain over plaintext", kafkaconf.Config{Brokers: []string{"b:9092"}, ClientID: "mds",
			SASLMechanism: "plain", SASLUsername: user, SASLPassword: secret.New(password)},
			[]string{"kafka sasl credentials are sent in clear text: set MDS_KAFKA_TLS_ENABLED=true"}},
		{"oauthbearer over plaintext", kafkaconf.Config{Brokers: []string{"b:9092"}, ClientID: "mds",
			SASLMechanism: "oauthbearer", SASLOAuthToken: secret.New(password)},
			[]string{"kafka sasl credentials are sent in clear text: set MDS_KAFKA_TLS_ENABLED=true"}},
		{"scram over plaintext", kafkaconf.Config{Brokers: []string{"b:9092"}, ClientID: "mds",
			SASLMechanism: "scram-sha-256", SASLUsername: user, SASLPassword: secret.New(password)}, nil},
		{"plain over tls", kafkaconf.Config{Brokers: []string{"b:9092"}, ClientID: "mds", TLSEnabled: true,
			SASLMechanism: "plain", SASLUsername: user, SASLPassword: secret.New(password)}, nil},
		{"skip verify", kafkaconf.Config{Brokers: []string{"b:9092"}, ClientID: "mds", TLSEnabled: true,
			TLSCAFile: p.caFile, TLSInsecureSkipVerify: true},
			[]string{"kafka broker certificates are NOT verified (MDS_KAFKA_TLS_INSECURE_SKIP_VERIFY=true): " +
				"anyone on the network path can impersonate the brokers and read the credentials; never use this outside development"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			core, logs := observer.New(zapcore.InfoLevel)
			opts, err := tc.cfg.Opts(zap.New(core))
			if err != nil {
				t.Fatal(err)
			}
			if len(opts) == 0 {
				t.Fatal("no options")
			}
			var warned []string
			for _, e := range logs.FilterLevelExact(zapcore.WarnLevel).All() {
				warned = append(warned, e.Message)
			}
			if strings.Join(warned, "\n") != strings.Join(tc.warned, "\n") {
				t.Errorf("warnings %q, want %q", warned, tc.warned)
			}
			for _, e := range logs.All() {
				for _, f := range e.Context {
					if strings.Contains(f.String, password) {
						t.Errorf("log field %s reveals the password", f.Key)
					}
				}
			}
		})
	}
}
