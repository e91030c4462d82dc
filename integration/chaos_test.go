//go:build integration

package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Sizes of the chaos run.
const (
	chaosTicks       = 300_000
	chaosRate        = 11_000 // ticks per second: ingestion lasts about 27 s
	chaosPoisonEvery = 1_000  // one poisoned record per 1000 good ticks
	chaosBudget      = 2 * time.Minute
)

// TestChaosExactlyOnce is the proof of the exactly-once promise. Three
// processor processes in one group ingest 300,000 ticks with unique seq
// across 12 partitions, plus records that cannot be decoded, records that
// fail validation, and ticks the database refuses (a CHECK constraint added
// after migrate). While they do, the test SIGKILLs a static member and
// restarts it (it takes its partitions back), adds two members and removes
// them, stalls a member past its session timeout with SIGSTOP and wakes it
// (the zombie), terminates every database session twice, and SIGKILLs and
// restarts a dynamic member (a rebalance after the session timeout). At the end every good tick is in ticks exactly
// once, every poisoned record is in mds_dead_letters exactly once with its
// reason, and mds_offsets holds each partition's end offset. It prints a
// timeline of what it did and what it found.
func TestChaosExactlyOnce(t *testing.T) {
	bin := buildProcessor(t)
	ctx, cancel := context.WithTimeout(context.Background(), chaosBudget)
	defer cancel()
	c := &chaos{timeline: newTimeline(t), bin: bin, f: newFixture(t, 12), members: map[string]*member{}}
	t.Cleanup(c.killAll)
	f := c.f

	c.logf("topic %s (12 partitions), group %s, session timeout %s, heartbeat 100ms; %s is a static member (MDS_KAFKA_INSTANCE_ID), the others dynamic",
		f.topic, f.group, svc.sessionTimeout, staticMember)
	if out, err := c.command(ctx, "migrate"); err != nil {
		t.Fatalf("processor migrate: %v\n%s", err, out)
	}
	db := f.connect(ctx)
	if _, err := db.Exec(ctx, fmt.Sprintf(`ALTER TABLE ticks ADD CONSTRAINT chaos_no_13_13 CHECK (price <> %v)`, rejectedPrice)); err != nil {
		t.Fatal(err)
	}
	c.logf("migrated; added CHECK (price <> %v) to ticks so that those ticks are rejected by the database", rejectedPrice)

	for _, name := range []string{"p1", "p2", "p3"} {
		c.launch(ctx, name)
	}
	for _, name := range []string{"p1", "p2", "p3"} {
		c.ready(ctx, c.members[name])
	}

	l := newLedger()
	produced := make(chan error, 1)
	go func() {
		produced <- f.produce(ctx, batchSpec{
			From: 1, To: chaosTicks, Rate: chaosRate, PoisonEvery: chaosPoisonEvery,
			Kinds: []poisonKind{poisonDecode, poisonInvalid, poisonRejected},
		}, l)
	}()
	c.logf("producing %d ticks at %d/s with one poisoned record per %d (decode, invalid, rejected in turn)", chaosTicks, chaosRate, chaosPoisonEvery)

	st := svc.sessionTimeout
	c.sleep(ctx, 2*time.Second)
	c.signal("p2", syscall.SIGKILL, true)
	c.sleep(ctx, 500*time.Millisecond)
	c.ready(ctx, c.launch(ctx, "p2"))

	c.sleep(ctx, 3*time.Second)
	c.launch(ctx, "p4")
	c.launch(ctx, "p5")
	c.logf("p4 and p5 join: the group rebalances over five members")
	c.sleep(ctx, 3*time.Second)
	c.signal("p4", syscall.SIGTERM, true)
	c.sleep(ctx, 1500*time.Millisecond)
	c.signal("p5", syscall.SIGTERM, true)

	c.sleep(ctx, 2*time.Second)
	c.signal("p1", syscall.SIGSTOP, false)
	c.sleep(ctx, 3*st)
	c.signal("p1", syscall.SIGCONT, false)
	c.logf("p1 was stalled for %s (3× the session timeout): the group moved its partitions; it woke up a zombie", 3*st)

	c.sleep(ctx, 2*time.Second)
	c.dropConnections(ctx)
	c.sleep(ctx, 1500*time.Millisecond)
	c.dropConnections(ctx)

	c.sleep(ctx, 1500*time.Millisecond)
	c.signal("p3", syscall.SIGKILL, true)
	c.ready(ctx, c.launch(ctx, "p3"))

	if err := <-produced; err != nil {
		t.Fatalf("producing: %v", err)
	}
	c.logf("producer done: %d good ticks and %d poisoned records acknowledged by Kafka", l.goodCount(), l.poisoned())

	if err := f.waitIngested(ctx, db, time.Until(deadline(ctx))-15*time.Second); err != nil {
		c.report(ctx)
		t.Fatal(err)
	}
	c.logf("caught up: mds_offsets equals the end offset of every partition")
	c.report(ctx)
	if z := c.members["p1"].last; z != nil {
		c.logf("zombie p1: %v write transaction(s) refused by the offset compare-and-set after it woke (rolled back: nothing it wrote counts twice), %v queued ticks dropped to be re-read by the new owners",
			z.sum("mds_store_transactions_total", `result="fenced"`), z.sum("mds_coord_dropped_ticks_total"))
	}
	c.stopAll()

	fd := f.assertExactlyOnce(context.Background(), db, l)
	c.logf("finished in %s", time.Since(c.start).Round(100*time.Millisecond))
	t.Logf("TIMELINE\n%s\nFOUND\nproduced %d good ticks (seq 1..%d) and %d poisoned records\n%s",
		c.String(), l.goodCount(), l.goodCount(), l.poisoned(), fd)
	if unexpected := c.unexpectedExits(); len(unexpected) > 0 {
		t.Errorf("members exited on their own (each is a pod restart in production): %s", strings.Join(unexpected, "; "))
	}
	if t.Failed() {
		c.dumpLogs()
	}
}

func deadline(ctx context.Context) time.Time {
	d, _ := ctx.Deadline()
	return d
}

// buildProcessor builds cmd/processor into the test's temporary directory.
func buildProcessor(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "processor")
	start := time.Now()
	out, err := exec.Command("go", "build", "-o", bin, "github.com/market-data-store/mds/cmd/processor").CombinedOutput()
	if err != nil {
		t.Fatalf("building cmd/processor: %v\n%s", err, out)
	}
	t.Logf("built cmd/processor in %s", time.Since(start).Round(100*time.Millisecond))
	return bin
}

// chaos runs processor processes and records what it does to them.
type chaos struct {
	*timeline // its t is the test's
	bin       string
	f         *fixture

	mu      sync.Mutex
	members map[string]*member // current process of each name
	all     []*member          // every process started
}

// member is one processor process.
type member struct {
	name     string
	pid      int
	addr     string
	logPath  string
	cmd      *exec.Cmd
	done     chan struct{} // closed when the process exited
	err      error         // its exit, set before done is closed
	intended bool          // the test killed or stopped it (under chaos.mu)
	last     metrics       // last scrape, kept for the report
}

func (c *chaos) sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
		c.t.Fatalf("chaos budget of %s exhausted", chaosBudget)
	case <-time.After(d):
	}
}

// staticMember names the member that uses static group membership
// (MDS_KAFKA_INSTANCE_ID): when it is SIGKILLed and restarted, the new
// process takes its partitions back without a rebalance. The others are
// dynamic members, whose restart is a rebalance after the session timeout.
const staticMember = "p2"

// envList is the process environment of member name.
func (c *chaos) envList(name string) []string {
	env := c.f.env(c.t, name)
	env["MDS_LOG_LEVEL"] = "info"
	if name == staticMember {
		env["MDS_KAFKA_INSTANCE_ID"] = name
	}
	list := []string{"PATH=" + os.Getenv("PATH")}
	for k, v := range env {
		list = append(list, k+"="+v)
	}
	sort.Strings(list)
	return list
}

// command runs a one-shot processor command.
func (c *chaos) command(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, c.bin, args...)
	cmd.Env = c.envList("migrate")
	return cmd.CombinedOutput()
}

// launch starts a member process named name (replacing a dead one of the
// same name).
func (c *chaos) launch(ctx context.Context, name string) *member {
	n := len(c.all) + 1
	logPath := filepath.Join(c.t.TempDir(), fmt.Sprintf("%02d-%s.log", n, name))
	lf, err := os.Create(logPath)
	if err != nil {
		c.t.Fatal(err)
	}
	env := c.envList(name)
	m := &member{name: name, logPath: logPath, done: make(chan struct{})}
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "MDS_HTTP_ADDR="); ok {
			m.addr = v
		}
	}
	m.cmd = exec.Command(c.bin)
	m.cmd.Env, m.cmd.Stdout, m.cmd.Stderr = env, lf, lf
	if err := m.cmd.Start(); err != nil {
		lf.Close()
		c.t.Fatalf("starting %s: %v", name, err)
	}
	m.pid = m.cmd.Process.Pid
	go func() {
		m.err = m.cmd.Wait()
		lf.Close()
		close(m.done)
		c.mu.Lock()
		intended := m.intended
		c.mu.Unlock()
		if !intended {
			c.logf("%s (pid %d) EXITED on its own: %v", m.name, m.pid, m.err)
		}
	}()
	c.mu.Lock()
	c.members[name] = m
	c.all = append(c.all, m)
	c.mu.Unlock()
	c.logf("start %s (pid %d)", name, m.pid)
	return m
}

// ready waits until m's /readyz answers 200.
func (c *chaos) ready(ctx context.Context, m *member) {
	if err := waitReady(ctx, m.addr, 30*time.Second, m.done); err != nil {
		c.dumpLogs()
		c.t.Fatalf("%s not ready: %v", m.name, err)
	}
	c.logf("%s ready (joined the group, database answers)", m.name)
}

// signal sends sig to the current process of name. ends says the signal
// ends the process.
func (c *chaos) signal(name string, sig syscall.Signal, ends bool) {
	c.mu.Lock()
	m := c.members[name]
	if ends {
		m.intended = true
	}
	c.mu.Unlock()
	if sig == syscall.SIGTERM || sig == syscall.SIGKILL {
		m.last, _ = scrape(m.addr) // what it did, for the report
	}
	if err := syscall.Kill(m.pid, sig); err != nil {
		c.t.Fatalf("%s to %s: %v", sig, name, err)
	}
	c.logf("%s %s (pid %d)", strings.ToUpper(sigName(sig)), name, m.pid)
	if sig == syscall.SIGTERM {
		select {
		case <-m.done:
			c.logf("%s left gracefully: %v", name, exitString(m.err))
			if m.err != nil {
				c.t.Errorf("%s exited with %v after SIGTERM, want a clean stop", name, m.err)
			}
		case <-time.After(30 * time.Second):
			c.t.Errorf("%s did not stop within 30s of SIGTERM", name)
		}
	}
	if sig == syscall.SIGKILL {
		<-m.done
	}
}

func sigName(sig syscall.Signal) string {
	switch sig {
	case syscall.SIGKILL:
		return "sigkill"
	case syscall.SIGTERM:
		return "sigterm"
	case syscall.SIGSTOP:
		return "sigstop"
	case syscall.SIGCONT:
		return "sigcont"
	}
	return sig.String()
}

func exitString(err error) string {
	if err == nil {
		return "exit 0"
	}
	return err.Error()
}

// dropConnections terminates every other session of the test database.
func (c *chaos) dropConnections(ctx context.Context) {
	db, err := pgx.Connect(ctx, c.f.dbURL)
	if err != nil {
		c.t.Fatalf("connecting: %v", err)
	}
	defer db.Close(ctx)
	var n int
	err = db.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = current_database() AND pid <> pg_backend_pid()`).Scan(&n)
	if err != nil {
		c.t.Fatalf("terminating database sessions: %v", err)
	}
	c.logf("pg_terminate_backend: %d database sessions terminated (the members' and the test's own pool)", n)
}

// report logs, for each live member, what its metrics say about the run.
func (c *chaos) report(ctx context.Context) {
	c.mu.Lock()
	all := append([]*member(nil), c.all...)
	c.mu.Unlock()
	for _, m := range all {
		select {
		case <-m.done:
		default:
			if s, err := scrape(m.addr); err == nil {
				m.last = s
			}
		}
		if m.last == nil {
			continue
		}
		s := m.last
		c.logf("%s (pid %d) metrics: rows %v, transactions committed %v fenced %v rolled back %v, write errors temporary %v fenced %v, dropped ticks %v, rebalances %v, dead letters %v",
			m.name, m.pid,
			s.sum("mds_store_copy_rows_total"),
			s.sum("mds_store_transactions_total", `result="committed"`),
			s.sum("mds_store_transactions_total", `result="fenced"`),
			s.sum("mds_store_transactions_total", `result="rolled_back"`),
			s.sum("mds_worker_write_errors_total", `class="temporary"`),
			s.sum("mds_worker_write_errors_total", `class="fenced"`),
			s.sum("mds_coord_dropped_ticks_total"),
			s.sum("mds_consumer_rebalances_total"),
			s.sum("mds_dead_letters_total"))
	}
}

// stopAll stops the live members with SIGTERM, in parallel.
func (c *chaos) stopAll() {
	c.mu.Lock()
	var live []string
	for name, m := range c.members {
		select {
		case <-m.done:
		default:
			live = append(live, name)
		}
	}
	c.mu.Unlock()
	sort.Strings(live)
	var wg sync.WaitGroup
	for _, name := range live {
		wg.Go(func() { c.signal(name, syscall.SIGTERM, true) })
	}
	wg.Wait()
}

// killAll SIGKILLs every process still running (test cleanup).
func (c *chaos) killAll() {
	c.mu.Lock()
	all := append([]*member(nil), c.all...)
	for _, m := range all {
		m.intended = true
	}
	c.mu.Unlock()
	for _, m := range all {
		select {
		case <-m.done:
		default:
			_ = syscall.Kill(m.pid, syscall.SIGCONT)
			_ = syscall.Kill(m.pid, syscall.SIGKILL)
			<-m.done
		}
	}
}

// unexpectedExits lists the processes that ended without the test ending
// them.
func (c *chaos) unexpectedExits() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, m := range c.all {
		select {
		case <-m.done:
			if !m.intended {
				out = append(out, fmt.Sprintf("%s (pid %d): %v (log %s)", m.name, m.pid, m.err, m.logPath))
			}
		default:
		}
	}
	return out
}

// dumpLogs prints the warnings and errors of every member's log.
func (c *chaos) dumpLogs() {
	c.mu.Lock()
	all := append([]*member(nil), c.all...)
	c.mu.Unlock()
	for _, m := range all {
		b, err := os.ReadFile(m.logPath)
		if err != nil {
			continue
		}
		var keep []string
		for _, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, `"level":"warn"`) || strings.Contains(line, `"level":"error"`) ||
				strings.Contains(line, `"level":"fatal"`) || (line != "" && !strings.HasPrefix(line, "{")) {
				keep = append(keep, line)
			}
		}
		if len(keep) > 40 {
			keep = append(keep[:20], append([]string{fmt.Sprintf("... %d lines ...", len(keep)-40)}, keep[len(keep)-20:]...)...)
		}
		c.t.Logf("--- %s (pid %d) warnings and errors:\n%s", m.name, m.pid, strings.Join(keep, "\n"))
	}
}
