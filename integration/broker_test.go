//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/market-data-store/mds/backpressure"
)

// requireBroker skips t unless the suite runs on the broker mode's Apache
// Kafka, whose listeners, authorizer and configuration t needs.
func requireBroker(t *testing.T) {
	t.Helper()
	if svc.cluster == nil {
		t.Skipf("needs the broker mode's Apache Kafka (mode %s): its SCRAM and TLS listeners, StandardAuthorizer and auto.create.topics.enable=false", svc.mode)
	}
}

// grant gives principal the ACLs the processor needs: read the fixture's
// topic and group, and create, describe and write its feedback topic.
// Without group reads it gets everything but the group.
func (f *fixture) grant(ctx context.Context, principal string, group bool) {
	f.t.Helper()
	acls := []*kadm.ACLBuilder{
		kadm.NewACLs().Allow(principal).AllowHosts().Topics(f.topic).Operations(kadm.OpRead, kadm.OpDescribe).ResourcePatternType(kadm.ACLPatternLiteral),
		kadm.NewACLs().Allow(principal).AllowHosts().Topics(f.feedback).Operations(kadm.OpCreate, kadm.OpWrite, kadm.OpDescribe, kadm.OpDescribeConfigs, kadm.OpRead).ResourcePatternType(kadm.ACLPatternLiteral),
	}
	if group {
		acls = append(acls, kadm.NewACLs().Allow(principal).AllowHosts().Groups(f.group).Operations(kadm.OpRead, kadm.OpDescribe).ResourcePatternType(kadm.ACLPatternLiteral))
	}
	for _, b := range acls {
		res, err := f.adm.CreateACLs(ctx, b)
		if err != nil {
			f.t.Fatalf("creating ACLs: %v", err)
		}
		for _, r := range res {
			if r.Err != nil {
				f.t.Fatalf("creating ACL %v: %v", r, r.Err)
			}
		}
	}
}

// ingestOver runs one processor with env (connection settings) over 5,000
// ticks and asserts they land exactly once.
func ingestOver(t *testing.T, f *fixture, name string, env map[string]string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	l := newLedger()
	if err := f.produce(ctx, batchSpec{From: 1, To: 5_000, PoisonEvery: 1000, Kinds: []poisonKind{poisonDecode}}, l); err != nil {
		t.Fatal(err)
	}
	a := f.startApp(t, name, env)
	db := f.connect(ctx)
	if err := f.waitIngested(ctx, db, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := a.stop(); err != nil {
		t.Errorf("graceful stop: %v", err)
	}
	f.assertExactlyOnce(ctx, db, l)
}

// TestSCRAM ingests over the SASL_PLAINTEXT listener as a SCRAM-SHA-512
// user that holds only the ACLs the processor needs (StandardAuthorizer):
// read its topic and group, create, describe and write the feedback topic.
func TestSCRAM(t *testing.T) {
	requireBroker(t)
	f := newFixture(t, 4)
	f.grant(context.Background(), "User:"+appUser[0], true)
	ingestOver(t, f, "scram-1", scramEnv(t, f, "scram-1"))
}

// scramEnv is the settings of member name connecting as appUser over the
// SCRAM-SHA-512 listener.
func scramEnv(t *testing.T, f *fixture, name string) map[string]string {
	env := f.env(t, name)
	env["MDS_KAFKA_BROKERS"] = strings.Join(svc.cluster.SASLAddrs(), ",")
	env["MDS_KAFKA_SASL_MECHANISM"] = "scram-sha-512"
	env["MDS_KAFKA_SASL_USERNAME"] = appUser[0]
	env["MDS_KAFKA_SASL_PASSWORD"] = appUser[1]
	return env
}

// TestTLS ingests over the TLS listener (the broker's certificate checked
// against the test CA) and over the mutual-TLS listener (with a client
// certificate, whose principal is a super user).
func TestTLS(t *testing.T) {
	requireBroker(t)
	for _, mutual := range []bool{false, true} {
		name := map[bool]string{false: "tls", true: "mtls"}[mutual]
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, 4)
			env := f.env(t, name)
			env["MDS_KAFKA_BROKERS"] = strings.Join(svc.cluster.TLSAddrs(), ",")
			env["MDS_KAFKA_TLS_ENABLED"] = "true"
			env["MDS_KAFKA_TLS_CA_FILE"] = svc.cluster.Certs.CAFile
			if mutual {
				env["MDS_KAFKA_BROKERS"] = strings.Join(svc.cluster.MTLSAddrs(), ",")
				env["MDS_KAFKA_TLS_CERT_FILE"] = svc.cluster.Certs.ClientCertFile
				env["MDS_KAFKA_TLS_KEY_FILE"] = svc.cluster.Certs.ClientKeyFile
			}
			ingestOver(t, f, name, env)
		})
	}
}

// readyz fetches /readyz: its status code and the reason of its kafka
// check.
func readyz(addr string) (int, string, error) {
	c := http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get("http://" + addr + "/readyz")
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, "", err
	}
	var rep struct {
		Checks map[string]string `json:"checks"`
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		return resp.StatusCode, "", fmt.Errorf("decoding /readyz %q: %w", b, err)
	}
	return resp.StatusCode, rep.Checks["kafka"], nil
}

// expectNotReady runs a processor with env and waits until /readyz
// answers 503 with a kafka reason containing every one of want; it fails
// if the processor ever says it is ready, or exits.
func expectNotReady(t *testing.T, f *fixture, name string, env map[string]string, want ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a := f.launchApp(t, name, env)
	var code int
	var reason string
	err := waitFor(ctx, 45*time.Second, 100*time.Millisecond, func() (bool, error) {
		select {
		case <-a.done:
			return false, fmt.Errorf("%s exited: %v", name, a.err)
		default:
		}
		var err error
		code, reason, err = readyz(a.addr)
		if err != nil {
			return false, nil
		}
		if code == http.StatusOK {
			return false, fmt.Errorf("/readyz says %s is ready (a silent idle member)", name)
		}
		for _, w := range want {
			if !strings.Contains(reason, w) {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("want /readyz 503 with a kafka reason naming %q; last: %d %q: %v", want, code, reason, err)
	}
	t.Logf("/readyz %d, kafka: %s", code, reason)
}

// TestMissingTopic runs the processor on a topic that does not exist, on a
// broker that does not create topics on demand: it must say so on /readyz,
// not idle as a member without partitions.
func TestMissingTopic(t *testing.T) {
	requireBroker(t)
	f := newFixture(t, 1)
	env := f.env(t, "missing-1")
	missing := uniqueName("no-such-topic")
	env["MDS_KAFKA_TOPICS"] = missing
	expectNotReady(t, f, "missing-1", env, missing)
}

// TestDeniedACL runs the processor as a SCRAM user that may read its topic
// but not its consumer group: it must say so on /readyz.
func TestDeniedACL(t *testing.T) {
	requireBroker(t)
	f := newFixture(t, 1)
	f.grant(context.Background(), "User:"+appUser[0], false)
	expectNotReady(t, f, "denied-1", scramEnv(t, f, "denied-1"), "GROUP_AUTHORIZATION_FAILED", f.group)
}

// TestFeedbackCompacted checks the feedback topic on Apache Kafka: the
// processor creates it compacted; after a processor restart, once the log
// cleaner has run, a reader from the start finds at most the last state or
// two of the coordinator (the active segment is never cleaned), the last of
// them published after the restart, and a fresh follower reads the level.
func TestFeedbackCompacted(t *testing.T) {
	requireBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	f := newFixture(t, 1)
	env := f.env(t, "fb-1")
	a := f.startApp(t, "fb-1", env)

	cfgs, err := f.adm.DescribeTopicConfigs(ctx, f.feedback)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := cfgs.On(f.feedback, nil)
	if err != nil {
		t.Fatalf("describing %s: %v", f.feedback, err)
	}
	policy := ""
	for _, c := range rc.Configs {
		if c.Key == "cleanup.policy" && c.Value != nil {
			policy = *c.Value
		}
	}
	if policy != "compact" {
		t.Fatalf("feedback topic cleanup.policy = %q, want compact", policy)
	}
	// As an operator might: roll segments quickly so that the cleaner has
	// closed segments to compact within the test.
	alter := []kadm.AlterConfig{
		{Name: "segment.ms", Value: kadm.StringPtr("200")},
		{Name: "min.cleanable.dirty.ratio", Value: kadm.StringPtr("0.01")},
	}
	if res, err := f.adm.AlterTopicConfigs(ctx, alter, f.feedback); err != nil || res[0].Err != nil {
		t.Fatalf("altering %s: %v %v", f.feedback, err, res)
	}

	// A few heartbeats (500ms), a restart, a few more.
	time.Sleep(2 * time.Second)
	if err := a.stop(); err != nil {
		t.Fatalf("graceful stop: %v", err)
	}
	restarted := time.Now()
	b := f.startApp(t, "fb-1", f.env(t, "fb-1"))
	defer b.stop()
	time.Sleep(2 * time.Second)

	var end int64
	var recs []*kgo.Record
	err = waitFor(ctx, time.Minute, 500*time.Millisecond, func() (bool, error) {
		ends, err := f.adm.ListEndOffsets(ctx, f.feedback)
		if err != nil {
			return false, nil
		}
		o, _ := ends.Lookup(f.feedback, 0)
		end = o.Offset
		recs, err = readAll(ctx, f.brokers, f.feedback, end)
		if err != nil {
			return false, err
		}
		return len(recs) <= 2, nil
	})
	if err != nil {
		t.Fatalf("feedback topic not compacted: %d records read from the start of %d published (%v)", len(recs), end, err)
	}
	last := recs[len(recs)-1]
	var ev backpressure.Event
	if err := json.Unmarshal(last.Value, &ev); err != nil || string(last.Key) != "fb-1" {
		t.Fatalf("last feedback record: key %q value %q: %v", last.Key, last.Value, err)
	}
	if ev.Time().Before(restarted) {
		t.Errorf("the last state of fb-1 on the compacted topic is from %s, before the restart at %s", ev.Time(), restarted)
	}
	t.Logf("compacted: %d of %d records remain; the last is fb-1 level %s at %s (after the restart)", len(recs), end, ev.Level, ev.Time().Format(time.RFC3339Nano))

	fol, err := backpressure.NewFollower(backpressure.WithBrokers(f.brokers...), backpressure.WithTopic(f.feedback))
	if err != nil {
		t.Fatal(err)
	}
	defer fol.Close()
	fctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- fol.Run(fctx) }()
	err = waitFor(ctx, 20*time.Second, 100*time.Millisecond, func() (bool, error) { return fol.Err() == nil && fol.Level() == backpressure.OK, nil })
	stop()
	<-done
	if err != nil {
		t.Errorf("a fresh follower did not read level ok: level %s, err %v", fol.Level(), fol.Err())
	}
}

// readAll reads topic partition 0 from the start up to end.
func readAll(ctx context.Context, brokers []string, topic string, end int64) ([]*kgo.Record, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}}))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	var out []*kgo.Record
	for {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		fs := cl.PollFetches(pctx)
		cancel()
		if err := fs.Err0(); err != nil {
			return nil, fmt.Errorf("reading %s: %w", topic, err)
		}
		for _, r := range fs.Records() {
			out = append(out, r)
			if r.Offset >= end-1 {
				return out, nil
			}
		}
	}
}
