package backpressure_test

import (
	"context"
	"encoding/json"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"

	"github.com/market-data-store/mds/backpressure"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const topic = "test.feedback"

// feedbackTopic starts a kfake cluster with a compacted feedback topic and
// returns it with a producer client.
func feedbackTopic(t *testing.T) (*kfake.Cluster, *kgo.Client) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 1, 1, map[string]*string{"cleanup.policy": kadm.StringPtr("compact")}, topic); err != nil {
		t.Fatal(err)
	}
	return c, cl
}

func publish(t *testing.T, cl *kgo.Client, id string, l backpressure.Level, at time.Time) {
	t.Helper()
	v, err := json.Marshal(backpressure.Event{CoordinatorID: id, Capacity: 100, Level: l, Reason: "test", Source: "store", TS: backpressure.UnixSeconds(at)})
	if err != nil {
		t.Fatal(err)
	}
	produce(t, cl, &kgo.Record{Topic: topic, Key: []byte(id), Value: v})
}

func produce(t *testing.T, cl *kgo.Client, r *kgo.Record) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// changes records the levels a follower reports.
type changes struct {
	mu     sync.Mutex
	levels []backpressure.Level
}

func (c *changes) add(l backpressure.Level) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.levels = append(c.levels, l)
}

func (c *changes) get() []backpressure.Level {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]backpressure.Level(nil), c.levels...)
}

// follow starts a follower on the cluster and stops it at cleanup.
func follow(t *testing.T, c *kfake.Cluster, opts ...backpressure.Option) (*backpressure.Follower, *changes) {
	t.Helper()
	ch := new(changes)
	opts = append([]backpressure.Option{
		backpressure.WithBrokers(c.ListenAddrs()...),
		backpressure.WithTopic(topic),
		backpressure.WithClientOpts(kgo.FetchMaxWait(100 * time.Millisecond)),
		backpressure.OnChange(ch.add),
	}, opts...)
	f, err := backpressure.NewFollower(opts...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		f.Close()
	})
	return f, ch
}

// waitLevel waits until the follower reports want, using Changed.
func waitLevel(t *testing.T, f *backpressure.Follower, want backpressure.Level) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		changed := f.Changed()
		if f.Level() == want {
			return
		}
		select {
		case <-changed:
		case <-timeout:
			t.Fatalf("level is %v, want %v", f.Level(), want)
		}
	}
}

func TestFollowerWorstLevelWins(t *testing.T) {
	c, cl := feedbackTopic(t)
	f, ch := follow(t, c, backpressure.WithStale(time.Minute))
	if f.Level() != backpressure.OK || f.Scale() != 1 {
		t.Fatalf("before any event: %v scale %v, want ok 1", f.Level(), f.Scale())
	}
	steps := []struct {
		id    string
		level backpressure.Level
		want  backpressure.Level
		scale float64
	}{
		{"a", backpressure.OK, backpressure.OK, 1},
		{"b", backpressure.Soft, backpressure.Soft, 0.5},
		{"a", backpressure.Hard, backpressure.Hard, 0},
		{"a", backpressure.OK, backpressure.Soft, 0.5}, // b is still soft
		{"b", backpressure.OK, backpressure.OK, 1},
	}
	for _, s := range steps {
		publish(t, cl, s.id, s.level, time.Now())
		waitLevel(t, f, s.want)
		if got := f.Scale(); got != s.scale {
			t.Fatalf("after %s=%v: scale %v, want %v", s.id, s.level, got, s.scale)
		}
	}
	want := []backpressure.Level{backpressure.Soft, backpressure.Hard, backpressure.Soft, backpressure.OK}
	if got := ch.get(); !slices.Equal(got, want) {
		t.Errorf("changes %v, want %v", got, want)
	}
}

func TestFollowerStaleCoordinatorStopsCounting(t *testing.T) {
	const stale = 500 * time.Millisecond
	c, cl := feedbackTopic(t)
	f, _ := follow(t, c, backpressure.WithStale(stale))

	sent := time.Now()
	publish(t, cl, "a", backpressure.Hard, sent)
	waitLevel(t, f, backpressure.Hard)
	// No record arrives after this one: the follower must wake up by itself.
	waitLevel(t, f, backpressure.OK)
	if held := time.Since(sent); held < stale-10*time.Millisecond {
		t.Errorf("hard level dropped after %v, before the stale period %v", held, stale)
	}
}

// A publisher announcing a heartbeat interval longer than a third of the
// follower's stale period keeps counting for three of its intervals.
func TestFollowerHonoursAnnouncedHeartbeat(t *testing.T) {
	const stale = 300 * time.Millisecond
	const interval = 500 * time.Millisecond
	c, cl := feedbackTopic(t)
	f, _ := follow(t, c, backpressure.WithStale(stale))

	sent := time.Now()
	v, err := json.Marshal(backpressure.Event{CoordinatorID: "a", Capacity: 100, Level: backpressure.Hard, Reason: "test",
		Source: "store", TS: backpressure.UnixSeconds(sent), HeartbeatInterval: interval.Seconds()})
	if err != nil {
		t.Fatal(err)
	}
	produce(t, cl, &kgo.Record{Topic: topic, Key: []byte("a"), Value: v})
	waitLevel(t, f, backpressure.Hard)
	waitLevel(t, f, backpressure.OK)
	if held := time.Since(sent); held < 3*interval-10*time.Millisecond {
		t.Errorf("hard level dropped after %v, before three announced heartbeats (%v)", held, 3*interval)
	}
}

// Err tells why nothing is read: unreachable brokers, a missing topic; and
// clears once the follower reads.
func TestFollowerErr(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	f, err := backpressure.NewFollower(backpressure.WithBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Err(); err != nil {
		t.Fatalf("Err before Run = %v", err)
	}
	done := make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { done <- f.Run(ctx) }()
	waitErr(t, f, "connecting to broker")
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	c, cl := feedbackTopic(t)
	f, _ = follow(t, c, backpressure.WithTopic("no.such.topic"))
	waitErr(t, f, "UNKNOWN_TOPIC_OR_PARTITION")

	f, _ = follow(t, c)
	publish(t, cl, "a", backpressure.Soft, time.Now())
	waitLevel(t, f, backpressure.Soft)
	if err := f.Err(); err != nil {
		t.Errorf("Err while reading = %v", err)
	}
}

func waitErr(t *testing.T, f *backpressure.Follower, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for err := f.Err(); err == nil || !strings.Contains(err.Error(), want); err = f.Err() {
		if time.Now().After(deadline) {
			t.Fatalf("Err = %v, want one mentioning %q", err, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestFollowerLateStarterLearnsCompactedState(t *testing.T) {
	c, cl := feedbackTopic(t)
	now := time.Now()
	// c raised hard an hour ago and then went away: it must not count.
	publish(t, cl, "c", backpressure.Hard, now.Add(-time.Hour))
	for _, l := range []backpressure.Level{backpressure.Soft, backpressure.Hard, backpressure.OK, backpressure.Soft} {
		publish(t, cl, "a", l, now)
	}
	publish(t, cl, "b", backpressure.OK, now)
	c.Compact()

	f, ch := follow(t, c)
	waitLevel(t, f, backpressure.Soft)
	if got := ch.get(); !slices.Equal(got, []backpressure.Level{backpressure.Soft}) {
		t.Errorf("changes %v, want only soft", got)
	}
}

func TestFollowerTombstoneAndBadRecords(t *testing.T) {
	c, cl := feedbackTopic(t)
	var mu sync.Mutex
	var errs []error
	f, _ := follow(t, c, backpressure.OnError(func(err error) {
		mu.Lock()
		defer mu.Unlock()
		errs = append(errs, err)
	}))
	publish(t, cl, "a", backpressure.Hard, time.Now())
	waitLevel(t, f, backpressure.Hard)

	produce(t, cl, &kgo.Record{Topic: topic, Key: []byte("x"), Value: []byte(`{"level":"purple"}`)})
	produce(t, cl, &kgo.Record{Topic: topic, Key: []byte("a")}) // tombstone
	waitLevel(t, f, backpressure.OK)
	mu.Lock()
	defer mu.Unlock()
	// Transient fetch errors may be reported too (the follower keeps
	// retryable ones); exactly one must be the bad record.
	decoding := 0
	for _, err := range errs {
		if strings.Contains(err.Error(), "decoding feedback record") {
			decoding++
		}
	}
	if decoding != 1 {
		t.Errorf("errors %v, want one decoding error for the bad level", errs)
	}
}

func TestNewFollowerValidates(t *testing.T) {
	for name, opt := range map[string]backpressure.Option{
		"zero stale":    backpressure.WithStale(0),
		"empty topic":   backpressure.WithTopic(""),
		"soft above ok": backpressure.WithScales(0.5, 0.8, 0),
		"negative hard": backpressure.WithScales(1, 0.5, -0.1),
		"ok above one":  backpressure.WithScales(2, 1, 0),
	} {
		if f, err := backpressure.NewFollower(backpressure.WithBrokers("127.0.0.1:1"), opt); err == nil {
			f.Close()
			t.Errorf("%s: no error", name)
		}
	}
	f, err := backpressure.NewFollower(backpressure.WithBrokers("127.0.0.1:1"), backpressure.WithScales(1, 0.25, 0.1))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Scale() != 1 {
		t.Errorf("scale at ok = %v", f.Scale())
	}
}

// Close alone stops Run.
func TestFollowerCloseStopsRun(t *testing.T) {
	f, err := backpressure.NewFollower(backpressure.WithBrokers("127.0.0.1:1"))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- f.Run(context.Background()) }()
	time.Sleep(50 * time.Millisecond)
	f.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after Close")
	}
}

func ExampleFollower() {
	ctx := context.Background()
	f, err := backpressure.NewFollower(
		backpressure.WithBrokers("localhost:9092"),
		backpressure.WithTopic(backpressure.DefaultTopic),
	)
	if err != nil {
		panic(err)
	}
	defer f.Close()
	go f.Run(ctx) //nolint:errcheck // Run returns nil when stopped

	producer, err := kgo.NewClient(kgo.SeedBrokers("localhost:9092"))
	if err != nil {
		panic(err)
	}
	defer producer.Close()
	lim, err := backpressure.NewLimiter(1000, 0, f) // 1000 records/s at level ok
	if err != nil {
		panic(err)
	}
	for i := 0; i < 10; i++ {
		if err := lim.Wait(ctx); err != nil {
			return
		}
		producer.Produce(ctx, &kgo.Record{Topic: "market.ticks", Value: []byte(`{}`)}, nil)
	}
}
