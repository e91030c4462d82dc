//go:build integration

package integration

import (
	"context"
	"fmt"
	"net/url"
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
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/market-data-store/mds/internal/consume"
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
// restarts a dynamic member (a rebalance after the session timeout). It
// asserts that the static member's restart rebalanced nobody else, and
// that the zombie's write, held in flight while it was stalled, was fenced.
// At the end every good tick is in ticks exactly
// once, every poisoned record is in mds_dead_letters exactly once with its
// reason, and mds_offsets holds each partition's end offset. It prints a
// timeline of what it did and what it found.
func TestChaosExactlyOnce(t *testing.T) {
	bin := buildProcessor(t)
	for _, protocol := range groupProtocols() {
		t.Run(protocol, func(t *testing.T) { runChaos(t, bin, protocol) })
	}
}

// groupProtocols are the group protocols (MDS_KAFKA_GROUP_PROTOCOL) the
// group tests run with: both on Apache Kafka 4.4, classic elsewhere.
func groupProtocols() []string {
	if svc.mode == "broker" {
		return []string{consume.ProtocolClassic, consume.ProtocolConsumer}
	}
	return []string{consume.ProtocolClassic}
}

func runChaos(t *testing.T, bin, protocol string) {
	ctx, cancel := context.WithTimeout(context.Background(), chaosBudget)
	defer cancel()
	c := newChaos(ctx, t, bin, protocol)
	f := c.f

	static := staticMember + " is a static member (MDS_KAFKA_INSTANCE_ID), the others dynamic"
	if protocol == consume.ProtocolConsumer {
		static = "every member dynamic (static membership is refused with this protocol)"
	}
	c.logf("topic %s (12 partitions), group %s (%s protocol), session timeout %s, heartbeat 100ms; %s",
		f.topic, f.group, protocol, svc.sessionTimeout, static)
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

	c.sleep(ctx, 2*time.Second)
	others := c.rebalances("p1", "p3")
	c.signal("p2", syscall.SIGKILL, true)
	c.sleep(ctx, 500*time.Millisecond)
	c.ready(ctx, c.launch(ctx, "p2"))

	c.sleep(ctx, 3*time.Second)
	// The static member came back within its session timeout: the group
	// gave it its partitions back without a rebalance, so the other
	// members saw no assignment change in the 3 s since. The consumer
	// protocol refuses static membership (see consume.Config.Validate):
	// there p2 is a dynamic member whose crash is a rebalance.
	if c.protocol == consume.ProtocolConsumer {
		c.logf("consumer protocol: p2 is dynamic (static membership is refused); p1 and p3 saw %v assignment changes before its restart, %v after", others, c.rebalances("p1", "p3"))
	} else if after := c.rebalances("p1", "p3"); after != others {
		t.Errorf("the static member's restart rebalanced the group: p1 and p3 saw %v assignment changes before it, %v after", others, after)
	} else {
		c.logf("static member p2 restarted without a rebalance: p1 and p3 saw no assignment change (%v before and after)", others)
	}
	c.launch(ctx, "p4")
	c.launch(ctx, "p5")
	c.logf("p4 and p5 join: the group rebalances over five members")
	c.sleep(ctx, 3*time.Second)
	c.signal("p4", syscall.SIGTERM, true)
	c.sleep(ctx, 1500*time.Millisecond)
	c.signal("p5", syscall.SIGTERM, true)

	c.sleep(ctx, 2*time.Second)
	c.zombie(ctx, db, "p1")

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
	if z := c.members["p1"].last; z == nil || z.sum("mds_store_transactions_total", `result="fenced"`) == 0 {
		t.Errorf("zombie p1: its held write was not fenced (mds_store_transactions_total{result=\"fenced\"} is 0 or unreadable)")
	} else {
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
	protocol  string // MDS_KAFKA_GROUP_PROTOCOL of every member
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
	env["MDS_KAFKA_GROUP_PROTOCOL"] = c.protocol
	// The database sessions of a member carry its name, so that the test
	// can find (and hold) them in pg_stat_activity.
	u, err := url.Parse(env["MDS_DATABASE_URL"])
	if err != nil {
		c.t.Fatal(err)
	}
	q := u.Query()
	q.Set("application_name", name)
	u.RawQuery = q.Encode()
	env["MDS_DATABASE_URL"] = u.String()
	if name == staticMember && c.protocol == consume.ProtocolClassic {
		// As static members run in production: a session long enough
		// for a restart (here 3× the test's), so that a loaded machine
		// restarting it slowly does not turn the restart into a
		// rebalance.
		env["MDS_KAFKA_INSTANCE_ID"] = name
		env["MDS_KAFKA_SESSION_TIMEOUT"] = (3 * svc.sessionTimeout).String()
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

// rebalances sums the assignment changes (mds_consumer_rebalances_total)
// the named members have seen; -1 if one cannot be scraped.
func (c *chaos) rebalances(names ...string) float64 {
	var n float64
	for _, name := range names {
		c.mu.Lock()
		m := c.members[name]
		c.mu.Unlock()
		s, err := scrape(m.addr)
		if err != nil {
			return -1
		}
		n += s.sum("mds_consumer_rebalances_total")
	}
	return n
}

// zombieLock is the advisory lock key that holds the zombie's offset
// compare-and-set.
const zombieLock = 848_345

// zombie makes name a zombie whose write is fenced, deterministically. A
// statement trigger on mds_offsets makes the offset compare-and-set of
// name's sessions (application_name) wait for an advisory lock the test
// holds. Once one of name's writes waits there (its statement already
// sent), the test SIGSTOPs name past its session timeout: the group moves
// its partitions, and the new owners write past the held offsets. Then the
// lock is released, so that the held compare-and-set finds the offsets
// moved (0 rows), and name is woken (SIGCONT) to find its transaction
// fenced.
func (c *chaos) zombie(ctx context.Context, db *pgxpool.Pool, name string) {
	_, err := db.Exec(ctx, fmt.Sprintf(`
		CREATE FUNCTION chaos_hold_zombie() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF current_setting('application_name') = '%s' THEN
				PERFORM pg_advisory_xact_lock_shared(%d);
			END IF;
			RETURN NULL;
		END $$;
		CREATE TRIGGER chaos_hold_zombie BEFORE UPDATE ON mds_offsets
			FOR EACH STATEMENT EXECUTE FUNCTION chaos_hold_zombie();`, name, zombieLock))
	if err != nil {
		c.t.Fatalf("creating the zombie trigger: %v", err)
	}
	lock, err := pgx.Connect(ctx, c.f.dbURL)
	if err != nil {
		c.t.Fatal(err)
	}
	defer lock.Close(context.Background())
	if _, err := lock.Exec(ctx, `SELECT pg_advisory_lock($1)`, zombieLock); err != nil {
		c.t.Fatal(err)
	}
	c.logf("holding %s's offset compare-and-set (a statement trigger on mds_offsets waits for an advisory lock the test holds)", name)
	err = waitFor(ctx, 20*time.Second, 10*time.Millisecond, func() (bool, error) {
		var n int
		err := db.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
			AND application_name = $1 AND wait_event_type = 'Lock' AND wait_event = 'advisory'`, name).Scan(&n)
		return n > 0, err
	})
	if err != nil {
		c.t.Fatalf("no write of %s reached the held compare-and-set: %v", name, err)
	}
	c.signal(name, syscall.SIGSTOP, false)
	stopped := time.Now()

	// The group moves every partition to the live members.
	var live []*member
	c.mu.Lock()
	for n, m := range c.members {
		select {
		case <-m.done:
		default:
			if n != name {
				live = append(live, m)
			}
		}
	}
	c.mu.Unlock()
	err = waitFor(ctx, 10*svc.sessionTimeout+10*time.Second, 50*time.Millisecond, func() (bool, error) {
		var sum float64
		for _, m := range live {
			s, err := scrape(m.addr)
			if err != nil {
				return false, nil
			}
			sum += s.sum("mds_consumer_assigned_partitions")
		}
		return sum == 12, nil
	})
	if err != nil {
		c.t.Fatalf("the group did not move %s's partitions to the other members: %v", name, err)
	}
	c.logf("%s stopped with a write in flight; %s later (session timeout %s) the other members own all 12 partitions", name, time.Since(stopped).Round(10*time.Millisecond), svc.sessionTimeout)
	// The new owners write past every offset stored when they took over.
	at, err := c.f.storedOffsets(ctx, db)
	if err != nil {
		c.t.Fatal(err)
	}
	err = waitFor(ctx, 30*time.Second, 50*time.Millisecond, func() (bool, error) {
		now, err := c.f.storedOffsets(ctx, db)
		if err != nil {
			return false, nil
		}
		for p := range int32(12) {
			if now[p] <= at[p] {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		c.t.Fatalf("the new owners did not advance every partition: %v", err)
	}
	if _, err := lock.Exec(ctx, `SELECT pg_advisory_unlock($1)`, zombieLock); err != nil {
		c.t.Fatal(err)
	}
	c.signal(name, syscall.SIGCONT, false)
	c.logf("the new owners advanced every partition; released the held compare-and-set and woke %s (stalled %s): a zombie", name, time.Since(stopped).Round(10*time.Millisecond))
}

// holdAll waits, polling every interval for at most a minute, until the
// named members hold all 12 partitions between them, each at least one.
func (c *chaos) holdAll(ctx context.Context, every time.Duration, names ...string) error {
	return waitFor(ctx, time.Minute, every, func() (bool, error) {
		sum := 0.0
		for _, n := range names {
			s, err := scrape(c.members[n].addr)
			if err != nil {
				return false, nil
			}
			got := s.sum("mds_consumer_assigned_partitions")
			if got == 0 {
				return false, nil
			}
			sum += got
		}
		return sum == 12, nil
	})
}

// newChaos is a run of processor processes on protocol against a fresh
// fixture of 12 partitions, migrated; every process it starts is killed
// when the test ends.
func newChaos(ctx context.Context, t *testing.T, bin, protocol string) *chaos {
	c := &chaos{timeline: newTimeline(t), bin: bin, protocol: protocol, f: newFixture(t, 12), members: map[string]*member{}}
	t.Cleanup(c.killAll)
	if out, err := c.command(ctx, "migrate"); err != nil {
		t.Fatalf("processor migrate: %v\n%s", err, out)
	}
	return c
}
