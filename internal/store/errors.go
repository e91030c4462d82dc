package store

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
)

// IsTemporary reports whether err is worth retrying as is: the database was
// unreachable, restarting, overloaded, or the statement lost a race
// (serialization failure, deadlock) or ran out of time. It classifies by
// type and SQLSTATE, never by message text.
//
// Temporary: connection errors (class 08, dial and network errors, a
// connection closed under us), timeouts and context.DeadlineExceeded,
// 40001, 40P01, class 53 (insufficient resources), 57P01-57P03 (server
// shutting down or starting), 57014 (statement timeout) and 55P03 (lock
// timeout). Everything else, including context.Canceled, is not.
func IsTemporary(err error) bool {
	if err == nil {
		return false
	}
	var we *writeError
	if errors.As(err, &we) {
		return we.temporary
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return temporarySQLState(pgErr.Code)
	}
	if errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err) {
		return true
	}
	if errors.Is(err, context.Canceled) {
		return false
	}
	var connectErr *pgconn.ConnectError
	var netErr net.Error
	switch {
	case errors.As(err, &connectErr), errors.As(err, &netErr):
		return true
	case errors.Is(err, pgconn.ErrConnClosed), pgconn.SafeToRetry(err):
		return true
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return true
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.ECONNREFUSED),
		errors.Is(err, syscall.ECONNABORTED), errors.Is(err, syscall.EPIPE):
		return true
	}
	return false
}

// isDataError reports whether err is the database refusing a value: SQLSTATE
// class 22 (data exception) or 23 (integrity constraint violation).
func isDataError(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || len(pgErr.Code) != 5 {
		return false
	}
	class := pgErr.Code[:2]
	return class == "22" || class == "23"
}

// isRefusal reports whether err is the database refusing what a
// statement sent, in a way a retry of the same statement would not change:
// a *pgconn.PgError whose SQLSTATE is neither temporary nor a layout error
// (isLayoutError). Such a COPY is bisected to find the rows refused alone.
// Errors without a SQLSTATE (a cancelled ctx, a broken connection) are not
// refusals.
func isRefusal(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && !temporarySQLState(pgErr.Code) && !isLayoutError(err)
}

// rowIndependent reports whether err is a refusal no row can cause, so that
// bisecting is pointless: SQLSTATE class 42 (an undefined table or column,
// a missing privilege), 3F (no such schema), 3D (no such database), 25 (a
// read-only transaction), 28 (authorization) and 0A (not supported).
func rowIndependent(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || len(pgErr.Code) != 5 {
		return false
	}
	switch pgErr.Code[:2] {
	case "42", "3F", "3D", "25", "28", "0A":
		return true
	}
	return false
}

// Causes of a failed write, the values of the cause label of
// mds_store_write_errors_total.
const (
	causeTimeout    = "timeout"    // WriteTimeout, statement_timeout (57014) or lock_timeout (55P03)
	causeConnection = "connection" // unreachable, connection lost, class 08
	causeConflict   = "conflict"   // 40001 serialization failure, 40P01 deadlock
	causeServer     = "server"     // class 53 (resources), 57P01-57P03 (shutting down, starting)
	causePermanent  = "permanent"  // not temporary: retrying the same batch fails the same way
)

var writeCauses = []string{causeTimeout, causeConnection, causeConflict, causeServer, causePermanent}

// writeCause names the cause of a failed write, for the metric. It
// classifies by type and SQLSTATE, as IsTemporary.
func writeCause(err error) string {
	if !IsTemporary(err) {
		return causePermanent
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch code := pgErr.Code; {
		case code == "57014" || code == "55P03":
			return causeTimeout
		case code == "40001" || code == "40P01":
			return causeConflict
		case strings.HasPrefix(code, "08"):
			return causeConnection
		default:
			return causeServer
		}
	}
	if errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err) {
		return causeTimeout
	}
	return causeConnection
}

func temporarySQLState(code string) bool {
	switch code {
	case "40001", // serialization_failure
		"40P01", // deadlock_detected
		"57P01", // admin_shutdown
		"57P02", // crash_shutdown
		"57P03", // cannot_connect_now
		"57014", // query_canceled: statement_timeout
		"55P03": // lock_not_available: lock_timeout
		return true
	}
	if len(code) != 5 {
		return false
	}
	switch code[:2] {
	case "08", // connection exception
		"53": // insufficient resources
		return true
	}
	return false
}

// writeError is what Write returns for everything but fencing: the cause,
// classified once, so that callers can ask Temporary() without importing
// this package.
type writeError struct {
	err       error
	temporary bool
}

func newWriteError(err error) error {
	if we, ok := err.(*writeError); ok {
		return we // classified where it happened
	}
	return &writeError{err: err, temporary: IsTemporary(err)}
}

func (e *writeError) Error() string   { return e.err.Error() }
func (e *writeError) Unwrap() error   { return e.err }
func (e *writeError) Temporary() bool { return e.temporary }
