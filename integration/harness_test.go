//go:build integration

package integration

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"

	"github.com/market-data-store/mds/internal/app"
	"github.com/market-data-store/mds/internal/tick"
)

// rejectedPrice is the price the chaos test's CHECK constraint refuses.
const rejectedPrice = 13.13

// fixture is what one test works with: Kafka, a fresh database, its own
// topics and consumer group, a producer and an admin client.
type fixture struct {
	t        *testing.T
	brokers  []string
	dbURL    string
	topic    string
	feedback string
	group    string
	kc       *kgo.Client
	adm      *kadm.Client
}

func newFixture(t *testing.T, partitions int32) *fixture {
	t.Helper()
	f := newFixtureOn(t, kafka(t))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := f.adm.CreateTopic(ctx, partitions, -1, nil, f.topic); err != nil {
		t.Fatalf("creating topic %s: %v", f.topic, err)
	}
	return f
}

// newFixtureOn is a fixture on brokers whose topic the caller creates.
func newFixtureOn(t *testing.T, brokers []string) *fixture {
	t.Helper()
	f := &fixture{
		t:        t,
		brokers:  brokers,
		dbURL:    database(t),
		topic:    uniqueName("ticks"),
		feedback: uniqueName("feedback"),
		group:    uniqueName("group"),
	}
	kc, err := kgo.NewClient(
		kgo.SeedBrokers(f.brokers...),
		kgo.ProducerLinger(5*time.Millisecond),
		kgo.MaxBufferedRecords(50_000),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kc.Close)
	f.kc, f.adm = kc, kadm.NewClient(kc)
	return f
}

// connect opens a small pool on the test database. A pool, because the
// chaos test terminates every session of the database.
func (f *fixture) connect(ctx context.Context) *pgxpool.Pool {
	f.t.Helper()
	p, err := pgxpool.New(ctx, f.dbURL)
	if err != nil {
		f.t.Fatalf("connecting to the test database: %v", err)
	}
	f.t.Cleanup(p.Close)
	return p
}

// env returns the processor settings of member name, as MDS_* variables:
// this fixture's services, short group timings, and a free port for HTTP.
func (f *fixture) env(t *testing.T, name string) map[string]string {
	st := svc.sessionTimeout
	return map[string]string{
		"MDS_KAFKA_BROKERS":            strings.Join(f.brokers, ","),
		"MDS_KAFKA_TOPICS":             f.topic,
		"MDS_KAFKA_GROUP":              f.group,
		"MDS_FEEDBACK_TOPIC":           f.feedback,
		"MDS_DATABASE_URL":             f.dbURL,
		"MDS_HTTP_ADDR":                freeAddr(t),
		"MDS_COORDINATOR_ID":           name,
		"MDS_KAFKA_CLIENT_ID":          name,
		"MDS_KAFKA_HEARTBEAT_INTERVAL": "100ms",
		"MDS_KAFKA_SESSION_TIMEOUT":    st.String(),
		"MDS_KAFKA_REBALANCE_TIMEOUT":  (2*st + 2*time.Second).String(),
		"MDS_KAFKA_REVOKE_TIMEOUT":     (st / 2).String(),
		"MDS_KAFKA_FETCH_MAX_WAIT":     "50ms",
		"MDS_FB_HEARTBEAT_INTERVAL":    "500ms",
		"MDS_CB_HALF_OPEN_AFTER_SEC":   "1s",
		"MDS_RETRY_MAX_BACKOFF_MS":     "500",
		"MDS_LOG_LEVEL":                "warn",
	}
}

// freeAddr returns a 127.0.0.1 address with a port free right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// Poison kinds: what the processor must dead-letter, with their reasons.
type poisonKind int

const (
	poisonDecode   poisonKind = iota // not JSON
	poisonInvalid                    // JSON without a price
	poisonRejected                   // a valid tick the database's CHECK refuses
)

var poisonReason = [...]string{tick.ReasonDecode, tick.ReasonInvalid, tick.ReasonRejected}

// batchSpec describes ticks to produce: good ticks with seq in [From, To],
// and after every PoisonEvery good ones a poisoned record, cycling through
// Kinds.
type batchSpec struct {
	From, To    int64
	Rate        float64 // ticks per second; 0 is as fast as possible
	PoisonEvery int64
	Kinds       []poisonKind
	// Until, when closed, ends the batch early (before To): what was
	// produced is acknowledged, so seq stays gapless.
	Until <-chan struct{}
}

// ledger is what was produced, as acknowledged by Kafka.
type ledger struct {
	mu     sync.Mutex
	good   int64             // good ticks acknowledged
	maxSeq int64             // good seqs are 1..maxSeq
	poison map[string]string // "partition/offset" → expected reason
	err    error
}

func newLedger() *ledger { return &ledger{poison: make(map[string]string)} }

func (l *ledger) poisoned() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.poison)
}

func (l *ledger) goodCount() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.good
}

// base is the time of tick seq 0; ticks are 1ms apart.
var base = time.Now().UTC().Truncate(time.Hour).Add(-2 * time.Hour)

func goodTick(seq int64) tick.Tick {
	price := 100 + float64(seq%5000)/100
	return tick.Tick{
		TS:     base.Add(time.Duration(seq) * time.Millisecond),
		Symbol: fmt.Sprintf("SYM%03d", seq%97),
		Venue:  "XNAS", Price: price, Size: float64(seq%9+1) * 100,
		Bid: price - 0.01, Ask: price + 0.01, BidSize: 300, AskSize: 200, Seq: seq,
		Has: tick.HasVenue | tick.HasSize | tick.HasBid | tick.HasAsk | tick.HasBidSize | tick.HasAskSize | tick.HasSeq,
	}
}

func poisonRecord(kind poisonKind, i int64) *kgo.Record {
	key := []byte(fmt.Sprintf("POISON%03d", i%97))
	switch kind {
	case poisonDecode:
		return &kgo.Record{Key: key, Value: []byte(fmt.Sprintf(`{"ts": not json %d`, i))}
	case poisonInvalid:
		return &kgo.Record{Key: key, Value: []byte(fmt.Sprintf(`{"ts":"2026-01-02T15:04:05Z","symbol":"NOPRICE","seq":%d}`, 2_000_000_000+i))}
	}
	t := goodTick(i)
	t.Price, t.Seq = rejectedPrice, 1_000_000_000+i
	return &kgo.Record{Key: key, Value: tick.AppendJSON(nil, &t)}
}

// produce produces spec to the fixture's topic and records what Kafka
// acknowledged in l. It returns once every record is acknowledged.
func (f *fixture) produce(ctx context.Context, spec batchSpec, l *ledger) error {
	var wg sync.WaitGroup
	promise := func(onOK func(*kgo.Record)) func(*kgo.Record, error) {
		wg.Add(1)
		return func(r *kgo.Record, err error) {
			defer wg.Done()
			l.mu.Lock()
			defer l.mu.Unlock()
			if err != nil {
				if l.err == nil {
					l.err = fmt.Errorf("producing: %w", err)
				}
				return
			}
			onOK(r)
		}
	}
	start := time.Now()
	var poisonN int64
	for seq := spec.From; seq <= spec.To; seq++ {
		if spec.Until != nil {
			select {
			case <-spec.Until:
				seq = spec.To + 1
				continue
			default:
			}
		}
		if spec.Rate > 0 {
			due := start.Add(time.Duration(float64(seq-spec.From) / spec.Rate * float64(time.Second)))
			if d := time.Until(due); d > time.Millisecond {
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(d):
				}
			}
		}
		t := goodTick(seq)
		r := &kgo.Record{Topic: f.topic, Key: []byte(t.Symbol), Value: tick.AppendJSON(nil, &t)}
		f.kc.Produce(ctx, r, promise(func(*kgo.Record) {
			l.good++
			l.maxSeq = max(l.maxSeq, seq)
		}))
		if spec.PoisonEvery > 0 && seq%spec.PoisonEvery == 0 {
			kind := spec.Kinds[poisonN%int64(len(spec.Kinds))]
			poisonN++
			r := poisonRecord(kind, seq)
			r.Topic = f.topic
			f.kc.Produce(ctx, r, promise(func(r *kgo.Record) {
				l.poison[fmt.Sprintf("%d/%d", r.Partition, r.Offset)] = poisonReason[kind]
			}))
		}
	}
	wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// storedOffsets returns mds_offsets of the fixture's group and topic.
func (f *fixture) storedOffsets(ctx context.Context, db *pgxpool.Pool) (map[int32]int64, error) {
	rows, err := db.Query(ctx, `SELECT partition, next_offset FROM mds_offsets WHERE consumer_group = $1 AND topic = $2`, f.group, f.topic)
	if err != nil {
		return nil, err
	}
	out := make(map[int32]int64)
	var p int32
	var o int64
	_, err = pgx.ForEachRow(rows, []any{&p, &o}, func() error { out[p] = o; return nil })
	return out, err
}

// endOffsets returns the topic's end offset per partition.
func (f *fixture) endOffsets(ctx context.Context) (map[int32]int64, error) {
	listed, err := f.adm.ListEndOffsets(ctx, f.topic)
	if err != nil {
		return nil, err
	}
	if err := listed.Error(); err != nil {
		return nil, err
	}
	out := make(map[int32]int64)
	listed.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
	return out, nil
}

// offsetGap compares the stored offsets with the end offsets: it returns
// the records not yet stored and the partitions that differ. A partition
// with no records needs no row.
func (f *fixture) offsetGap(ctx context.Context, db *pgxpool.Pool) (behind int64, diffs []string, err error) {
	end, err := f.endOffsets(ctx)
	if err != nil {
		return 0, nil, fmt.Errorf("listing end offsets: %w", err)
	}
	stored, err := f.storedOffsets(ctx, db)
	if err != nil {
		return 0, nil, fmt.Errorf("reading mds_offsets: %w", err)
	}
	parts := make([]int32, 0, len(end))
	for p := range end {
		parts = append(parts, p)
	}
	sort.Slice(parts, func(i, j int) bool { return parts[i] < parts[j] })
	for _, p := range parts {
		if s := stored[p]; s != end[p] {
			behind += end[p] - s
			diffs = append(diffs, fmt.Sprintf("p%d stored %d end %d", p, s, end[p]))
		}
	}
	for p := range stored {
		if _, ok := end[p]; !ok {
			diffs = append(diffs, fmt.Sprintf("p%d stored but not in the topic", p))
		}
	}
	return behind, diffs, nil
}

// committedGap compares the group's Kafka-committed offsets with want
// (per partition; a partition absent from want must have no commit, or a
// commit of 0), and returns the partitions that differ.
func (f *fixture) committedGap(ctx context.Context, want map[int32]int64) []string {
	committed, err := f.adm.FetchOffsets(ctx, f.group)
	if err != nil {
		return []string{err.Error()}
	}
	var diffs []string
	for p := int32(0); p < 12; p++ {
		c, ok := committed.Lookup(f.topic, p)
		at := int64(0)
		if ok && c.Err == nil {
			at = c.At
		}
		if at != want[p] {
			diffs = append(diffs, fmt.Sprintf("p%d committed %d, want %d", p, at, want[p]))
		}
	}
	return diffs
}

// waitIngested waits until the stored offsets equal the end offsets.
func (f *fixture) waitIngested(ctx context.Context, db *pgxpool.Pool, d time.Duration) error {
	var last []string
	err := waitFor(ctx, d, 200*time.Millisecond, func() (bool, error) {
		_, diffs, err := f.offsetGap(ctx, db)
		if err != nil {
			// The database may be briefly unreachable in the chaos
			// test; keep polling.
			last = []string{err.Error()}
			return false, nil
		}
		last = diffs
		return len(diffs) == 0, nil
	})
	if err != nil {
		return fmt.Errorf("stored offsets never reached the end offsets within %s: %s", d, strings.Join(last, "; "))
	}
	return nil
}

// findings is what the database holds, against the ledger.
type findings struct {
	rows, distinct, maxSeq int64
	duplicates             []string // "seq×count"
	missing                []int64
	foreign                int64 // rows whose seq is not a good one
	dead                   int
	deadByReason           map[string]int
	deadWrong              []string // unexpected, or with the wrong reason
	deadMissing            []string
	offsetDiffs            []string
}

func (fd findings) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "ticks: %d rows, %d distinct seq, max seq %d", fd.rows, fd.distinct, fd.maxSeq)
	if len(fd.duplicates) > 0 {
		fmt.Fprintf(&b, "; DUPLICATES (first): %v", fd.duplicates)
	}
	if len(fd.missing) > 0 {
		fmt.Fprintf(&b, "; MISSING seq (first): %v", fd.missing)
	}
	if fd.foreign > 0 {
		fmt.Fprintf(&b, "; %d rows that are not good ticks", fd.foreign)
	}
	fmt.Fprintf(&b, "\ndead letters: %d %v", fd.dead, fd.deadByReason)
	if len(fd.deadWrong) > 0 {
		fmt.Fprintf(&b, "; UNEXPECTED (first): %v", fd.deadWrong)
	}
	if len(fd.deadMissing) > 0 {
		fmt.Fprintf(&b, "; MISSING (first): %v", fd.deadMissing)
	}
	if len(fd.offsetDiffs) > 0 {
		fmt.Fprintf(&b, "\nmds_offsets differ from the end offsets: %v", fd.offsetDiffs)
	} else {
		b.WriteString("\nmds_offsets: every partition's next offset equals its end offset")
	}
	return b.String()
}

// inspect reads what the database holds.
func (f *fixture) inspect(ctx context.Context, db *pgxpool.Pool, l *ledger) (findings, error) {
	var fd findings
	l.mu.Lock()
	n := l.maxSeq
	poison := make(map[string]string, len(l.poison))
	for k, v := range l.poison {
		poison[k] = v
	}
	l.mu.Unlock()

	err := db.QueryRow(ctx, `SELECT count(*), count(DISTINCT seq), coalesce(max(seq), 0),
		count(*) FILTER (WHERE seq IS NULL OR seq < 1 OR seq > $1) FROM ticks`, n).Scan(&fd.rows, &fd.distinct, &fd.maxSeq, &fd.foreign)
	if err != nil {
		return fd, fmt.Errorf("counting ticks: %w", err)
	}
	rows, err := db.Query(ctx, `SELECT seq, count(*) FROM ticks GROUP BY seq HAVING count(*) > 1 ORDER BY seq LIMIT 10`)
	if err != nil {
		return fd, err
	}
	var seq, cnt int64
	if _, err := pgx.ForEachRow(rows, []any{&seq, &cnt}, func() error {
		fd.duplicates = append(fd.duplicates, fmt.Sprintf("%d×%d", seq, cnt))
		return nil
	}); err != nil {
		return fd, err
	}
	rows, err = db.Query(ctx, `SELECT s FROM generate_series(1::bigint, $1::bigint) s EXCEPT SELECT seq FROM ticks ORDER BY 1 LIMIT 10`, n)
	if err != nil {
		return fd, err
	}
	if _, err := pgx.ForEachRow(rows, []any{&seq}, func() error { fd.missing = append(fd.missing, seq); return nil }); err != nil {
		return fd, err
	}

	fd.deadByReason = make(map[string]int)
	rows, err = db.Query(ctx, `SELECT partition, "offset", reason FROM mds_dead_letters WHERE topic = $1 ORDER BY partition, "offset"`, f.topic)
	if err != nil {
		return fd, err
	}
	var p int32
	var off int64
	var reason string
	seen := make(map[string]bool)
	if _, err := pgx.ForEachRow(rows, []any{&p, &off, &reason}, func() error {
		fd.dead++
		fd.deadByReason[reason]++
		k := fmt.Sprintf("%d/%d", p, off)
		if want, ok := poison[k]; (!ok || want != reason || seen[k]) && len(fd.deadWrong) < 10 {
			fd.deadWrong = append(fd.deadWrong, fmt.Sprintf("%s %s (expected %q)", k, reason, want))
		}
		seen[k] = true
		return nil
	}); err != nil {
		return fd, err
	}
	for k, reason := range poison {
		if !seen[k] && len(fd.deadMissing) < 10 {
			fd.deadMissing = append(fd.deadMissing, k+" "+reason)
		}
	}
	_, fd.offsetDiffs, err = f.offsetGap(ctx, db)
	return fd, err
}

// assertExactlyOnce fails the test unless every good tick of the ledger is
// in ticks exactly once, every poisoned record is in mds_dead_letters
// exactly once with its reason, and the stored offsets are the end offsets.
func (f *fixture) assertExactlyOnce(ctx context.Context, db *pgxpool.Pool, l *ledger) findings {
	f.t.Helper()
	fd, err := f.inspect(ctx, db, l)
	if err != nil {
		f.t.Fatalf("inspecting the database: %v", err)
	}
	want := l.goodCount()
	ok := fd.rows == want && fd.distinct == want && fd.maxSeq == want && fd.foreign == 0 &&
		len(fd.duplicates) == 0 && len(fd.missing) == 0 &&
		fd.dead == l.poisoned() && len(fd.deadWrong) == 0 && len(fd.deadMissing) == 0 &&
		len(fd.offsetDiffs) == 0
	if !ok {
		f.t.Errorf("NOT exactly once: produced %d good ticks (seq 1..%d) and %d poisoned records; found\n%s", want, want, l.poisoned(), fd)
	}
	return fd
}

// inProcess is one processor running in the test process (app.Run).
type inProcess struct {
	name   string
	addr   string
	cancel context.CancelFunc
	done   chan struct{} // closed when Run returned
	err    error         // Run's error, set before done is closed
}

// startApp runs the processor in-process with env and waits until /readyz
// says it joined the group and the database answers.
func (f *fixture) startApp(t *testing.T, name string, env map[string]string) *inProcess {
	t.Helper()
	a := f.launchApp(t, name, env)
	if err := waitReady(context.Background(), a.addr, 30*time.Second, a.done); err != nil {
		select {
		case <-a.done:
			err = fmt.Errorf("%w: %v", err, a.err)
		default:
		}
		t.Fatalf("%s did not become ready: %v", name, err)
	}
	return a
}

// launchApp runs the processor in-process with env, without waiting for
// it to be ready.
func (f *fixture) launchApp(t *testing.T, name string, env map[string]string) *inProcess {
	t.Helper()
	s, err := app.LoadSettings(env)
	if err != nil {
		t.Fatalf("settings of %s: %v", name, err)
	}
	log := zaptest.NewLogger(t, zaptest.Level(zapcore.WarnLevel)).Named(name)
	ctx, cancel := context.WithCancel(context.Background())
	a := &inProcess{name: name, addr: env["MDS_HTTP_ADDR"], cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(a.done)
		a.err = app.Run(ctx, s, log, app.NewRegistry())
	}()
	t.Cleanup(func() { _ = a.stop() })
	return a
}

// stop cancels the app's context (a graceful stop: drain, final commits,
// leave the group) and returns Run's error.
func (a *inProcess) stop() error {
	if a.cancel == nil {
		return nil
	}
	a.cancel()
	a.cancel = nil
	select {
	case <-a.done:
		return a.err
	case <-time.After(90 * time.Second):
		return fmt.Errorf("%s did not stop within 90s", a.name)
	}
}

// waitReady polls /readyz until it answers 200, exited is closed, or d
// passes.
func waitReady(ctx context.Context, addr string, d time.Duration, exited <-chan struct{}) error {
	c := http.Client{Timeout: time.Second}
	return waitFor(ctx, d, 50*time.Millisecond, func() (bool, error) {
		select {
		case <-exited:
			return false, errors.New("exited before it was ready")
		default:
		}
		resp, err := c.Get("http://" + addr + "/readyz")
		if err != nil {
			return false, nil
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
}

// scrape fetches /metrics from addr.
func scrape(addr string) (metrics, error) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	m := metrics{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		m[line[:i]] = v
	}
	return m, sc.Err()
}

// metrics maps a sample ("name{labels}") to its value.
type metrics map[string]float64

// sum adds the samples of name whose labels contain every one of labels
// (each written as `key="value"`).
func (m metrics) sum(name string, labels ...string) float64 {
	var s float64
	for k, v := range m {
		n, rest, _ := strings.Cut(k, "{")
		if n != name {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(rest, l)
		}
		if ok {
			s += v
		}
	}
	return s
}

// timeline records what a test did, with the time since it started, and
// logs each step as it happens.
type timeline struct {
	t      *testing.T
	start  time.Time
	mu     sync.Mutex
	events []string
}

func newTimeline(t *testing.T) *timeline { return &timeline{t: t, start: time.Now()} }

func (tl *timeline) logf(format string, args ...any) {
	tl.t.Helper()
	line := fmt.Sprintf("%7.2fs  %s", time.Since(tl.start).Seconds(), fmt.Sprintf(format, args...))
	tl.mu.Lock()
	tl.events = append(tl.events, line)
	tl.mu.Unlock()
	tl.t.Log(line)
}

func (tl *timeline) String() string {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	return strings.Join(tl.events, "\n")
}
