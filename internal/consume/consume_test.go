package consume

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/market-data-store/mds/backpressure"
	"github.com/market-data-store/mds/internal/coordinator"
	"github.com/market-data-store/mds/internal/tick"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const topic = "market.ticks"

// cluster is an in-process Kafka with one topic.
type cluster struct {
	t     *testing.T
	kc    *kfake.Cluster
	seeds []string
	adm   *kadm.Client
}

func newCluster(t *testing.T, partitions int32) *cluster {
	t.Helper()
	kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, topic), kfake.GroupMinSessionTimeout(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kc.Close)
	cl, err := kgo.NewClient(kgo.SeedBrokers(kc.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return &cluster{t: t, kc: kc, seeds: kc.ListenAddrs(), adm: kadm.NewClient(cl)}
}

// produce writes n records to each of partitions, values from value(p, i).
func (c *cluster) produce(partitions int32, n int, value func(p int32, i int) string) {
	c.t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.seeds...), kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		c.t.Fatal(err)
	}
	defer cl.Close()
	var recs []*kgo.Record
	for p := range partitions {
		for i := range n {
			recs = append(recs, &kgo.Record{Partition: p, Key: fmt.Appendf(nil, "S%d", p), Value: []byte(value(p, i))})
		}
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		c.t.Fatal(err)
	}
}

// committed returns the group's Kafka-committed offsets.
func (c *cluster) committed(group string) map[int32]int64 {
	c.t.Helper()
	resp, err := c.adm.FetchOffsets(context.Background(), group)
	if err != nil {
		c.t.Fatal(err)
	}
	out := make(map[int32]int64)
	for p, o := range resp[topic] {
		out[p] = o.At
	}
	return out
}

func goodTick(p int32, i int) string {
	return fmt.Sprintf(`{"ts":%d,"symbol":"S%d","price":%d.25,"seq":%d}`, time.Now().UnixNano(), p, i+1, i)
}

func testConfig(group string) Config {
	cfg := DefaultConfig()
	cfg.Topics = []string{topic}
	cfg.Group = group
	// Short heartbeats make rebalances quick; a long session keeps a
	// member from being thrown out on a loaded machine.
	cfg.SessionTimeout = 10 * time.Second
	cfg.HeartbeatInterval = 100 * time.Millisecond
	cfg.RebalanceTimeout = 10 * time.Second
	cfg.RevokeTimeout = 2 * time.Second
	cfg.FetchMaxWait = 50 * time.Millisecond
	return cfg
}

// member is one running Consumer with its fake queue.
type member struct {
	c    *Consumer
	q    *fakeQueue
	reg  *prometheus.Registry
	cl   atomic.Pointer[kgo.Client]
	errc chan error

	stopOnce sync.Once
}

// OnNewClient captures the consumer's client, to read its pause state.
func (m *member) OnNewClient(cl *kgo.Client) { m.cl.Store(cl) }

func startMember(t *testing.T, c *cluster, cfg Config, db *fakeDB, limits tick.Limits) *member {
	t.Helper()
	return startMemberWith(t, c, cfg, db, newFakeQueue(db), limits, zaptest.NewLogger(t))
}

// startMemberWith is startMember with a given queue and logger.
func startMemberWith(t *testing.T, c *cluster, cfg Config, db OffsetStore, q *fakeQueue, limits tick.Limits, log *zap.Logger) *member {
	t.Helper()
	m := &member{q: q, reg: prometheus.NewRegistry(), errc: make(chan error, 1)}
	var err error
	m.c, err = New(cfg, m.q, db, limits, []kgo.Opt{kgo.SeedBrokers(c.seeds...), kgo.WithHooks(m)}, log, m.reg)
	if err != nil {
		t.Fatal(err)
	}
	m.q.acker = m.c
	m.c.lagEvery = 200 * time.Millisecond
	go func() { m.errc <- m.c.Run(context.Background()) }()
	t.Cleanup(func() { m.stop(t) })
	return m
}

// stop stops the member gracefully (once) and checks Run's result.
func (m *member) stop(t *testing.T) {
	t.Helper()
	m.stopOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := m.c.Stop(ctx); err != nil {
			t.Errorf("Stop: %v", err)
		}
		if err := <-m.errc; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

// metric returns the value of the named counter or gauge (summed over
// label values matching labels, given as name=value).
func (m *member) metric(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, mt := range mf.GetMetric() {
			for _, l := range labels {
				k, v, _ := strings.Cut(l, "=")
				found := false
				for _, lp := range mt.GetLabel() {
					found = found || (lp.GetName() == k && lp.GetValue() == v)
				}
				if !found {
					continue metrics
				}
			}
			sum += mt.GetCounter().GetValue() + mt.GetGauge().GetValue()
		}
	}
	return sum
}

func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func tp(p int32) tick.TopicPartition { return tick.TopicPartition{Topic: topic, Partition: p} }

func TestConsumesEveryRecordInChainedChunks(t *testing.T) {
	const parts, before, after = 8, 250, 50
	c := newCluster(t, parts)
	c.produce(parts, before, goodTick)
	db := newFakeDB()
	m := startMember(t, c, testConfig("g1"), db, tick.DefaultLimits())

	eventually(t, 10*time.Second, "ready", m.c.Ready)
	c.produce(parts, after, func(p int32, i int) string { return goodTick(p, before+i) })
	eventually(t, 10*time.Second, "every record", func() bool { return db.total() == parts*(before+after) })

	want := make(map[tick.TopicPartition]int)
	for p := range int32(parts) {
		want[tp(p)] = before + after
	}
	if err := db.exactlyOnce(want, nil); err != nil {
		t.Fatal(err)
	}
	for p := range int32(parts) {
		chunks := m.q.partitionChunks(tp(p))
		for i, ch := range chunks {
			if i == 0 && ch.From != -1 {
				t.Errorf("%s: first chunk From = %d, want -1 (no stored row)", tp(p), ch.From)
			}
			if i > 0 && ch.From != chunks[i-1].Next {
				t.Errorf("%s: chunk %d From = %d, previous Next = %d", tp(p), i, ch.From, chunks[i-1].Next)
			}
			if ch.Size() > 500/5 {
				t.Errorf("%s: chunk %d holds %d records, more than a fifth of the queue's capacity", tp(p), i, ch.Size())
			}
			last := ch.Records[len(ch.Records)-1]
			if ch.Next != last.Offset+1 || len(ch.Dead) != 0 {
				t.Errorf("%s: chunk %d Next = %d after offset %d, %d dead", tp(p), i, ch.Next, last.Offset, len(ch.Dead))
			}
			for _, r := range ch.Records {
				if string(r.Key) != fmt.Sprintf("S%d", p) || r.Tick.Symbol != string(r.Key) || r.Timestamp.IsZero() || r.Tick.Seq != r.Offset {
					t.Fatalf("%s: record %d decoded wrong: key %q tick %+v", tp(p), r.Offset, r.Key, r.Tick)
				}
			}
		}
	}
	if got := m.metric(t, "mds_consumer_records_total"); got != parts*(before+after) {
		t.Errorf("mds_consumer_records_total = %v", got)
	}
	if got := m.metric(t, "mds_consumer_assigned_partitions"); got != parts {
		t.Errorf("mds_consumer_assigned_partitions = %v", got)
	}

	// Acks reach Kafka as commits of each partition's next offset.
	eventually(t, 5*time.Second, "kafka commits of acked offsets", func() bool {
		got := c.committed("g1")
		for p := range int32(parts) {
			if got[p] != before+after {
				return false
			}
		}
		return true
	})

	m.stop(t)
	if !m.q.drained {
		t.Error("Stop did not drain the queue")
	}
	if m.c.Ready() {
		t.Error("Ready after Stop")
	}
}

func TestSeeksToStoredOffsets(t *testing.T) {
	const parts, n = 8, 100
	c := newCluster(t, parts)
	c.produce(parts, n, goodTick)
	// Partition 5 has no stored row but a Kafka commit: it resumes there.
	var os kadm.Offsets
	os.AddOffset(topic, 5, 70, -1)
	if _, err := c.adm.CommitOffsets(context.Background(), "g2", os); err != nil {
		t.Fatal(err)
	}
	db := newFakeDB()
	start := make(map[tick.TopicPartition]int64)
	want := make(map[tick.TopicPartition]int)
	for p := range int32(parts) {
		switch {
		case p < 4:
			start[tp(p)] = int64(40 + p)
			db.offsets[tp(p)] = start[tp(p)]
		case p == 5:
			start[tp(p)] = 70
		}
		want[tp(p)] = n - int(start[tp(p)])
	}
	db.failLoad = 2 // the database is down when the partitions are assigned

	m := startMember(t, c, testConfig("g2"), db, tick.DefaultLimits())
	total := 0
	for _, w := range want {
		total += w
	}
	eventually(t, 10*time.Second, "every record past the stored offsets", func() bool { return db.total() == total })
	m.stop(t) // drained: nothing more can arrive, so the counts below are final
	if err := db.exactlyOnce(want, start); err != nil {
		t.Fatal(err)
	}
	for p := range int32(parts) {
		first := m.q.partitionChunks(tp(p))[0]
		wantFrom := int64(-1)
		if p < 4 {
			wantFrom = start[tp(p)]
		}
		if first.From != wantFrom || first.Records[0].Offset != start[tp(p)] {
			t.Errorf("%s: first chunk From = %d at offset %d, want From %d at offset %d", tp(p), first.From, first.Records[0].Offset, wantFrom, start[tp(p)])
		}
	}
	if got := m.metric(t, "mds_consumer_offset_load_errors_total"); got != 2 {
		t.Errorf("mds_consumer_offset_load_errors_total = %v, want 2", got)
	}
}

func TestBadRecordsBecomeDeadLetters(t *testing.T) {
	c := newCluster(t, 1)
	bad := map[int]string{
		3: `not json`,
		4: `{"ts":"2026-01-02T15:04:05Z","symbol":"","price":1}`,
		7: `{"ts":"2026-01-02T15:04:05Z","symbol":"AAPL","price":1,"venue":"` + strings.Repeat("x", 300) + `"}`,
		// Far larger than the limit: its dead letter keeps a prefix and a hash.
		8: `{"ts":"2026-01-02T15:04:05Z","symbol":"AAPL","price":1,"venue":"` + strings.Repeat("y", 5000) + `"}`,
	}
	c.produce(1, 10, func(p int32, i int) string {
		if v, ok := bad[i]; ok {
			return v
		}
		return goodTick(p, i)
	})
	db := newFakeDB()
	limits := tick.DefaultLimits()
	limits.MaxRecordBytes = 200
	m := startMember(t, c, testConfig("g3"), db, limits)
	eventually(t, 10*time.Second, "all records", func() bool { return db.total() == 10 })
	if err := db.exactlyOnce(map[tick.TopicPartition]int{tp(0): 10}, nil); err != nil {
		t.Fatal(err)
	}
	wantReason := map[int64]string{3: tick.ReasonDecode, 4: tick.ReasonInvalid, 7: tick.ReasonTooLarge, 8: tick.ReasonTooLarge}
	db.mu.Lock()
	dead := append([]tick.DeadLetter(nil), db.dead...)
	db.mu.Unlock()
	if len(dead) != len(wantReason) {
		t.Fatalf("%d dead letters, want %d: %+v", len(dead), len(wantReason), dead)
	}
	for _, d := range dead {
		value := bad[int(d.Offset)]
		if d.Offset == 8 {
			value = value[:tooLargePrefix]
			sum := fmt.Sprintf("%x", sha256.Sum256([]byte(bad[8])))
			if !strings.Contains(d.Err, sum) || !strings.Contains(d.Err, fmt.Sprintf("record of %d bytes", len(bad[8]))) || !strings.Contains(d.Err, "market.ticks/0@8") {
				t.Errorf("too_large dead letter error %q lacks the size, the value's sha256 %s or where the record is", d.Err, sum)
			}
		}
		if d.Reason != wantReason[d.Offset] || d.Err == "" || string(d.Value) != value || d.TopicPartition != tp(0) {
			t.Errorf("dead letter at %d: reason %q err %q value %q", d.Offset, d.Reason, d.Err, d.Value)
		}
	}
	for reason, want := range map[string]float64{tick.ReasonDecode: 1, tick.ReasonInvalid: 1, tick.ReasonTooLarge: 2} {
		if got := m.metric(t, "mds_consumer_decode_errors_total", "reason="+reason); got != want {
			t.Errorf("decode errors %s = %v, want %v", reason, got, want)
		}
	}
}

func TestRebalanceRevokesAndMovesPartitions(t *testing.T) {
	const parts, n = 8, 100
	c := newCluster(t, parts)
	c.produce(parts, n, goodTick)
	db := newFakeDB()
	cfg := testConfig("g4")
	a := startMember(t, c, cfg, db, tick.DefaultLimits())
	eventually(t, 10*time.Second, "first member consumed everything", func() bool { return db.total() == parts*n })

	b := startMember(t, c, cfg, db, tick.DefaultLimits())
	eventually(t, 10*time.Second, "partitions shared", func() bool {
		return a.q.assigned() > 0 && b.q.assigned() > 0 && a.q.assigned()+b.q.assigned() == parts
	})
	var waited bool
	for _, r := range a.q.revokeCalls() {
		waited = waited || (r.wait && len(r.tps) > 0)
	}
	if !waited {
		t.Errorf("revoke calls %+v: want one that waits for in-flight writes", a.q.revokeCalls())
	}
	if got := a.metric(t, "mds_consumer_rebalances_total", "event=revoked"); got < 1 {
		t.Errorf("revoked rebalances = %v", got)
	}

	// New records go to whichever member owns them, each exactly once,
	// continuing from the stored offsets.
	c.produce(parts, n, func(p int32, i int) string { return goodTick(p, n+i) })
	eventually(t, 10*time.Second, "records after the rebalance", func() bool { return db.total() == 2*parts*n })
	want := make(map[tick.TopicPartition]int)
	for p := range int32(parts) {
		want[tp(p)] = 2 * n
	}
	if err := db.exactlyOnce(want, nil); err != nil {
		t.Fatal(err)
	}
	if got := b.metric(t, "mds_consumer_records_total"); got == 0 || got >= 2*parts*n {
		t.Errorf("second member consumed %v records", got)
	}
}

func TestFullQueueDoesNotHoldRebalances(t *testing.T) {
	const parts = 4
	c := newCluster(t, parts)
	c.produce(parts, 10, goodTick)
	db := newFakeDB()
	cfg := testConfig("g5")
	a := startMember(t, c, cfg, db, tick.DefaultLimits())
	a.q.setFull(true)
	eventually(t, 10*time.Second, "first member polled", a.c.Ready)

	b := startMember(t, c, cfg, db, tick.DefaultLimits())
	eventually(t, 5*time.Second, "partitions moved despite the full queue", func() bool {
		return b.q.assigned() > 0 && a.q.assigned()+b.q.assigned() == parts
	})
	a.q.setFull(false)
	eventually(t, 10*time.Second, "every record", func() bool { return db.total() == parts*10 })
	want := make(map[tick.TopicPartition]int)
	for p := range int32(parts) {
		want[tp(p)] = 10
	}
	if err := db.exactlyOnce(want, nil); err != nil {
		t.Fatal(err)
	}
}

func TestHardPausesEveryPartitionAndOKResumes(t *testing.T) {
	const parts = 8
	c := newCluster(t, parts)
	c.produce(parts, 10, goodTick)
	db := newFakeDB()
	m := startMember(t, c, testConfig("g6"), db, tick.DefaultLimits())
	eventually(t, 10*time.Second, "first records", func() bool { return db.total() == parts*10 })

	paused := func() int {
		n := 0
		for _, ps := range m.cl.Load().PauseFetchPartitions(nil) {
			n += len(ps)
		}
		return n
	}
	m.q.setLevel(backpressure.Hard)
	eventually(t, 2*time.Second, "all partitions paused", func() bool { return paused() == parts })
	if got := m.metric(t, "mds_consumer_paused_partitions"); got != parts {
		t.Errorf("mds_consumer_paused_partitions = %v at HARD", got)
	}
	c.produce(parts, 10, func(p int32, i int) string { return goodTick(p, 10+i) })
	// Not a blind sleep: wait until the member has seen the new records
	// exist (the lag listing counts them) while they stay unconsumed.
	eventually(t, 5*time.Second, "the new records counted as lag", func() bool {
		return m.metric(t, "mds_consumer_lag_records") >= parts*10
	})
	if got := db.total(); got != parts*10 {
		t.Fatalf("%d records consumed while paused, want %d", got, parts*10)
	}

	start := time.Now()
	m.q.setLevel(backpressure.OK)
	eventually(t, 2*time.Second, "partitions resumed", func() bool { return paused() == 0 })
	eventually(t, 2*time.Second, "records after resume", func() bool { return db.total() == parts*20 })
	t.Logf("resume to every record consumed: %v", time.Since(start))
	if got := m.metric(t, "mds_consumer_paused_partitions"); got != 0 {
		t.Errorf("mds_consumer_paused_partitions = %v at OK", got)
	}
}

func TestPausePlan(t *testing.T) {
	a, b, c, d := tp(0), tp(1), tp(2), tp(3)
	all := []tick.TopicPartition{a, b, c, d}
	for _, tc := range []struct {
		name     string
		level    backpressure.Level
		assigned []tick.TopicPartition
		depths   map[tick.TopicPartition]int
		want     []tick.TopicPartition
	}{
		{"ok pauses none", backpressure.OK, all, map[tick.TopicPartition]int{a: 900}, nil},
		{"hard pauses all", backpressure.Hard, all, nil, all},
		{"hard with nothing assigned", backpressure.Hard, nil, nil, nil},
		{"soft pauses the hot", backpressure.Soft, all, map[tick.TopicPartition]int{a: 700, b: 200, c: 100}, []tick.TopicPartition{a}},
		{"soft: exactly the fair share keeps flowing", backpressure.Soft, all, map[tick.TopicPartition]int{a: 100, b: 100, c: 100, d: 100}, nil},
		{"soft: fair share rounds nothing away", backpressure.Soft, []tick.TopicPartition{a, b, c}, map[tick.TopicPartition]int{a: 2, b: 1, c: 1}, []tick.TopicPartition{a}},
		{"soft: two hot", backpressure.Soft, all, map[tick.TopicPartition]int{a: 40, b: 40, c: 10, d: 10}, []tick.TopicPartition{a, b}},
		{"soft: empty queue", backpressure.Soft, all, nil, nil},
		{"soft: depths of unassigned partitions are ignored", backpressure.Soft, []tick.TopicPartition{a, b}, map[tick.TopicPartition]int{a: 5, b: 5, c: 1000}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := PausePlan(tc.level, tc.assigned, tc.depths)
			if len(got) != len(tc.want) {
				t.Fatalf("paused %v, want %v", got, tc.want)
			}
			for _, w := range tc.want {
				if !got[w] {
					t.Fatalf("paused %v, want %v", got, tc.want)
				}
			}
		})
	}
}

// warnings returns a logger that writes to the test log and records every
// entry at Warn or above.
func warnings(t *testing.T) (*zap.Logger, *observer.ObservedLogs) {
	core, logs := observer.New(zap.WarnLevel)
	return zap.New(zapcore.NewTee(zaptest.NewLogger(t).Core(), core)), logs
}

func TestStopCommitsAckedOffsetsWithoutWarnings(t *testing.T) {
	const parts, n = 12, 50
	c := newCluster(t, parts)
	db := newFakeDB()
	q := newFakeQueue(db)
	q.setHoldAcks(true) // the acks arrive during Drain, as the real queue's tail does
	log, logs := warnings(t)
	m := startMemberWith(t, c, testConfig("g7"), db, q, tick.DefaultLimits(), log)
	eventually(t, 10*time.Second, "ready", m.c.Ready)
	c.produce(parts, n, goodTick)
	eventually(t, 10*time.Second, "every record", func() bool { return db.total() == parts*n })

	m.stop(t)
	got := c.committed("g7")
	for p := range int32(parts) {
		db.mu.Lock()
		want := db.offsets[tp(p)]
		db.mu.Unlock()
		if got[p] != want {
			t.Errorf("partition %d: committed %d to kafka, acked %d", p, got[p], want)
		}
	}
	for _, e := range logs.All() {
		t.Errorf("clean stop logged %s %q %v", e.Level, e.Message, e.ContextMap())
	}
	if got := m.metric(t, "mds_consumer_commit_errors_total"); got != 0 {
		t.Errorf("mds_consumer_commit_errors_total = %v after a clean stop", got)
	}
}

// zombieWrites is a member that lost tp without noticing and commits the
// records [from, next) before this member's first write.
func zombieWrites(tp tick.TopicPartition, from, next int64) func(*fakeDB) {
	return func(db *fakeDB) {
		ch := &tick.Chunk{TopicPartition: tp, From: from, Next: next}
		for off := from; off < next; off++ {
			ch.Records = append(ch.Records, tick.Record{Offset: off})
		}
		if !db.write(ch) {
			panic("zombie write fenced")
		}
	}
}

func TestFencedPartitionsResyncFromStoredOffsets(t *testing.T) {
	const parts, n, more = 4, 100, 50
	c := newCluster(t, parts)
	c.produce(parts, n, goodTick)
	// Partition 2's row will vanish (an operator reset it): it falls back,
	// like a new assignment, to the Kafka committed offset.
	var os kadm.Offsets
	os.AddOffset(topic, 2, 10, -1)
	if _, err := c.adm.CommitOffsets(context.Background(), "g8", os); err != nil {
		t.Fatal(err)
	}
	db := newFakeDB()
	for p := range int32(parts) {
		db.offsets[tp(p)] = 20
	}
	q := newFakeQueue(db)
	// The fences are not told (TestFencedLastChunkResyncsWithoutNewRecords
	// covers that): each is found by the partition's next Submit, as when
	// the real coordinator's notice comes after that Submit.
	q.quiet = true
	// Partitions 0 and 1: a zombie that still held them commits [20, 50)
	// just before this member's first write, which is fenced.
	q.fenceNext(tp(0), zombieWrites(tp(0), 20, 50))
	q.fenceNext(tp(1), zombieWrites(tp(1), 20, 50))
	q.fenceNext(tp(2), func(db *fakeDB) { delete(db.offsets, tp(2)) })
	log, logs := warnings(t)
	m := startMemberWith(t, c, testConfig("g8"), db, q, tick.DefaultLimits(), log)

	fenced := func() int {
		db.mu.Lock()
		defer db.mu.Unlock()
		return db.fenced
	}
	eventually(t, 10*time.Second, "three fenced writes", func() bool { return fenced() == 3 })
	// The fenced partitions are paused by backpressure when their next
	// records arrive: nothing moves, and the member stays.
	m.q.setLevel(backpressure.Hard)
	eventually(t, 2*time.Second, "all partitions paused", func() bool { return m.metric(t, "mds_consumer_paused_partitions") == parts })
	before := db.total()
	c.produce(parts, more, func(p int32, i int) string { return goodTick(p, n+i) })
	// Not a blind sleep: wait until the member has seen the new records
	// exist (the lag listing counts them) while they stay unwritten.
	eventually(t, 5*time.Second, "the new records counted as lag", func() bool {
		return m.metric(t, "mds_consumer_lag_records") >= parts*more
	})
	if got := db.total(); got != before {
		t.Fatalf("%d records written while paused", got-before)
	}
	m.q.setLevel(backpressure.OK)

	start := map[tick.TopicPartition]int64{tp(0): 20, tp(1): 20, tp(2): 10, tp(3): 20}
	want := make(map[tick.TopicPartition]int)
	total := 0
	for p, s := range start {
		want[p] = n + more - int(s)
		total += want[p]
	}
	eventually(t, 10*time.Second, "every record past the stored offsets", func() bool { return db.total() == total })
	if !m.c.Ready() {
		t.Error("not ready after the resyncs")
	}
	// Stop drains: nothing more can arrive, so the counts below are final;
	// it also fails the test if Run returned an error after the fence.
	m.stop(t)
	db.mu.Lock()
	db.fenced -= 3
	db.mu.Unlock()
	if err := db.exactlyOnce(want, start); err != nil {
		t.Fatal(err)
	}
	// Each fenced partition starts again where the database says: the
	// zombie's offset, or Kafka's with no row (From -1).
	for p, wantFrom := range map[int32]int64{0: 50, 1: 50, 2: -1} {
		chunks := m.q.partitionChunks(tp(p))
		var first *tick.Chunk
		for i, ch := range chunks {
			if i > 0 && ch.From != chunks[i-1].Next {
				first = ch
				break
			}
		}
		if first == nil {
			t.Fatalf("%s: no chunk after the fence: %d chunks", tp(p), len(chunks))
		}
		if wantOff := max(wantFrom, 10); first.From != wantFrom || first.Records[0].Offset != wantOff {
			t.Errorf("%s: first chunk after the fence has From %d at offset %d, want From %d at offset %d", tp(p), first.From, first.Records[0].Offset, wantFrom, wantOff)
		}
	}
	if got := m.metric(t, "mds_consumer_resyncs_total"); got != 3 {
		t.Errorf("mds_consumer_resyncs_total = %v, want 3", got)
	}
	if got := logs.FilterMessage("partition moved back to the stored offset after a fence").Len(); got != 3 {
		t.Errorf("%d resync warnings, want 3", got)
	}
}

func TestFencedLastChunkResyncsWithoutNewRecords(t *testing.T) {
	const parts, n = 2, 100
	c := newCluster(t, parts)
	c.produce(parts, n, goodTick)
	db := newFakeDB()
	for p := range int32(parts) {
		db.offsets[tp(p)] = 20
	}
	q := newFakeQueue(db)
	// A zombie commits the first half of partition 0's last chunk (the one
	// reaching the end of the topic) just before this member's write, which
	// is fenced. Nothing is produced afterwards, so no Submit of partition 0
	// follows: only the coordinator's notification can start the resync.
	var resume atomic.Int64
	q.fenceWhen(tp(0), func(ch *tick.Chunk) bool {
		if ch.Next != n || ch.Size() < 2 {
			return false
		}
		resume.Store((ch.From + n) / 2)
		return true
	}, func(db *fakeDB) {
		db.mu.Lock()
		from := db.offsets[tp(0)]
		db.mu.Unlock()
		zombieWrites(tp(0), from, resume.Load())(db)
	})
	log, logs := warnings(t)
	m := startMemberWith(t, c, testConfig("g11"), db, q, tick.DefaultLimits(), log)

	eventually(t, 10*time.Second, "the fence of partition 0's last chunk", func() bool {
		db.mu.Lock()
		defer db.mu.Unlock()
		return db.fenced == 1
	})
	eventually(t, 3*time.Second, "partition 0's fenced records read again", func() bool { return db.total() == parts*(n-20) })
	// Stop drains: nothing more can arrive, so the counts below are final;
	// it also fails the test if Run returned an error after the fence.
	m.stop(t)
	db.mu.Lock()
	db.fenced--
	db.mu.Unlock()
	want := map[tick.TopicPartition]int{tp(0): n - 20, tp(1): n - 20}
	if err := db.exactlyOnce(want, map[tick.TopicPartition]int64{tp(0): 20, tp(1): 20}); err != nil {
		t.Fatal(err)
	}
	chunks := m.q.partitionChunks(tp(0))
	if last := chunks[len(chunks)-1]; last.From != resume.Load() || last.Records[0].Offset != resume.Load() || last.Next != n {
		t.Errorf("last chunk of partition 0 is [%d, %d) from offset %d, want [%d, %d) after the zombie", last.From, last.Next, last.Records[0].Offset, resume.Load(), n)
	}
	if got := m.metric(t, "mds_consumer_resyncs_total"); got != 1 {
		t.Errorf("mds_consumer_resyncs_total = %v, want 1", got)
	}
	if got := logs.FilterMessage("partition moved back to the stored offset after a fence").Len(); got != 1 {
		t.Errorf("%d resync warnings, want 1", got)
	}
}

func TestFenceToldAndRefusedResyncsOnce(t *testing.T) {
	db := newFakeDB()
	q := newFakeQueue(db)
	c, err := New(testConfig("g12"), q, db, tick.DefaultLimits(), nil, zaptest.NewLogger(t), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for p := range int32(3) { // as onAssigned does
		c.gen++
		c.parts[tp(p)] = &partState{gen: c.gen, from: 20}
	}
	g0 := c.parts[tp(0)].gen
	c.Fenced([]tick.TopicPartition{tp(0), tp(1), tp(2), tp(3)}) // 3 is not assigned
	c.fenced(ctx, tp(0), g0, coordinator.ErrRevoked)            // 0's next Submit was refused before the poll loop looked
	c.forget([]tick.TopicPartition{tp(2)})                      // 2 was revoked since
	c.handleFences(ctx)
	c.Fenced([]tick.TopicPartition{tp(1)}) // a second notice of the same fence
	c.handleFences(ctx)

	var revoked []tick.TopicPartition
	for _, r := range q.revokeCalls() {
		revoked = append(revoked, r.tps...)
	}
	if !slices.Equal(revoked, []tick.TopicPartition{tp(0), tp(1)}) {
		t.Errorf("revoked %v, want partitions 0 and 1 once each", revoked)
	}
	if got := c.waiting(); len(got) != 2 {
		t.Errorf("%v waiting for a resync, want partitions 0 and 1", got)
	}
}

func TestQueueRefusalOtherThanAFenceFailsRun(t *testing.T) {
	c := newCluster(t, 1)
	c.produce(1, 10, goodTick)
	db := newFakeDB()
	q := newFakeQueue(db)
	refusal := errors.New("chunk of market.ticks/0 starts at offset 3, want 7")
	q.refuseWith(refusal)
	m := startMemberWith(t, c, testConfig("g9"), db, q, tick.DefaultLimits(), zaptest.NewLogger(t))
	m.stopOnce.Do(func() {}) // Run ends on its own
	select {
	case err := <-m.errc:
		if !errors.Is(err, refusal) {
			t.Fatalf("Run returned %v, want the refusal", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not fail on a refused chunk")
	}
}

func TestLagGrowsWhilePaused(t *testing.T) {
	const parts, n, more = 4, 20, 30
	c := newCluster(t, parts)
	c.produce(parts, n, goodTick)
	db := newFakeDB()
	log, logs := warnings(t)
	m := startMemberWith(t, c, testConfig("g10"), db, newFakeQueue(db), tick.DefaultLimits(), log)
	eventually(t, 10*time.Second, "every record", func() bool { return db.total() == parts*n })
	eventually(t, 2*time.Second, "no lag", func() bool { return m.metric(t, "mds_consumer_lag_records") == 0 })

	// The broker refuses to list offsets for a while: counted, logged once.
	var refuse atomic.Bool
	refuse.Store(true)
	c.kc.ControlKey(int16(kmsg.ListOffsets), func(req kmsg.Request) (kmsg.Response, error, bool) {
		if !refuse.Load() {
			return nil, nil, false
		}
		c.kc.KeepControl()
		resp := req.ResponseKind().(*kmsg.ListOffsetsResponse)
		for _, rt := range req.(*kmsg.ListOffsetsRequest).Topics {
			st := kmsg.NewListOffsetsResponseTopic()
			st.Topic = rt.Topic
			for _, rp := range rt.Partitions {
				sp := kmsg.NewListOffsetsResponseTopicPartition()
				sp.Partition = rp.Partition
				sp.ErrorCode = kerr.TopicAuthorizationFailed.Code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
	eventually(t, 3*time.Second, "failed refreshes", func() bool { return m.metric(t, "mds_consumer_lag_refresh_errors_total") >= 3 })
	refuse.Store(false)
	if got := logs.FilterMessageSnippet("end offsets").Len(); got != 1 {
		t.Errorf("%d warnings about listing end offsets, want 1", got)
	}

	m.q.setLevel(backpressure.Hard)
	eventually(t, 2*time.Second, "all partitions paused", func() bool { return m.metric(t, "mds_consumer_paused_partitions") == parts })
	c.produce(parts, more, func(p int32, i int) string { return goodTick(p, n+i) })
	eventually(t, 3*time.Second, "lag of the records produced while paused", func() bool {
		return m.metric(t, "mds_consumer_lag_records") == parts*more
	})
	if got := db.total(); got != parts*n {
		t.Fatalf("%d records consumed while paused", got-parts*n)
	}

	m.q.setLevel(backpressure.OK)
	eventually(t, 5*time.Second, "every record after resume", func() bool { return db.total() == parts*(n+more) })
	eventually(t, 2*time.Second, "no lag after resume", func() bool { return m.metric(t, "mds_consumer_lag_records") == 0 })
}
