package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// latencyResult is the latency phase: a fixed offered load, and the time
// from each tick's production to its commit.
type latencyResult struct {
	OfferedPerSec  float64 `json:"offered_per_s"`  // asked for
	AchievedPerSec float64 `json:"achieved_per_s"` // produced, over the phase
	Ticks          int     `json:"ticks"`
	P50Ms          float64 `json:"p50_ms"`
	P90Ms          float64 `json:"p90_ms"`
	P99Ms          float64 `json:"p99_ms"`
	P999Ms         float64 `json:"p999_ms"`
	MaxMs          float64 `json:"max_ms"`
	// ErrorBoundMs: every tick's true latency is within this of the one
	// counted (the largest half-width of the commit-time interval).
	ErrorBoundMs     float64 `json:"error_bound_ms"`
	MeanErrorBoundMs float64 `json:"mean_error_bound_ms"`
	// DrainMs is how long after the last produce the last tick committed.
	DrainMs float64 `json:"drain_ms"`
	CPUPerM float64 `json:"cpu_s_per_million"`
	// The processor's own mds_ingest_latency_seconds histogram (Kafka
	// record timestamp to commit), interpolated within its buckets: a
	// cross-check, coarse where the buckets are wide.
	HistP50Ms float64 `json:"histogram_p50_ms"`
	HistP99Ms float64 `json:"histogram_p99_ms"`
}

// commitObs says that partition offsets [from, to) committed after lo and
// no later than hi.
type commitObs struct {
	part     int32
	from, to int64
	lo, hi   time.Time
}

func latency(ctx context.Context, e *benchEnv, o options) (latencyResult, error) {
	var r latencyResult
	const name, group, topic = "bench_latency", "bench-latency", "bench.latency"
	if err := createTopic(ctx, e, topic, o.partitions); err != nil {
		return r, err
	}
	url, conn, closeDB, err := e.openFreshDB(ctx, name)
	if err != nil {
		return r, err
	}
	defer closeDB()

	progress("latency: starting the processor on an empty topic %s", topic)
	p, err := startProcessor(e, "latency", map[string]string{
		"MDS_DATABASE_URL": url, "MDS_KAFKA_TOPICS": topic, "MDS_KAFKA_GROUP": group,
	})
	if err != nil {
		return r, err
	}
	defer p.stop()
	if err := p.waitReady(ctx, o.phaseTimeout); err != nil {
		return r, err
	}
	time.Sleep(time.Second) // let the first empty fetches settle
	st0, err := readStat(p.pid())
	if err != nil {
		return r, fmt.Errorf("reading processor CPU: %w", err)
	}

	// The poller times commits for as long as the phase runs.
	pctx, stopPoll := context.WithCancel(ctx)
	defer stopPoll()
	poller := &offsetPoller{conn: conn, group: group, topic: topic, next: make([]int64, o.partitions)}
	var (
		obs      []commitObs
		pollErr  error
		pollDone = make(chan struct{})
		target   = make(chan int64, 1) // the count to wait for, once known
		reached  = make(chan time.Time, 1)
	)
	go func() {
		defer close(pollDone)
		pollErr = pollCommits(pctx, poller, o.pollInterval, &obs, target, reached)
	}()

	cl, err := newProducer(e, o, topic)
	if err != nil {
		return r, err
	}
	defer cl.Close()
	var mu sync.Mutex
	produced := make([][]time.Time, o.partitions) // produce time by partition and offset
	var prodErr error
	promise := func(rec *kgo.Record, err error) {
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			prodErr = errors.Join(prodErr, err)
			return
		}
		pt := &produced[rec.Partition]
		if n := int(rec.Offset) + 1; n > len(*pt) {
			*pt = slices.Grow(*pt, n-len(*pt))[:n]
		}
		(*pt)[rec.Offset] = rec.Timestamp
	}

	saveProfiles := p.profile(ctx, e.pprofDir, "latency", int(o.latencyDuration.Seconds()))
	progress("latency: producing %d ticks/s for %s", o.latencyRate, o.latencyDuration)
	gen := newTickGen(o.symbols, 1_000_000_000)
	sent := 0
	t0 := time.Now()
	for {
		elapsed := time.Since(t0)
		if elapsed >= o.latencyDuration {
			break
		}
		due := int(elapsed.Seconds() * float64(o.latencyRate))
		for ; sent < due; sent++ {
			rec := gen.record(sent)
			rec.Timestamp = time.Now() // produce time, also the Kafka record timestamp
			cl.Produce(ctx, rec, promise)
		}
		if err := p.alive(); err != nil {
			return r, err
		}
		time.Sleep(time.Millisecond)
	}
	producedFor := time.Since(t0)
	if err := cl.Flush(ctx); err != nil {
		return r, fmt.Errorf("flushing producer: %w", err)
	}
	lastProduce := time.Now()
	mu.Lock()
	if prodErr != nil {
		mu.Unlock()
		return r, fmt.Errorf("producing: %w", prodErr)
	}
	mu.Unlock()
	target <- int64(sent)
	progress("latency: produced %d ticks; waiting for the last commits", sent)

	var done time.Time
	select {
	case done = <-reached:
	case <-pollDone:
		return r, fmt.Errorf("polling stopped: %v", pollErr)
	case <-time.After(o.phaseTimeout):
		return r, fmt.Errorf("only %d of %d ticks committed after %s", poller.committed(), sent, o.phaseTimeout)
	}
	stopPoll()
	<-pollDone
	st1, err := readStat(p.pid())
	if err != nil {
		return r, fmt.Errorf("reading processor CPU: %w", err)
	}
	mfs, err := p.metrics(ctx)
	if err != nil {
		return r, err
	}
	saveProfiles()
	p.stop()

	mu.Lock()
	lat, bound, meanBound, err := latencies(obs, produced)
	mu.Unlock()
	if err != nil {
		return r, err
	}
	if len(lat) != sent {
		return r, fmt.Errorf("timed %d commits of %d ticks", len(lat), sent)
	}
	ms := func(d float64) float64 { return math.Round(d*100) / 100 }
	r.OfferedPerSec = float64(o.latencyRate)
	r.AchievedPerSec = float64(sent) / producedFor.Seconds()
	r.Ticks = sent
	r.P50Ms, r.P90Ms, r.P99Ms = ms(quantile(lat, 0.50)), ms(quantile(lat, 0.90)), ms(quantile(lat, 0.99))
	r.P999Ms, r.MaxMs = ms(quantile(lat, 0.999)), ms(1000*lat[len(lat)-1])
	r.ErrorBoundMs, r.MeanErrorBoundMs = ms(bound), ms(meanBound)
	r.DrainMs = ms(float64(done.Sub(lastProduce)) / 1e6)
	r.CPUPerM = (st1.cpu - st0.cpu).Seconds() / (float64(sent) / 1e6)
	if h := histogramOf(mfs, "mds_ingest_latency_seconds"); h != nil {
		r.HistP50Ms = ms(1000 * histogramQuantile(h, 0.50))
		r.HistP99Ms = ms(1000 * histogramQuantile(h, 0.99))
	}
	progress("latency at %.0f ticks/s: p50 %.1f ms, p99 %.1f ms, max %.1f ms (±%.1f ms)",
		r.AchievedPerSec, r.P50Ms, r.P99Ms, r.MaxMs, r.ErrorBoundMs)
	return r, nil
}

func createTopic(ctx context.Context, e *benchEnv, topic string, partitions int) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(e.brokers, ",")...))
	if err != nil {
		return fmt.Errorf("creating admin client: %w", err)
	}
	defer cl.Close()
	resp, err := kadm.NewClient(cl).CreateTopic(ctx, int32(partitions), 1, nil, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		return fmt.Errorf("creating topic %s: %w", topic, err)
	}
	return nil
}

// pollCommits polls the offsets every interval and records, for each
// partition whose next offset advanced, the interval in which the commit
// happened: after the previous query was sent, no later than this query's
// answer. Once a target count arrives on target and the committed count
// reaches it, the time is sent on reached; polling goes on until ctx ends.
func pollCommits(ctx context.Context, p *offsetPoller, every time.Duration, obs *[]commitObs, target <-chan int64, reached chan<- time.Time) error {
	prev := make([]int64, len(p.next))
	prevSend, _, err := p.poll(ctx)
	if err != nil {
		return err
	}
	copy(prev, p.next)
	want := int64(-1)
	tk := time.NewTicker(every)
	defer tk.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case want = <-target:
		case <-tk.C:
		}
		send, recv, err := p.poll(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		for part, next := range p.next {
			if next > prev[part] {
				*obs = append(*obs, commitObs{part: int32(part), from: prev[part], to: next, lo: prevSend, hi: recv})
				prev[part] = next
			}
		}
		prevSend = send
		if want >= 0 && p.committed() >= want {
			reached <- recv
			want = -1
		}
	}
}

// latencies turns the commit observations into one latency per tick, in
// seconds and sorted: the midpoint of its commit interval minus its produce
// time. It also returns the largest and the mean half-width of the
// intervals, weighted by ticks: the error bound of each latency.
func latencies(obs []commitObs, produced [][]time.Time) (lat []float64, bound, meanBound float64, err error) {
	var sumBound float64
	for _, ob := range obs {
		half := ob.hi.Sub(ob.lo) / 2
		mid := ob.lo.Add(half)
		pt := produced[ob.part]
		if ob.to > int64(len(pt)) {
			return nil, 0, 0, fmt.Errorf("partition %d committed offset %d, but only %d were produced", ob.part, ob.to, len(pt))
		}
		for off := ob.from; off < ob.to; off++ {
			lat = append(lat, mid.Sub(pt[off]).Seconds())
		}
		bound = max(bound, half.Seconds())
		sumBound += half.Seconds() * float64(ob.to-ob.from)
	}
	sort.Float64s(lat)
	if len(lat) > 0 {
		meanBound = sumBound / float64(len(lat))
	}
	return lat, bound * 1000, meanBound * 1000, nil
}

// quantile returns the q-quantile of sorted seconds, in milliseconds (the
// nearest-rank method).
func quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return 1000 * sorted[min(max(i, 0), len(sorted)-1)]
}

func histogramOf(mfs map[string]*dto.MetricFamily, name string) *dto.Histogram {
	mf := mfs[name]
	if mf == nil || len(mf.GetMetric()) == 0 {
		return nil
	}
	return mf.GetMetric()[0].GetHistogram()
}

// histogramQuantile estimates the q-quantile of a Prometheus histogram as
// histogram_quantile() does: linear interpolation within the bucket that
// holds it, the lowest bucket starting at 0.
func histogramQuantile(h *dto.Histogram, q float64) float64 {
	total := float64(h.GetSampleCount())
	if total == 0 {
		return 0
	}
	rank := q * total
	lower, below := 0.0, 0.0
	for _, b := range h.GetBucket() {
		upper, cum := b.GetUpperBound(), float64(b.GetCumulativeCount())
		if cum >= rank {
			if cum == below {
				return upper
			}
			return lower + (upper-lower)*(rank-below)/(cum-below)
		}
		lower, below = upper, cum
	}
	return lower // beyond the last finite bucket
}
