package feedback

import (
	"context"
	"encoding/json"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/market-data-store/mds/backpressure"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// state is a Source the test sets.
type state struct {
	mu sync.Mutex
	e  backpressure.Event
}

func (s *state) Current() backpressure.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.e
}

func (s *state) set(l backpressure.Level) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.e.Level = l
}

const testTopic = "test.feedback"

func newCluster(t *testing.T, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func newClient(t *testing.T, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// startPublisher runs a publisher until the test ends.
func startPublisher(t *testing.T, cl *kgo.Client, src Source, interval time.Duration, log *zap.Logger) *KafkaPublisher {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Topic = testTopic
	cfg.HeartbeatInterval = interval
	p, err := NewKafkaPublisher(cfg, cl, src, log, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return p
}

// consume reads the feedback topic from the start until n records arrived.
func consume(t *testing.T, c *kfake.Cluster, n int) []*kgo.Record {
	t.Helper()
	cl := newClient(t, kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics(testTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(100*time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out []*kgo.Record
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("got %d of %d records", len(out), n)
		}
		out = append(out, fs.Records()...)
	}
	return out
}

func decode(t *testing.T, r *kgo.Record) backpressure.Event {
	t.Helper()
	var e backpressure.Event
	if err := json.Unmarshal(r.Value, &e); err != nil {
		t.Fatalf("record value %s: %v", r.Value, err)
	}
	return e
}

func TestKafkaPublisherPublishesOnTheCompactedTopic(t *testing.T) {
	c := newCluster(t)
	cl := newClient(t, kgo.SeedBrokers(c.ListenAddrs()...))
	src := &state{e: backpressure.Event{CoordinatorID: "mds-1", Capacity: 10000, Level: backpressure.OK, Reason: backpressure.ReasonLowWatermark, Source: "store"}}
	const interval = 300 * time.Millisecond
	p := startPublisher(t, cl, src, interval, zap.NewNop())

	// The first heartbeat goes out at once, which needs the topic.
	first := consume(t, c, 1)[0]
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cfgs, err := kadm.NewClient(cl).DescribeTopicConfigs(ctx, testTopic)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := cfgs.On(testTopic, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Compacted, with segments short enough that a starting follower
	// reads minutes of heartbeats; the replication settings left to the
	// broker by default.
	want := map[string]string{"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.1", "segment.ms": "600000"}
	got := map[string]string{}
	for _, cf := range rc.Configs {
		if cf.Value != nil {
			got[cf.Key] = *cf.Value
		}
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("topic created with %s=%q, want %q", k, got[k], v)
		}
	}
	if e := decode(t, first); e.Reason != backpressure.ReasonHeartbeat || e.Level != backpressure.OK {
		t.Errorf("first record %+v, want an ok heartbeat", e)
	}

	src.set(backpressure.Hard)
	sent := event
	sent.CoordinatorID = "mds-1"
	sent.HeartbeatInterval = interval.Seconds()
	if err := p.Notify(context.Background(), sent); err != nil {
		t.Fatal(err)
	}
	// Read on until the transition and two heartbeats after it.
	var transition *kgo.Record
	var beats []backpressure.Event
	for n := 2; transition == nil || len(beats) < 2; n++ {
		rs := consume(t, c, n)
		transition, beats = nil, nil
		for _, r := range rs[1:] {
			e := decode(t, r)
			switch {
			case e.Reason == backpressure.ReasonHighWatermark:
				transition = r
			case transition != nil && e.Reason == backpressure.ReasonHeartbeat:
				beats = append(beats, e)
			}
		}
	}
	if string(transition.Key) != "mds-1" {
		t.Errorf("key %q, want the coordinator id", transition.Key)
	}
	if got := decode(t, transition); got != sent {
		t.Errorf("value %+v, want %+v", got, sent)
	}
	headers := map[string]string{}
	for _, h := range transition.Headers {
		headers[h.Key] = string(h.Value)
	}
	if headers["content-type"] != "application/json" || headers["schema"] != Schema {
		t.Errorf("headers %v", headers)
	}
	for _, b := range beats {
		if b.Level != backpressure.Hard || b.CoordinatorID != "mds-1" {
			t.Errorf("heartbeat %+v does not carry the current state", b)
		}
	}
	gap := beats[1].Time().Sub(beats[0].Time())
	if gap < interval/2 || gap > 3*interval {
		t.Errorf("heartbeats %v apart, want about %v", gap, interval)
	}
}

// An existing topic is used as it is; one that is not compacted is reported.
func TestKafkaPublisherWarnsOnUncompactedTopic(t *testing.T) {
	c := newCluster(t, kfake.SeedTopics(1, testTopic))
	cl := newClient(t, kgo.SeedBrokers(c.ListenAddrs()...))
	core, logs := observer.New(zapcore.InfoLevel)
	startPublisher(t, cl, &state{e: backpressure.Event{CoordinatorID: "mds-1"}}, time.Second, zap.New(core))
	consume(t, c, 1)
	warnings := logs.FilterMessageSnippet("not compacted")
	if n := warnings.Len(); n != 1 {
		t.Fatalf("%d warnings about compaction, want 1: %v", n, logs.All())
	}
	if msg := warnings.All()[0].Message; !strings.Contains(msg, "--entity-name "+testTopic+" --add-config cleanup.policy=compact") {
		t.Errorf("the warning does not name the fix: %s", msg)
	}
}

// With no broker, Notify returns at once (events not yet taken are replaced
// by newer ones), failures are counted and logged once for the whole
// episode, and publishing recovers when a broker appears.
func TestKafkaPublisherNeverBlocks(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cl := newClient(t, kgo.SeedBrokers(addr), kgo.MetadataMinAge(100*time.Millisecond), kgo.RetryBackoffFn(func(int) time.Duration { return 50 * time.Millisecond }))
	core, logs := observer.New(zapcore.InfoLevel)
	src := &state{e: backpressure.Event{CoordinatorID: "mds-1"}}
	p := startPublisher(t, cl, src, 200*time.Millisecond, zap.New(core))

	start := time.Now()
	for range 1000 {
		if err := p.Notify(context.Background(), event); err != nil {
			t.Fatal(err)
		}
	}
	if took := time.Since(start); took > time.Second {
		t.Fatalf("1000 Notify calls took %v with the broker down", took)
	}
	// The last event and a few heartbeats fail.
	waitFor(t, func() bool { return published(p.m, sinkKafka, outcomeError) >= 4 })
	if n := logs.FilterMessageSnippet("publishing feedback failed").Len(); n != 1 {
		t.Errorf("failure logged %d times, want once per episode", n)
	}

	_, port, _ := net.SplitHostPort(addr)
	portNum, err := strconv.Atoi(port)
	if err != nil {
		t.Fatal(err)
	}
	newCluster(t, kfake.Ports(portNum))
	waitFor(t, func() bool { return published(p.m, sinkKafka, outcomeOK) >= 1 })
	waitFor(t, func() bool { return logs.FilterMessageSnippet("publishing feedback recovered").Len() == 1 })
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// gated is a Source whose reads can be held, so that a test can raise a
// transition while a heartbeat is between reading the state and sending it.
type gated struct {
	state
	hold    atomic.Bool
	reading chan backpressure.Event // the state a held read returns
	release chan struct{}
}

func (g *gated) Current() backpressure.Event {
	e := g.state.Current()
	if g.hold.CompareAndSwap(true, false) {
		g.reading <- e
		<-g.release
	}
	return e
}

// A heartbeat that read the state before a transition is never published
// after that transition: the topic's last word is the newer level.
func TestKafkaPublisherHeartbeatNeverOvertakesTransition(t *testing.T) {
	c := newCluster(t)
	cl := newClient(t, kgo.SeedBrokers(c.ListenAddrs()...))
	src := &gated{reading: make(chan backpressure.Event), release: make(chan struct{})}
	src.e = event // hard
	const interval = 200 * time.Millisecond
	p := startPublisher(t, cl, src, interval, zap.NewNop())
	consume(t, c, 1) // the first heartbeat: the topic exists

	src.hold.Store(true)
	if e := <-src.reading; e.Level != backpressure.Hard { // a heartbeat read hard
		t.Fatalf("heartbeat read %v", e.Level)
	}
	ok := event
	ok.Level, ok.Reason = backpressure.OK, backpressure.ReasonLowWatermark
	src.set(backpressure.OK)
	if err := p.Notify(context.Background(), ok); err != nil {
		t.Fatal(err)
	}
	time.Sleep(interval / 2) // time for the transition to overtake, were it sent on its own
	close(src.release)

	// Read until the transition and two heartbeats after it.
	for n := 3; ; n++ {
		rs := consume(t, c, n)
		at := slices.IndexFunc(rs, func(r *kgo.Record) bool { return decode(t, r).Reason == backpressure.ReasonLowWatermark })
		if at < 0 || len(rs)-at-1 < 2 {
			continue
		}
		for _, r := range rs[at+1:] {
			if e := decode(t, r); e.Level != backpressure.OK {
				t.Fatalf("%v %s published after the ok transition", e.Level, e.Reason)
			}
		}
		return
	}
}

// Stop publishes a tombstone after the last event, and a follower stops
// counting the coordinator at once instead of after its stale period.
func TestKafkaPublisherStopTombstone(t *testing.T) {
	c := newCluster(t)
	cl := newClient(t, kgo.SeedBrokers(c.ListenAddrs()...))
	src := &state{e: event} // hard
	cfg := DefaultConfig()
	cfg.Topic = testTopic
	cfg.HeartbeatInterval = 100 * time.Millisecond
	p, err := NewKafkaPublisher(cfg, cl, src, zap.NewNop(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()

	f, err := backpressure.NewFollower(backpressure.WithBrokers(c.ListenAddrs()...), backpressure.WithTopic(testTopic),
		backpressure.WithStale(time.Minute), backpressure.WithClientOpts(kgo.FetchMaxWait(100*time.Millisecond)))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fdone := make(chan error, 1)
	go func() { fdone <- f.Run(ctx) }()
	defer func() { cancel(); <-fdone }()
	waitFor(t, func() bool { return f.Level() == backpressure.Hard })

	// As the lifecycle does: Stop while Run's context is still live.
	stopCtx, stopCancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer stopCancel()
	if err := p.Stop(stopCtx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(time.Second):
		t.Fatal("Run still running after Stop")
	}
	stopped := time.Now()
	waitFor(t, func() bool { return f.Level() == backpressure.OK })
	if took := time.Since(stopped); took > 5*time.Second {
		t.Errorf("follower dropped the stopped coordinator after %v", took)
	}
	var rs []*kgo.Record
	for n := 2; !slices.ContainsFunc(rs, func(r *kgo.Record) bool { return r.Value == nil }); n++ {
		rs = consume(t, c, n)
	}
	time.Sleep(3 * cfg.HeartbeatInterval) // nothing may follow the tombstone
	rs = consume(t, c, len(rs))
	if last := rs[len(rs)-1]; string(last.Key) != event.CoordinatorID || last.Value != nil {
		t.Errorf("last record %q=%q, want a tombstone for %q", last.Key, last.Value, event.CoordinatorID)
	}
}
