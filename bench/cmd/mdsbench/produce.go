package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/market-data-store/mds/internal/tick"
)

// tickGen makes the synthetic ticks: every field present (about 190 bytes
// of JSON), a unique seq, symbols in rotation, the symbol as record key.
type tickGen struct {
	symbols []string
	base    time.Time
	seq0    int64
}

var venues = [...]string{"XNAS", "XNYS", "ARCX", "BATS"}

func newTickGen(symbols int, seq0 int64) *tickGen {
	g := &tickGen{base: time.Now().UTC().Truncate(time.Second), seq0: seq0}
	for i := range symbols {
		g.symbols = append(g.symbols, fmt.Sprintf("SYM%03d", i))
	}
	return g
}

// record returns the i-th tick as a record whose value is a fresh slice (the
// producer keeps it until the broker acknowledges it).
func (g *tickGen) record(i int) *kgo.Record {
	sym := g.symbols[i%len(g.symbols)]
	p := 100 + float64((i*7919)%10000)/100
	t := tick.Tick{
		TS:      g.base.Add(time.Duration(i) * time.Microsecond),
		Symbol:  sym,
		Venue:   venues[i%len(venues)],
		Price:   p,
		Size:    float64(100 * (i%9 + 1)),
		Bid:     p - 0.01,
		Ask:     p + 0.01,
		BidSize: float64(100 * (i%5 + 1)),
		AskSize: float64(100 * (i%7 + 1)),
		Seq:     g.seq0 + int64(i),
		Has:     tick.HasVenue | tick.HasSize | tick.HasBid | tick.HasAsk | tick.HasBidSize | tick.HasAskSize | tick.HasSeq,
	}
	return &kgo.Record{Key: []byte(sym), Value: tick.AppendJSON(make([]byte, 0, 224), &t)}
}

func compressionCodec(name string) (kgo.CompressionCodec, error) {
	switch strings.ToLower(name) {
	case "snappy":
		return kgo.SnappyCompression(), nil
	case "lz4":
		return kgo.Lz4Compression(), nil
	case "zstd":
		return kgo.ZstdCompression(), nil
	case "gzip":
		return kgo.GzipCompression(), nil
	case "none":
		return kgo.NoCompression(), nil
	}
	return kgo.NoCompression(), fmt.Errorf("-compression: unknown codec %q", name)
}

// newProducer returns a producer with franz-go's defaults (linger 10ms,
// 1 MB batches) except the chosen compression.
func newProducer(e *benchEnv, o options, topic string) (*kgo.Client, error) {
	codec, err := compressionCodec(o.compression)
	if err != nil {
		return nil, err
	}
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(strings.Split(e.brokers, ",")...),
		kgo.DefaultProduceTopic(topic),
		kgo.ProducerBatchCompression(codec),
	)
	if err != nil {
		return nil, fmt.Errorf("creating producer: %w", err)
	}
	return cl, nil
}

// produceResult describes the pre-produced topic.
type produceResult struct {
	Records       int     `json:"records"`
	Bytes         int64   `json:"value_bytes"`
	Seconds       float64 `json:"seconds"`
	RecordsPerSec float64 `json:"records_per_s"`
	MinPartition  int     `json:"min_partition_records"`
	MaxPartition  int     `json:"max_partition_records"`
}

func produceBulk(ctx context.Context, e *benchEnv, o options) (produceResult, error) {
	var r produceResult
	cl, err := newProducer(e, o, ticksTopic)
	if err != nil {
		return r, err
	}
	defer cl.Close()
	progress("producing %d ticks to %s (%s compression)", o.n, ticksTopic, o.compression)
	gen := newTickGen(o.symbols, 1)
	perPart := make([]int, o.partitions)
	var mu sync.Mutex
	var firstErr error
	promise := func(rec *kgo.Record, err error) {
		mu.Lock()
		defer mu.Unlock()
		if err != nil && firstErr == nil {
			firstErr = err
		}
		if err == nil {
			perPart[rec.Partition]++
		}
	}
	t0 := time.Now()
	step := max(o.n/10, 1)
	for i := range o.n {
		rec := gen.record(i)
		r.Bytes += int64(len(rec.Value))
		cl.Produce(ctx, rec, promise)
		if (i+1)%step == 0 {
			progress("  produced %d/%d", i+1, o.n)
		}
	}
	if err := cl.Flush(ctx); err != nil {
		return r, fmt.Errorf("flushing producer: %w", err)
	}
	if firstErr != nil {
		return r, fmt.Errorf("producing: %w", firstErr)
	}
	r.Seconds = time.Since(t0).Seconds()
	r.Records = o.n
	r.RecordsPerSec = float64(o.n) / r.Seconds
	r.MinPartition, r.MaxPartition = perPart[0], perPart[0]
	for _, n := range perPart {
		r.MinPartition, r.MaxPartition = min(r.MinPartition, n), max(r.MaxPartition, n)
	}
	progress("produced %d ticks (%.0f MB of JSON) in %.1fs; %d..%d per partition",
		o.n, float64(r.Bytes)/1e6, r.Seconds, r.MinPartition, r.MaxPartition)
	return r, nil
}
