//go:build integration

package integration

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	kafkatest "github.com/market-data-store/mds/integration/kafka"
)

// Broker-failure runs: 12 partitions, replication factor 3,
// min.insync.replicas 2; broker 1 leads partitions 0-5, brokers 2 and 3
// three each.
const (
	bfPartitions = 12
	bfRate       = 4_000 // ticks per second, produced until the failures are over
)

// TestBrokerFailures runs two processors on a three-broker Apache Kafka
// cluster (replication factor 3, min.insync.replicas=2) while a producer
// writes ticks, and fails brokers under them: SIGKILL of the broker that
// leads half the partitions, then its restart; and a rolling restart of
// every broker (a controlled shutdown and a start, one after the other,
// each waiting for the replicas to be in sync again, as an operator does).
// Every tick lands exactly once; the test reports how long each failure
// stalled the partitions it touched (from the failure until each of them
// stored new ticks again).
func TestBrokerFailures(t *testing.T) {
	if svc.mode != "broker" {
		t.Skipf("needs Apache Kafka from kafkatest (mode %s)", svc.mode)
	}
	cluster := kafkatest.StartT(t, kafkatest.Options{Brokers: 3})

	t.Run("sigkill-leader", func(t *testing.T) {
		runBrokerFailure(t, cluster, func(ctx context.Context, tl *timeline, topic string, mark func(string, []int32)) {
			led := leaderOf(ctx, t, cluster, topic, 1)
			tl.logf("SIGKILL broker 1, the leader of partitions %v", led)
			mark("sigkill broker 1", led)
			cluster.Kill(0)
			time.Sleep(4 * time.Second)
			tl.logf("restart broker 1")
			mark("restart broker 1", nil)
			if err := cluster.Restart(ctx, 0); err != nil {
				t.Fatal(err)
			}
			waitInSync(ctx, t, cluster, tl)
		})
	})
	t.Run("rolling-restart", func(t *testing.T) {
		runBrokerFailure(t, cluster, func(ctx context.Context, tl *timeline, topic string, mark func(string, []int32)) {
			for i := range cluster.Size() {
				id := cluster.NodeID(i)
				led := leaderOf(ctx, t, cluster, topic, id)
				tl.logf("controlled shutdown (SIGTERM) of broker %d, the leader of partitions %v", id, led)
				mark(fmt.Sprintf("sigterm broker %d", id), led)
				cluster.Terminate(i)
				tl.logf("broker %d stopped; starting it again", id)
				if err := cluster.Restart(ctx, i); err != nil {
					t.Fatal(err)
				}
				waitInSync(ctx, t, cluster, tl)
			}
		})
	})
}

// runBrokerFailure creates the topic, starts two processors and the
// producer, runs fail once ingestion is under way, and asserts exactly
// once. fail calls mark before each failure with the partitions it hits.
func runBrokerFailure(t *testing.T, cluster *kafkatest.Cluster, fail func(ctx context.Context, tl *timeline, topic string, mark func(string, []int32))) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	tl := newTimeline(t)
	f := newFixtureOn(t, cluster.Addrs())
	createLedTopic(ctx, t, f, cluster)
	db := f.connect(ctx)
	a := f.startApp(t, "bf-a", f.env(t, "bf-a"))
	b := f.startApp(t, "bf-b", f.env(t, "bf-b"))
	tl.logf("topic %s: %d partitions, replication factor 3, min.insync.replicas 2; two processors ready", f.topic, bfPartitions)

	mon := watchProgress(ctx, f, db)
	l := newLedger()
	// The producer runs until the failures are over.
	failed := make(chan struct{})
	produced := make(chan error, 1)
	go func() {
		produced <- f.produce(ctx, batchSpec{From: 1, To: 1 << 40, Rate: bfRate, PoisonEvery: 1000, Kinds: []poisonKind{poisonDecode}, Until: failed}, l)
	}()
	time.Sleep(3 * time.Second)
	fail(ctx, tl, f.topic, mon.mark)
	time.Sleep(3 * time.Second)
	close(failed)
	if err := <-produced; err != nil {
		t.Fatalf("producing: %v", err)
	}
	tl.logf("producer done: %d good ticks acknowledged (acks=all)", l.goodCount())
	if err := f.waitIngested(ctx, db, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	mon.halt()
	for _, s := range mon.stalls() {
		tl.logf("STALL %s", s)
	}
	for _, p := range []*inProcess{a, b} {
		if err := p.stop(); err != nil {
			t.Errorf("graceful stop of %s: %v", p.name, err)
		}
	}
	fd := f.assertExactlyOnce(ctx, db, l)
	t.Logf("TIMELINE\n%s\nFOUND\n%s", tl, fd)
}

// createLedTopic creates the fixture's topic with an explicit replica
// assignment: broker 1 leads (is the preferred leader of) half the
// partitions.
func createLedTopic(ctx context.Context, t *testing.T, f *fixture, c *kafkatest.Cluster) {
	t.Helper()
	req := kmsg.NewPtrCreateTopicsRequest()
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic, rt.NumPartitions, rt.ReplicationFactor = f.topic, -1, -1
	ids := []int32{c.NodeID(0), c.NodeID(1), c.NodeID(2)}
	for p := range int32(bfPartitions) {
		lead := 0
		switch {
		case p >= 9:
			lead = 2
		case p >= 6:
			lead = 1
		}
		a := kmsg.NewCreateTopicsRequestTopicReplicaAssignment()
		a.Partition = p
		a.Replicas = []int32{ids[lead], ids[(lead+1)%3], ids[(lead+2)%3]}
		rt.ReplicaAssignment = append(rt.ReplicaAssignment, a)
	}
	req.Topics = append(req.Topics, rt)
	req.TimeoutMillis = 30_000
	resp, err := req.RequestWith(ctx, f.kc)
	if err == nil {
		err = kerr.ErrorForCode(resp.Topics[0].ErrorCode)
	}
	if err != nil {
		t.Fatalf("creating %s: %v", f.topic, err)
	}
	// Wait until every partition has its leader.
	err = waitFor(ctx, 30*time.Second, 100*time.Millisecond, func() (bool, error) {
		td, err := f.adm.ListTopics(ctx, f.topic)
		if err != nil {
			return false, nil
		}
		d := td[f.topic]
		if d.Err != nil || len(d.Partitions) != bfPartitions {
			return false, nil
		}
		for _, p := range d.Partitions {
			if p.Leader < 0 || len(p.ISR) != 3 {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("partitions of %s never all had a leader and 3 in-sync replicas", f.topic)
	}
}

// leaderOf lists the partitions of topic broker id leads now.
func leaderOf(ctx context.Context, t *testing.T, c *kafkatest.Cluster, topic string, id int32) []int32 {
	t.Helper()
	td, err := adminOn(t, c).ListTopics(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	var out []int32
	for _, p := range td[topic].Partitions {
		if p.Leader == id {
			out = append(out, p.Partition)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// waitInSync waits until every partition of every topic has 3 in-sync
// replicas again, as an operator does between the steps of a rolling
// restart.
func waitInSync(ctx context.Context, t *testing.T, c *kafkatest.Cluster, tl *timeline) {
	t.Helper()
	adm := adminOn(t, c)
	start := time.Now()
	err := waitFor(ctx, 2*time.Minute, 200*time.Millisecond, func() (bool, error) {
		td, err := adm.ListTopics(ctx)
		if err != nil {
			return false, nil
		}
		for _, d := range td {
			for _, p := range d.Partitions {
				if len(p.ISR) < 3 {
					return false, nil
				}
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("replicas not back in sync: %v", err)
	}
	tl.logf("all replicas in sync again (%s)", time.Since(start).Round(10*time.Millisecond))
}

// adminOn is an admin client on c for the test.
func adminOn(t *testing.T, c *kafkatest.Cluster) *kadm.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.Addrs()...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return kadm.NewClient(cl)
}

// progress samples the stored and the end offsets of a fixture every
// 50ms, so that the stall each failure caused the processors can be told
// afterwards: for each partition it hit, the longest time the partition
// had records in Kafka and stored none (a producer stalled by the same
// failure does not count), among the pauses that began after the failure
// and before the next one.
type progress struct {
	f    *fixture
	db   *pgxpool.Pool
	stop context.CancelFunc
	done chan struct{}

	mu      sync.Mutex
	last    map[int32]int64     // stored offsets at the last sample
	waiting map[int32]time.Time // since when each partition has records to store and stored none
	down    map[int32]time.Time // since when each partition has had no leader
	marks   []*failureMark
}

type failureMark struct {
	what  string
	at    time.Time
	until time.Time // the next failure; zero: none yet
	parts []int32
	stall map[int32]time.Duration // longest pause begun in [at, until)
	down  map[int32]time.Duration // longest time without a leader begun in [at, until)
}

func watchProgress(ctx context.Context, f *fixture, db *pgxpool.Pool) *progress {
	ctx, cancel := context.WithCancel(ctx)
	p := &progress{f: f, db: db, stop: cancel, done: make(chan struct{}), last: map[int32]int64{}, waiting: map[int32]time.Time{}, down: map[int32]time.Time{}}
	go func() {
		defer close(p.done)
		for ctx.Err() == nil {
			// Partitions without a leader have no end offset: they
			// are unavailable, which is counted apart.
			end := map[int32]int64{}
			listed, err := f.adm.ListEndOffsets(ctx, f.topic)
			if err == nil {
				listed.Each(func(o kadm.ListedOffset) {
					if o.Err == nil {
						end[o.Partition] = o.Offset
					}
				})
			}
			if stored, err := f.storedOffsets(ctx, db); err == nil && len(listed) > 0 {
				p.sample(time.Now(), stored, end)
			}
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	return p
}

// sample ends the pause of each partition that stored records since the
// last sample, and starts one for each that has records to store.
func (p *progress) sample(now time.Time, stored, end map[int32]int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for part := range int32(bfPartitions) {
		e, up := end[part]
		if began, wasDown := p.down[part]; up && wasDown {
			delete(p.down, part)
			p.attribute(part, began, now.Sub(began), func(m *failureMark) map[int32]time.Duration { return m.down })
		} else if !up && !wasDown {
			p.down[part] = now
		}
		if !up {
			continue
		}
		s := stored[part]
		began, waiting := p.waiting[part]
		if s > p.last[part] {
			p.last[part] = s
			delete(p.waiting, part)
			if waiting {
				p.attribute(part, began, now.Sub(began), func(m *failureMark) map[int32]time.Duration { return m.stall })
			}
		}
		if _, ok := p.waiting[part]; !ok && e > s {
			p.waiting[part] = now
		}
	}
}

// attribute records a pause of part that began at began on the failure
// whose window holds began.
func (p *progress) attribute(part int32, began time.Time, d time.Duration, into func(*failureMark) map[int32]time.Duration) {
	for _, m := range p.marks {
		if began.Before(m.at) || (!m.until.IsZero() && !began.Before(m.until)) {
			continue
		}
		for _, q := range m.parts {
			if q == part {
				into(m)[part] = max(into(m)[part], d)
			}
		}
	}
}

// mark records a failure about to happen to parts (nil: every partition).
func (p *progress) mark(what string, parts []int32) {
	if parts == nil {
		for i := range int32(bfPartitions) {
			parts = append(parts, i)
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	if n := len(p.marks); n > 0 {
		p.marks[n-1].until = now
	}
	p.marks = append(p.marks, &failureMark{what: what, at: now, parts: parts, stall: map[int32]time.Duration{}, down: map[int32]time.Duration{}})
}

func (p *progress) halt() {
	p.stop()
	<-p.done
}

// stalls describes, per failure, the longest pause of the partitions it
// hit, and their median.
func (p *progress) stalls() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, m := range p.marks {
		spread := func(of map[int32]time.Duration) string {
			var ds []time.Duration
			for _, part := range m.parts {
				ds = append(ds, of[part])
			}
			sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
			return fmt.Sprintf("median %s, longest %s", ds[len(ds)/2].Round(10*time.Millisecond), ds[len(ds)-1].Round(10*time.Millisecond))
		}
		out = append(out, fmt.Sprintf("%s, partitions %v: without a leader %s; processors not storing records present in Kafka %s (the flush interval, 250ms, is the normal pause)",
			m.what, m.parts, spread(m.down), spread(m.stall)))
	}
	return out
}
