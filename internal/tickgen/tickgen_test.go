package tickgen

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"

	"github.com/market-data-store/mds/backpressure"
	"github.com/market-data-store/mds/internal/tick"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func cluster(t *testing.T) (*kfake.Cluster, []kgo.Opt) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "test.feedback"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c, []kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...), kgo.FetchMaxWait(100 * time.Millisecond)}
}

func testConfig() Config {
	c := DefaultConfig()
	c.Topic = "test.ticks"
	c.FeedbackTopic = "test.feedback"
	c.Partitions = 3
	c.Symbols = 5
	c.Rate = 5000
	c.ReportInterval = 50 * time.Millisecond
	return c
}

func newGenerator(t *testing.T, cfg Config, opts []kgo.Opt) *Generator {
	t.Helper()
	g, err := New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	return g
}

func TestGeneratorProducesCountTicks(t *testing.T) {
	_, opts := cluster(t)
	cfg := testConfig()
	cfg.Count = 500
	p, err := newGenerator(t, cfg, opts).Run(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if p.Sent != 500 || p.Acked != 500 {
		t.Fatalf("progress %v, want 500 sent and acked", p)
	}

	cl, err := kgo.NewClient(append(opts, kgo.ConsumeTopics(cfg.Topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	topics, err := kadm.NewClient(cl).ListTopics(ctx, cfg.Topic)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(topics[cfg.Topic].Partitions); n != 3 {
		t.Errorf("topic has %d partitions, want 3", n)
	}
	dec := tick.NewDecoder(tick.DefaultLimits())
	seqs := map[int64]bool{}
	symbols := map[string]bool{}
	lastSeq := map[int32]int64{}
	for len(seqs) < 500 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of 500 ticks", len(seqs))
		}
		for _, r := range fs.Records() {
			var tk tick.Tick
			if err := dec.Decode(r.Value, &tk); err != nil {
				t.Fatalf("tick %s does not decode: %v", r.Value, err)
			}
			if string(r.Key) != tk.Symbol || tk.Has&tick.HasSeq == 0 || seqs[tk.Seq] {
				t.Fatalf("record key %q, tick %+v (duplicate seq: %v)", r.Key, tk, seqs[tk.Seq])
			}
			if tk.Seq <= lastSeq[r.Partition] {
				t.Errorf("seq %d after %d in partition %d", tk.Seq, lastSeq[r.Partition], r.Partition)
			}
			lastSeq[r.Partition] = tk.Seq
			seqs[tk.Seq] = true
			symbols[tk.Symbol] = true
		}
	}
	for s := int64(1); s <= 500; s++ {
		if !seqs[s] {
			t.Fatalf("seq %d missing", s)
		}
	}
	if len(symbols) != 5 {
		t.Errorf("%d symbols, want 5", len(symbols))
	}
}

func TestGeneratorStopsAfterDuration(t *testing.T) {
	_, opts := cluster(t)
	cfg := testConfig()
	cfg.Duration = 300 * time.Millisecond
	cfg.Rate = 1000
	p, err := newGenerator(t, cfg, opts).Run(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if p.Elapsed < cfg.Duration || p.Elapsed > 5*time.Second || p.Acked == 0 || p.Acked != p.Sent {
		t.Errorf("progress %v after a %v run", p, cfg.Duration)
	}
	// 1000/s for 0.3 s, plus the limiter's 10-tick burst, with room to spare.
	if p.Sent > 450 {
		t.Errorf("sent %d ticks in %v at 1000/s", p.Sent, cfg.Duration)
	}
}

// publishLevel puts one coordinator's level on the feedback topic.
func publishLevel(t *testing.T, opts []kgo.Opt, topic string, l backpressure.Level) {
	t.Helper()
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	v, err := json.Marshal(backpressure.Event{CoordinatorID: "mds-1", Capacity: 10, Level: l, Reason: "test", Source: "store", TS: backpressure.UnixSeconds(time.Now())})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Key: []byte("mds-1"), Value: v}).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// progressLog collects reports.
type progressLog struct {
	mu sync.Mutex
	ps []Progress
}

func (l *progressLog) add(p Progress) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ps = append(l.ps, p)
}

func (l *progressLog) last() Progress {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.ps) == 0 {
		return Progress{}
	}
	return l.ps[len(l.ps)-1]
}

func waitProgress(t *testing.T, l *progressLog, what string, cond func(Progress) bool) Progress {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if p := l.last(); cond(p) {
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: last progress %v", what, l.last())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestGeneratorObeysFeedback(t *testing.T) {
	for _, obey := range []bool{true, false} {
		name := map[bool]string{true: "obey", false: "ignore"}[obey]
		t.Run(name, func(t *testing.T) {
			_, opts := cluster(t)
			cfg := testConfig()
			cfg.Rate = 2000
			cfg.ObeyFeedback = obey
			publishLevel(t, opts, cfg.FeedbackTopic, backpressure.Hard) // before the start: learned from the topic

			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			g := newGenerator(t, cfg, opts)
			log := new(progressLog)
			done := make(chan error, 1)
			go func() {
				_, err := g.Run(ctx, log.add)
				done <- err
			}()

			hard := waitProgress(t, log, "level hard", func(p Progress) bool { return p.Level == backpressure.Hard })
			held := waitProgress(t, log, "after 300ms", func(p Progress) bool { return p.Elapsed > hard.Elapsed+300*time.Millisecond })
			if obey {
				// Only what went before the follower learned the level
				// (and at most one tick already past the limiter).
				if held.Sent-hard.Sent > 1 || held.Target != 0 || hard.Sent > 200 {
					t.Errorf("at hard: %v then %v", hard, held)
				}
				publishLevel(t, opts, cfg.FeedbackTopic, backpressure.OK)
				waitProgress(t, log, "recovery", func(p Progress) bool { return p.Level == backpressure.OK && p.Acked > held.Sent+200 })
			} else if held.Sent-hard.Sent < 200 || held.Target != cfg.Rate {
				t.Errorf("ignoring hard: %v then %v, want full speed", hard, held)
			}
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if s := log.last().String(); !strings.Contains(s, "level=") || !strings.Contains(s, "rate=") || strings.Contains(s, "feedback_error") {
				t.Errorf("progress line %q", s)
			}
		})
	}
}

// A feedback topic the follower cannot read shows in the progress line.
func TestGeneratorReportsFeedbackError(t *testing.T) {
	_, opts := cluster(t)
	cfg := testConfig()
	cfg.Rate = 100
	cfg.FeedbackTopic = "no.such.topic"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	g := newGenerator(t, cfg, opts)
	log := new(progressLog)
	done := make(chan error, 1)
	go func() {
		_, err := g.Run(ctx, log.add)
		done <- err
	}()
	p := waitProgress(t, log, "feedback error", func(p Progress) bool { return p.FeedbackErr != nil })
	if s := p.String(); !strings.Contains(s, "feedback_error=") || !strings.Contains(s, "UNKNOWN_TOPIC_OR_PARTITION") {
		t.Errorf("progress line %q", s)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		edit func(*Config)
		want string
	}{
		{func(c *Config) { c.Topic = "" }, "MDS_TICKGEN_TOPIC"},
		{func(c *Config) { c.Partitions = -1 }, "MDS_TICKGEN_PARTITIONS"},
		{func(c *Config) { c.Rate = 0 }, "MDS_TICKGEN_RATE"},
		{func(c *Config) { c.Symbols = 0 }, "MDS_TICKGEN_SYMBOLS"},
		{func(c *Config) { c.Count = -1 }, "MDS_TICKGEN_COUNT"},
		{func(c *Config) { c.Duration = -time.Second }, "MDS_TICKGEN_DURATION"},
		{func(c *Config) { c.FeedbackTopic = "" }, "MDS_FEEDBACK_TOPIC"},
		{func(c *Config) { c.ReportInterval = 0 }, "MDS_TICKGEN_REPORT_INTERVAL"},
	}
	for _, tt := range tests {
		c := DefaultConfig()
		tt.edit(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Validate() = %v, want an error naming %s", err, tt.want)
		}
	}
}
