package tickgen

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/market-data-store/mds/backpressure"
	"github.com/market-data-store/mds/internal/tick"
)

// flushTimeout bounds the wait for buffered ticks when the generator stops.
const flushTimeout = 10 * time.Second

var venues = [...]string{"XNAS", "XNYS", "ARCX", "BATS"}

// Progress is a snapshot of a run.
type Progress struct {
	Elapsed time.Duration
	Sent    int64   // ticks handed to the Kafka client
	Acked   int64   // ticks acknowledged by Kafka
	Rate    float64 // acknowledged ticks per second over the reporting interval (the whole run in Run's result)
	Target  float64 // ticks per second currently allowed
	Level   backpressure.Level
	// FeedbackErr is what keeps the feedback follower from reading the
	// topic (backpressure.Follower.Err), nil when it reads: while it is
	// set, Level may be out of date.
	FeedbackErr error
}

func (p Progress) String() string {
	s := fmt.Sprintf("elapsed=%s sent=%d acked=%d rate=%.0f/s target=%.0f/s level=%s",
		p.Elapsed.Round(time.Second), p.Sent, p.Acked, p.Rate, p.Target, p.Level)
	if p.FeedbackErr != nil {
		s += fmt.Sprintf(" feedback_error=%q", p.FeedbackErr.Error())
	}
	return s
}

// symbol is the price state of one symbol.
type symbol struct {
	name  string
	price float64
}

// Generator produces synthetic ticks to Kafka at a target rate, following
// the feedback topic. Create it with New, call Run once, then Close.
type Generator struct {
	cfg      Config
	client   *kgo.Client
	follower *backpressure.Follower
	limiter  *backpressure.Limiter

	rng     *rand.Rand
	symbols []symbol
	seq     int64 // last seq produced; Run's goroutine only

	sent  atomic.Int64
	acked atomic.Int64
	err   atomic.Pointer[error] // first produce error
}

// New returns a generator connecting with opts (seed brokers, TLS, SASL);
// they are used for both its producer and its feedback follower.
func New(cfg Config, opts []kgo.Opt) (*Generator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	client, err := kgo.NewClient(append(opts, kgo.DefaultProduceTopic(cfg.Topic))...)
	if err != nil {
		return nil, fmt.Errorf("creating kafka producer: %w", err)
	}
	follower, err := backpressure.NewFollower(backpressure.WithTopic(cfg.FeedbackTopic), backpressure.WithClientOpts(opts...))
	if err != nil {
		client.Close()
		return nil, fmt.Errorf("creating feedback follower: %w", err)
	}
	var src backpressure.ScaleSource // nil: ignore the feedback
	if cfg.ObeyFeedback {
		src = follower
	}
	limiter, err := backpressure.NewLimiter(cfg.Rate, 0, src)
	if err != nil { // checked by Validate
		client.Close()
		follower.Close()
		return nil, err
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15))
	symbols := make([]symbol, cfg.Symbols)
	for i := range symbols {
		symbols[i] = symbol{name: fmt.Sprintf("SYM%04d", i+1), price: cents(10 + rng.Float64()*490)}
	}
	return &Generator{cfg: cfg, client: client, follower: follower, limiter: limiter, rng: rng, symbols: symbols}, nil
}

// Close closes the Kafka clients. Call it after Run returned.
func (g *Generator) Close() {
	g.follower.Close()
	g.client.Close()
}

// Run creates the topic if asked to, then produces ticks until Count ticks
// were produced, Duration has passed, or ctx is done, and waits (at most
// 10 s) for the ticks in flight to be acknowledged. Every ReportInterval it
// calls report, if not nil, from a goroutine of its own. It returns the
// final progress, and an error if the topic could not be created or a tick
// could not be produced (it stops at the first such failure).
func (g *Generator) Run(ctx context.Context, report func(Progress)) (Progress, error) {
	start := time.Now()
	if g.cfg.Partitions > 0 {
		if err := g.ensureTopic(ctx); err != nil {
			return Progress{}, err
		}
	}
	bg, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = g.follower.Run(bg) }) // returns nil when stopped
	if report != nil {
		wg.Go(func() { g.report(bg, start, report) })
	}

	err := g.produce(ctx)
	fctx, cancel := context.WithTimeout(context.Background(), flushTimeout)
	if ferr := g.client.Flush(fctx); ferr != nil && err == nil {
		err = fmt.Errorf("waiting for ticks in flight: %w", ferr)
	}
	cancel()
	stop()
	wg.Wait()
	if err == nil {
		if p := g.err.Load(); p != nil {
			err = *p
		}
	}
	p := g.progress(start, time.Now())
	p.Rate = float64(p.Acked) / max(p.Elapsed.Seconds(), 1e-9)
	return p, err
}

// produce is the generator loop. The end of Duration stops the loop only;
// ctx being done also fails the ticks still waiting in Produce (for buffer
// space or for the topic's metadata), which then count as not sent.
func (g *Generator) produce(ctx context.Context) error {
	loop := ctx
	if g.cfg.Duration > 0 {
		var cancel context.CancelFunc
		loop, cancel = context.WithTimeout(ctx, g.cfg.Duration)
		defer cancel()
	}
	promise := func(_ *kgo.Record, err error) {
		switch {
		case err == nil:
			g.acked.Add(1)
		case ctx.Err() != nil && errors.Is(err, ctx.Err()):
			g.sent.Add(-1) // interrupted before it was sent
		default:
			err = fmt.Errorf("producing tick: %w", err)
			g.err.CompareAndSwap(nil, &err)
		}
	}
	var buf []byte
	for g.cfg.Count == 0 || g.seq < g.cfg.Count {
		if g.err.Load() != nil || g.limiter.Wait(loop) != nil {
			return nil // the failure is reported by Run; ctx done is the end
		}
		t := g.next()
		buf = tick.AppendJSON(buf[:0], &t)
		r := &kgo.Record{
			Key:   []byte(t.Symbol),
			Value: append([]byte(nil), buf...),
		}
		g.client.Produce(ctx, r, promise)
		g.sent.Add(1)
	}
	return nil
}

// next returns the next tick: a random symbol moves its price by a small
// random step.
func (g *Generator) next() tick.Tick {
	s := &g.symbols[g.rng.IntN(len(g.symbols))]
	s.price = max(0.01, cents(s.price*(1+g.rng.NormFloat64()*0.0005)))
	g.seq++
	return tick.Tick{
		TS:      time.Now().UTC(),
		Symbol:  s.name,
		Venue:   venues[g.rng.IntN(len(venues))],
		Price:   s.price,
		Size:    float64(1+g.rng.IntN(10)) * 100,
		Bid:     cents(s.price - 0.01),
		Ask:     cents(s.price + 0.01),
		BidSize: float64(1+g.rng.IntN(20)) * 100,
		AskSize: float64(1+g.rng.IntN(20)) * 100,
		Seq:     g.seq,
		Has:     tick.HasVenue | tick.HasSize | tick.HasBid | tick.HasAsk | tick.HasBidSize | tick.HasAskSize | tick.HasSeq,
	}
}

func cents(p float64) float64 { return math.Round(p*100) / 100 }

func (g *Generator) progress(start, now time.Time) Progress {
	return Progress{
		Elapsed:     now.Sub(start),
		Sent:        g.sent.Load(),
		Acked:       g.acked.Load(),
		Target:      g.limiter.Rate(),
		Level:       g.follower.Level(),
		FeedbackErr: g.follower.Err(),
	}
}

func (g *Generator) report(ctx context.Context, start time.Time, report func(Progress)) {
	t := time.NewTicker(g.cfg.ReportInterval)
	defer t.Stop()
	last, lastAcked := start, int64(0)
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			p := g.progress(start, now)
			p.Rate = float64(p.Acked-lastAcked) / now.Sub(last).Seconds()
			last, lastAcked = now, p.Acked
			report(p)
		}
	}
}

// ensureTopic creates the tick topic if it is missing.
func (g *Generator) ensureTopic(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, flushTimeout)
	defer cancel()
	// kadm's Close would close the producer: not called.
	_, err := kadm.NewClient(g.client).CreateTopic(ctx, g.cfg.Partitions, -1, nil, g.cfg.Topic)
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("creating topic %s (set MDS_TICKGEN_PARTITIONS=0 to skip): %w", g.cfg.Topic, err)
	}
	return nil
}
