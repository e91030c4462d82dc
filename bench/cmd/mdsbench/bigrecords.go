package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// bigTopic holds the large records of the peak-memory phase.
const bigTopic = "bench.big"

// bigResult is the peak-memory phase: a backlog of large records (larger
// than MDS_TICK_MAX_RECORD_BYTES, so every one is a too_large dead letter)
// read by the processor at default settings.
type bigResult struct {
	Records     int     `json:"records"`
	RecordBytes int     `json:"record_bytes"`
	Seconds     float64 `json:"seconds"`
	PeakRSSMB   float64 `json:"peak_rss_mb"`
	DeadLetters int     `json:"dead_letters"`
	// PeakQueueBytes is the highest mds_coord_queue_bytes seen by polling
	// /metrics every 50 ms.
	PeakQueueBytesMB float64 `json:"peak_queue_mb"`
	HardEvents       float64 `json:"hard_level_events"`
}

// bigRecords produces o.bigRecords records of o.bigRecordBytes each to a
// topic of their own, runs the processor over that backlog until every
// offset is committed, and reads its peak RSS (VmHWM).
func bigRecords(ctx context.Context, e *benchEnv, o options) (bigResult, error) {
	r := bigResult{Records: o.bigRecords, RecordBytes: o.bigRecordBytes}
	progress("peak memory: producing %d records of %d bytes to %s", o.bigRecords, o.bigRecordBytes, bigTopic)
	if err := produceBig(ctx, e, o); err != nil {
		return r, err
	}
	url, conn, closeDB, err := e.openFreshDB(ctx, "bench_big")
	if err != nil {
		return r, err
	}
	defer closeDB()
	group := "bench-big"
	t0 := time.Now()
	p, err := startProcessor(e, "big", map[string]string{
		"MDS_DATABASE_URL": url, "MDS_KAFKA_TOPICS": bigTopic, "MDS_KAFKA_GROUP": group,
	})
	if err != nil {
		return r, err
	}
	defer p.stop()
	ctx, cancel := context.WithTimeout(ctx, o.phaseTimeout)
	defer cancel()
	poller := &offsetPoller{conn: conn, group: group, topic: bigTopic, next: make([]int64, o.partitions)}
	step, shown := int64(max(o.bigRecords/5, 1)), int64(0)
	for {
		if err := p.alive(); err != nil {
			return r, err
		}
		if _, _, err := poller.poll(ctx); err != nil {
			return r, fmt.Errorf("%w (committed %d of %d)", err, poller.committed(), o.bigRecords)
		}
		n := poller.committed()
		for ; shown+step <= n; shown += step {
			progress("  committed %d/%d", shown+step, o.bigRecords)
		}
		if n >= int64(o.bigRecords) {
			break
		}
		if mfs, err := p.metrics(ctx); err == nil {
			r.PeakQueueBytesMB = max(r.PeakQueueBytesMB, sample(mfs, "mds_coord_queue_bytes")/(1<<20))
		}
		time.Sleep(50 * time.Millisecond)
	}
	r.Seconds = time.Since(t0).Seconds()
	hwm, err := peakRSS(p.pid())
	if err != nil {
		return r, fmt.Errorf("reading processor peak RSS: %w", err)
	}
	r.PeakRSSMB = float64(hwm) / (1 << 20)
	if mfs, err := p.metrics(ctx); err == nil {
		var e2e e2eResult
		e2e.fromMetrics(mfs)
		r.HardEvents = e2e.HardEvents
	}
	p.stop()
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM mds_dead_letters`).Scan(&r.DeadLetters); err != nil {
		return r, fmt.Errorf("counting dead letters: %w", err)
	}
	progress("peak memory: %d records of %d bytes in %.1fs, peak RSS %.0f MB, peak queue %.0f MB, %d dead letters",
		r.Records, r.RecordBytes, r.Seconds, r.PeakRSSMB, r.PeakQueueBytesMB, r.DeadLetters)
	return r, nil
}

// produceBig fills bigTopic, created with a max.message.bytes that admits
// the records.
func produceBig(ctx context.Context, e *benchEnv, o options) error {
	adm, err := kgo.NewClient(kgo.SeedBrokers(e.kf.ListenAddrs()...))
	if err != nil {
		return fmt.Errorf("creating admin client: %w", err)
	}
	limit := fmt.Sprint(2*o.bigRecordBytes + 1<<20)
	resp, err := kadm.NewClient(adm).CreateTopic(ctx, int32(o.partitions), 1, map[string]*string{"max.message.bytes": &limit}, bigTopic)
	adm.Close()
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		return fmt.Errorf("creating topic %s: %w", bigTopic, err)
	}
	codec, err := compressionCodec(o.compression)
	if err != nil {
		return err
	}
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(strings.Split(e.brokers, ",")...),
		kgo.DefaultProduceTopic(bigTopic),
		kgo.ProducerBatchCompression(codec),
		kgo.ProducerBatchMaxBytes(int32(2*o.bigRecordBytes+1<<20)),
	)
	if err != nil {
		return fmt.Errorf("creating producer: %w", err)
	}
	defer cl.Close()
	gen := newTickGen(o.symbols, 1)
	var mu sync.Mutex
	var firstErr error
	for i := range o.bigRecords {
		rec := gen.record(i)
		// A tick followed by padding: a record the size of a real
		// oversized message, compressible as JSON text is.
		v := make([]byte, 0, o.bigRecordBytes)
		v = append(v, rec.Value[:len(rec.Value)-1]...)
		v = append(v, `,"pad":"`...)
		for len(v) < o.bigRecordBytes-2 {
			v = append(v, "0123456789abcdef"[len(v)%16])
		}
		rec.Value = append(v, `"}`...)
		cl.Produce(ctx, rec, func(_ *kgo.Record, err error) {
			mu.Lock()
			defer mu.Unlock()
			if err != nil && firstErr == nil {
				firstErr = err
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		return fmt.Errorf("flushing producer: %w", err)
	}
	if firstErr != nil {
		return fmt.Errorf("producing: %w", firstErr)
	}
	return nil
}
