package dbtest

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/market-data-store/mds/backpressure"
	"github.com/market-data-store/mds/internal/coordinator"
	"github.com/market-data-store/mds/internal/pgtest"
	"github.com/market-data-store/mds/internal/store"
	"github.com/market-data-store/mds/internal/tick"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

var (
	p0 = tick.TopicPartition{Topic: "ticks", Partition: 0}
	p1 = tick.TopicPartition{Topic: "ticks", Partition: 1}
)

// rig is a coordinator writing to a store, both on their own registry.
type rig struct {
	co  *coordinator.Coordinator
	st  *store.Store
	reg *prometheus.Registry
	db  *pgx.Conn // the test's own connection, straight to the server
}

// newRig opens a store on dsn (WriteTimeout writeTimeout) and runs a
// coordinator on it (capacity 100 ticks, batches of 20, retry waits of
// 20 ms growing to maxBackoff, jittered) until the test ends.
func newRig(t *testing.T, dsn, direct string, writeTimeout, maxBackoff time.Duration) *rig {
	t.Helper()
	log := zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel))
	reg := prometheus.NewPedanticRegistry()
	scfg := store.DefaultConfig()
	scfg.DatabaseURL, scfg.Group, scfg.WriteTimeout = dsn, "g", writeTimeout
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := store.Open(ctx, scfg, log, reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	ccfg := coordinator.DefaultConfig()
	ccfg.ID, ccfg.Capacity, ccfg.BatchSize, ccfg.Workers = "t", 100, 20, 2
	ccfg.FlushInterval = 5 * time.Millisecond
	ccfg.Retry.InitialBackoff, ccfg.Retry.MaxBackoff = 20*time.Millisecond, maxBackoff
	co, err := coordinator.New(ccfg, st, log, reg)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- co.Run(runCtx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	db, err := pgx.Connect(ctx, direct)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close(context.Background()) })
	co.Assign([]tick.TopicPartition{p0, p1})
	return &rig{co: co, st: st, reg: reg, db: db}
}

// chunk is n good ticks of tp at offsets [from, from+n); from 0 expects no
// stored offset.
func chunk(tp tick.TopicPartition, from int64, n int) *tick.Chunk {
	ch := &tick.Chunk{TopicPartition: tp, From: from, Next: from + int64(n)}
	if from == 0 {
		ch.From = -1
	}
	for i := range n {
		off := from + int64(i)
		ch.Records = append(ch.Records, tick.Record{
			Offset: off, Timestamp: time.Now(), Key: []byte("AAPL"), Value: []byte(`{}`),
			Tick: tick.Tick{TS: time.Now(), Symbol: "AAPL", Price: 1, Seq: off, Has: tick.HasSeq},
		})
	}
	return ch
}

func (r *rig) submit(t *testing.T, chunks ...*tick.Chunk) {
	t.Helper()
	for _, ch := range chunks {
		if err := r.co.TrySubmit(ch); err != nil {
			t.Fatalf("submitting %s@%d: %v", ch.TopicPartition, ch.Next, err)
		}
	}
}

func (r *rig) count(t *testing.T, sql string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var n int64
	if err := r.db.QueryRow(ctx, sql).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// metric sums the samples of name whose labels include labels.
func (r *rig) metric(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := r.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for k, v := range labels {
				found := false
				for _, lp := range m.GetLabel() {
					found = found || (lp.GetName() == k && lp.GetValue() == v)
				}
				if !found {
					continue metrics
				}
			}
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}

func (r *rig) level() backpressure.Level { return r.co.Current().Level }

// waitFor polls cond every 10 ms until it holds, failing after d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// proxy forwards TCP connections to a server and can cut them all and
// refuse new ones, as a database outage does.
type proxy struct {
	l      net.Listener
	target string
	mu     sync.Mutex
	down   bool
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

func newProxy(t *testing.T, target string) *proxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{l: l, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() {
		l.Close()
		p.setDown(true)
		p.wg.Wait()
	})
	return p
}

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.down {
			p.mu.Unlock()
			c.Close()
			continue
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.conns[c], p.conns[s] = struct{}{}, struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		pipe := func(dst, src net.Conn) {
			defer p.wg.Done()
			_, _ = io.Copy(dst, src)
			dst.Close()
			src.Close()
		}
		go pipe(s, c)
		go pipe(c, s)
	}
}

// setDown cuts every connection and refuses new ones (down), or lets them
// through again.
func (p *proxy) setDown(down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = down
	if down {
		for c := range p.conns {
			c.Close()
		}
		clear(p.conns)
	}
}

// through returns dsn with its host and port replaced by the proxy's.
func (p *proxy) through(t *testing.T, dsn string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	u.Host = p.l.Addr().String()
	return u.String()
}

func hostPort(t *testing.T, dsn string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	if u.Port() == "" {
		return fmt.Sprintf("%s:5432", u.Hostname())
	}
	return u.Host
}
