package store

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/market-data-store/mds/internal/pgtest"
	"github.com/market-data-store/mds/internal/tick"
)

// rejectTrigger makes ticks refuse, with SQLSTATE P0001 (raise_exception),
// every row whose symbol matches pattern (a LIKE pattern).
const rejectTrigger = `
CREATE FUNCTION reject_ticks() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF NEW.symbol LIKE TG_ARGV[0] THEN
		RAISE EXCEPTION 'tick % refused by trigger', NEW.symbol;
	END IF;
	RETURN NEW;
END $$;
CREATE TRIGGER reject_ticks BEFORE INSERT ON ticks FOR EACH ROW EXECUTE FUNCTION reject_ticks(%s)`

func TestWriteDeadLettersARowATriggerRefuses(t *testing.T) {
	s, url, _ := newStore(t)
	ctx := testCtx(t)
	db := connect(t, url)
	if _, err := db.Exec(ctx, strings.Replace(rejectTrigger, "%s", `'BAD%'`, 1)); err != nil {
		t.Fatal(err)
	}
	c := chunk("ticks", 0, -1, 50, "GOOD")
	c.Records[17].Tick.Symbol = "BAD1"
	if err := s.Write(ctx, batch(c)); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if n := queryInt(t, db, `SELECT count(*) FROM ticks`); n != 49 {
		t.Fatalf("ticks holds %d rows, want 49", n)
	}
	dls, err := s.ListDeadLetters(ctx, DeadLetterFilter{Reason: tick.ReasonRejected})
	if err != nil {
		t.Fatal(err)
	}
	if len(dls) != 1 || dls[0].Offset != 17 || !strings.HasPrefix(dls[0].Err, "P0001: ") {
		t.Fatalf("dead letters %+v, want offset 17 with SQLSTATE P0001", dls)
	}
	if v := testutil.ToFloat64(s.m.bisections); v != 1 {
		t.Errorf("bisections = %v, want 1", v)
	}
}

func TestWriteRefusedByEveryRowIsPermanentAndWritesNothing(t *testing.T) {
	s, url, _ := newStore(t)
	ctx := testCtx(t)
	db := connect(t, url)
	if _, err := db.Exec(ctx, strings.Replace(rejectTrigger, "%s", `'%'`, 1)); err != nil {
		t.Fatal(err)
	}
	b := batch(chunk("ticks", 0, -1, 40, "A"), chunk("ticks", 1, -1, 3, "B"))
	err := s.Write(ctx, b)
	if err == nil || IsTemporary(err) {
		t.Fatalf("Write = %v, want a permanent error", err)
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "P0001" {
		t.Fatalf("Write = %v, want it to wrap the row's SQLSTATE P0001", err)
	}
	for _, q := range []string{`SELECT count(*) FROM ticks`, `SELECT count(*) FROM mds_offsets`, `SELECT count(*) FROM mds_dead_letters`} {
		if n := queryInt(t, db, q); n != 0 {
			t.Fatalf("%s = %d after a refused batch, want 0", q, n)
		}
	}
	if v := testutil.ToFloat64(s.m.writeErrors[causePermanent]); v != 1 {
		t.Errorf("permanent write errors = %v, want 1", v)
	}

	if _, err := db.Exec(ctx, `DROP TRIGGER reject_ticks ON ticks`); err != nil {
		t.Fatal(err)
	}
	if err := s.Write(ctx, b); err != nil {
		t.Fatalf("Write after the trigger is gone: %v", err)
	}
	if n := queryInt(t, db, `SELECT count(*) FROM ticks`); n != 43 {
		t.Fatalf("ticks holds %d rows, want 43", n)
	}
}

// A single row refused for a reason other than its data is still that
// row's dead letter: one row cannot tell a systemic cause from its own.
func TestWriteSingleRowRefusedIsADeadLetter(t *testing.T) {
	s, url, _ := newStore(t)
	ctx := testCtx(t)
	db := connect(t, url)
	if _, err := db.Exec(ctx, strings.Replace(rejectTrigger, "%s", `'%'`, 1)); err != nil {
		t.Fatal(err)
	}
	if err := s.Write(ctx, batch(chunk("ticks", 0, -1, 1, "ONE"))); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if n := queryInt(t, db, `SELECT count(*) FROM mds_dead_letters WHERE error LIKE 'P0001: %'`); n != 1 {
		t.Fatalf("%d dead letters with P0001, want 1", n)
	}
}

// Every row refused for its data (a replay into a table with a unique key,
// say) is dead letters, not a systemic stall.
func TestWriteEveryRowRefusedForItsDataIsDeadLetters(t *testing.T) {
	s, url, _ := newStore(t)
	ctx := testCtx(t)
	db := connect(t, url)
	if _, err := db.Exec(ctx, `ALTER TABLE ticks ADD CONSTRAINT positive CHECK (price < 0)`); err != nil {
		t.Fatal(err)
	}
	if err := s.Write(ctx, batch(chunk("ticks", 0, -1, 8, "A"))); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if n := queryInt(t, db, `SELECT count(*) FROM mds_dead_letters WHERE error LIKE '23514: %'`); n != 8 {
		t.Fatalf("%d dead letters with 23514, want 8", n)
	}
}

// A deferred constraint fails at COMMIT; the bisecting transaction checks
// it at each COPY and finds the row.
func TestWriteDeferredConstraintFindsTheRow(t *testing.T) {
	s, url, _ := newStore(t)
	ctx := testCtx(t)
	db := connect(t, url)
	if _, err := db.Exec(ctx, `
CREATE FUNCTION reject_late() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF NEW.symbol = 'LATE' THEN RAISE EXCEPTION 'deferred refusal' USING ERRCODE = 'P0001'; END IF;
	RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER reject_late AFTER INSERT ON ticks DEFERRABLE INITIALLY DEFERRED
	FOR EACH ROW EXECUTE FUNCTION reject_late()`); err != nil {
		t.Fatal(err)
	}
	c := chunk("ticks", 0, -1, 20, "OK")
	c.Records[5].Tick.Symbol = "LATE"
	if err := s.Write(ctx, batch(c)); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if n := queryInt(t, db, `SELECT count(*) FROM ticks`); n != 19 {
		t.Fatalf("ticks holds %d rows, want 19", n)
	}
	if n := queryInt(t, db, `SELECT count(*) FROM mds_dead_letters WHERE "offset" = 5 AND error LIKE 'P0001: %'`); n != 1 {
		t.Fatal("the row refused at COMMIT is not a dead letter")
	}
}

// A missing privilege is no row's fault: permanent at once, no bisection.
func TestWriteRowIndependentErrorIsNotBisected(t *testing.T) {
	s, url, _ := newStore(t)
	ctx := testCtx(t)
	db := connect(t, url)
	if _, err := db.Exec(ctx, `ALTER TABLE ticks RENAME TO ticks_gone`); err != nil {
		t.Fatal(err)
	}
	err := s.Write(ctx, batch(chunk("ticks", 0, -1, 30, "A")))
	var pgErr *pgconn.PgError
	if err == nil || IsTemporary(err) || !errors.As(err, &pgErr) || pgErr.Code != "42P01" {
		t.Fatalf("Write = %v, want a permanent 42P01", err)
	}
	if v := testutil.ToFloat64(s.m.bisections); v != 0 {
		t.Errorf("bisections = %v, want 0", v)
	}
}

// A lock on ticks held past WriteTimeout: Write returns a temporary
// timeout, and the server gave up too (lock_timeout), so no session of the
// store is left waiting for the lock; once the lock goes, Write succeeds.
func TestWriteTimesOutOnALockedTable(t *testing.T) {
	url := pgtest.NewDatabase(t)
	cfg := testConfig(url)
	cfg.WriteTimeout = time.Second
	s, _ := openStore(t, cfg)
	ctx := testCtx(t)
	db := connect(t, url)
	holder := connect(t, url)
	hold, err := holder.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := hold.Exec(ctx, `LOCK TABLE ticks IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	b := batch(chunk("ticks", 0, -1, 10, "A"))
	err = s.Write(ctx, b)
	if err == nil || !IsTemporary(err) {
		t.Fatalf("Write on a locked table = %v, want a temporary error", err)
	}
	if v := testutil.ToFloat64(s.m.writeErrors[causeTimeout]); v != 1 {
		t.Errorf("timeout write errors = %v, want 1 (error: %v)", v, err)
	}
	waiting := `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND backend_type = 'client backend'`
	for queryInt(t, db, waiting) != 0 {
		if ctx.Err() != nil {
			t.Fatal("a session still waits for the lock after Write returned: the server was not told to give up")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := hold.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Write(ctx, b); err != nil {
		t.Fatalf("Write after the lock went: %v", err)
	}
}
