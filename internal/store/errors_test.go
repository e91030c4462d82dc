package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

func TestIsTemporary(t *testing.T) {
	pg := func(code string) error {
		return fmt.Errorf("copying ticks: %w", &pgconn.PgError{Code: code, Message: "m"})
	}
	cases := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"serialization failure", pg("40001"), true},
		{"deadlock", pg("40P01"), true},
		{"disk full (class 53)", pg("53100"), true},
		{"too many connections", pg("53300"), true},
		{"admin shutdown (terminated)", pg("57P01"), true},
		{"crash shutdown", pg("57P02"), true},
		{"cannot connect now", pg("57P03"), true},
		{"statement timeout", pg("57014"), true},
		{"lock timeout", pg("55P03"), true},
		{"connection failure (class 08)", pg("08006"), true},
		{"check violation", pg("23514"), false},
		{"invalid byte sequence", pg("22021"), false},
		{"undefined table", pg("42P01"), false},
		{"insufficient privilege", pg("42501"), false},
		{"read-only transaction", pg("25006"), false},
		{"deadline", fmt.Errorf("beginning: %w", context.DeadlineExceeded), true},
		{"cancelled (shutdown)", fmt.Errorf("beginning: %w", context.Canceled), false},
		{"connection refused", &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, true},
		{"dns", &net.DNSError{Err: "no such host", Name: "db"}, true},
		{"reset", fmt.Errorf("reading: %w", syscall.ECONNRESET), true},
		{"broken pipe", fmt.Errorf("writing: %w", syscall.EPIPE), true},
		{"unexpected EOF", fmt.Errorf("reading: %w", io.ErrUnexpectedEOF), true},
		{"conn closed", fmt.Errorf("x: %w", pgconn.ErrConnClosed), true},
		{"plain error", errors.New("something else"), false},
		{"write error keeps its class", &writeError{err: pg("23514"), temporary: true}, true},
		{"write error, permanent", &writeError{err: context.DeadlineExceeded}, false},
	}
	for _, c := range cases {
		if got := IsTemporary(c.err); got != c.want {
			t.Errorf("%s: IsTemporary(%v) = %v, want %v", c.name, c.err, got, c.want)
		}
	}
}

func TestIsDataError(t *testing.T) {
	for code, want := range map[string]bool{"22001": true, "22P02": true, "23505": true, "23514": true, "42P01": false, "40001": false, "2": false} {
		if got := isDataError(fmt.Errorf("w: %w", &pgconn.PgError{Code: code})); got != want {
			t.Errorf("isDataError(%s) = %v", code, got)
		}
	}
	if isDataError(errors.New("22001")) {
		t.Error("message text must not classify")
	}
}

func TestWriteErrorWrapsAndClassifies(t *testing.T) {
	cause := &pgconn.PgError{Code: "40P01"}
	err := newWriteError(fmt.Errorf("copying: %w", cause))
	var te interface{ Temporary() bool }
	var pgErr *pgconn.PgError
	if !errors.As(err, &te) || !te.Temporary() || !errors.As(err, &pgErr) || pgErr != cause {
		t.Fatalf("writeError %v does not expose Temporary() and its cause", err)
	}
}
