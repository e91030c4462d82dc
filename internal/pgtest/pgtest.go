package pgtest

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/market-data-store/mds/internal/pgtemp"
)

// EnvURL names the variable that points tests at an existing server.
const EnvURL = "MDS_TEST_DATABASE_URL"

var (
	serverURL string
	counter   atomic.Int64
)

// Main runs the package's tests with a PostgreSQL server available. Use it
// as: func TestMain(m *testing.M) { pgtest.Main(m) }.
func Main(m *testing.M) {
	os.Exit(Run(m))
}

// Run is Main without the exit: it returns m.Run's code, for a TestMain
// that has more to stop.
func Run(m *testing.M) int {
	if u := os.Getenv(EnvURL); u != "" {
		serverURL = u
		return m.Run()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	c, err := pgtemp.Start(ctx, pgtemp.Options{})
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "pgtest: no PostgreSQL for the tests (%v); set %s or install the server binaries\n", err, EnvURL)
		return 1
	}
	defer c.Stop()
	serverURL = c.URL
	return m.Run()
}

// ServerURL is the URL of the server the tests use (database "postgres").
func ServerURL(t testing.TB) string {
	t.Helper()
	if serverURL == "" {
		t.Fatal("pgtest: call pgtest.Main(m) from TestMain first")
	}
	return serverURL
}

// NewDatabase creates a fresh database for the test and returns its URL. The
// database is dropped when the test ends.
func NewDatabase(t testing.TB) string {
	t.Helper()
	srv := ServerURL(t)
	name := fmt.Sprintf("mds_test_%d_%d_%d", os.Getpid(), time.Now().UnixNano()%1e6, counter.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	u, err := pgtemp.CreateDatabase(ctx, srv, name)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := pgtemp.DropDatabase(ctx, srv, name); err != nil {
			t.Logf("pgtest: dropping %s: %v", name, err)
		}
	})
	return u
}
