package consume

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap/zaptest"

	"github.com/market-data-store/mds/internal/tick"
)

func polledRecords(p int32, from, n int64) []*kgo.Record {
	var out []*kgo.Record
	for i := from; i < from+n; i++ {
		out = append(out, &kgo.Record{Topic: topic, Partition: p, Offset: i, Value: []byte(goodTick(p, int(i)))})
	}
	return out
}

// While one partition's Submit waits on a full queue, rebalances may run: a
// partition revoked and assigned back meanwhile restarts from its stored
// offset, so the records polled before must not be handed on under the new
// assignment (they would skip the stored offset and be read again later).
func TestRecordsPolledBeforeAReassignmentAreNotHandedOn(t *testing.T) {
	db := newFakeDB()
	q := newFakeQueue(db)
	kc := newCluster(t, 2)
	c, err := New(testConfig("g-handoff"), q, db, tick.DefaultLimits(), []kgo.Opt{kgo.SeedBrokers(kc.seeds...)}, zaptest.NewLogger(t), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	q.acker = c
	cl, err := kgo.NewClient(kgo.SeedBrokers(kc.seeds...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	c.adm = kadm.NewClient(cl) // as admHook does for the member's own client
	ctx := context.Background()
	c.onAssigned(ctx, cl, map[string][]int32{topic: {0, 1}})
	db.offsets[tp(0)], db.offsets[tp(1)] = 0, 0
	if _, err := c.adjustOffsets(ctx, map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset(), 1: kgo.NewOffset()}}); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	c.parts[tp(1)].from = 5 // [0, 5) of partition 1 was handed on, not yet written
	c.mu.Unlock()

	fetches := kgo.Fetches{{Topics: []kgo.FetchTopic{{Topic: topic, Partitions: []kgo.FetchPartition{
		{Partition: 0, Records: polledRecords(0, 0, 5)},
		{Partition: 1, Records: polledRecords(1, 5, 5)},
	}}}}}
	polledGen := c.generation()
	q.setFull(true)
	done := make(chan struct{})
	go func() {
		defer close(done)
		time.Sleep(150 * time.Millisecond) // partition 0's Submit waits; rebalances may run
		c.onRevoked(ctx, cl, map[string][]int32{topic: {1}})
		c.onAssigned(ctx, cl, map[string][]int32{topic: {1}})
		if _, err := c.adjustOffsets(ctx, map[string]map[int32]kgo.Offset{topic: {1: kgo.NewOffset()}}); err != nil {
			t.Error(err)
		}
		q.setFull(false)
	}()
	if err := c.handOff(ctx, cl, fetches, polledGen, nil); err != nil {
		t.Fatal(err)
	}
	<-done
	if got := q.partitionChunks(tp(0)); len(got) != 1 || len(got[0].Records) != 5 {
		t.Fatalf("partition 0: %d chunks handed on, want its 5 records in one", len(got))
	}
	for _, ch := range q.partitionChunks(tp(1)) {
		t.Errorf("partition 1: stale records %d..%d handed on under the new assignment with From %d", ch.Records[0].Offset, ch.Next-1, ch.From)
	}
}

// A write that ends after its partition was lost must not move the Kafka
// commit of the partition's next owner; one awaited by onRevoked still
// counts.
func TestAcksOfPartitionsNoLongerAssignedAreDropped(t *testing.T) {
	db := newFakeDB()
	c, err := New(testConfig("g-acks"), newFakeQueue(db), db, tick.DefaultLimits(), []kgo.Opt{kgo.SeedBrokers("127.0.0.1:1")}, zaptest.NewLogger(t), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers("127.0.0.1:1"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	c.onAssigned(context.Background(), cl, map[string][]int32{topic: {0}})
	c.mu.Lock()
	c.revoking[tp(2)] = true
	c.mu.Unlock()
	c.Ack([]tick.Range{
		{TopicPartition: tp(0), From: 0, Next: 10},
		{TopicPartition: tp(1), From: 0, Next: 20}, // lost meanwhile
		{TopicPartition: tp(2), From: 0, Next: 30}, // being revoked
	})
	got := c.takeAcked([]tick.TopicPartition{tp(0), tp(1), tp(2)})
	if len(got) != 2 || got[tp(0)].Offset != 10 || got[tp(2)].Offset != 30 {
		t.Fatalf("acked %v; want partition 0 at 10 and partition 2 at 30, not the lost partition 1", got)
	}
}
