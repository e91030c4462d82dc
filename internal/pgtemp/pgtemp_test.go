package pgtemp_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/market-data-store/mds/internal/pgtemp"
)

func TestStartQueryStop(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := pgtemp.Start(ctx, pgtemp.Options{})
	if err != nil {
		t.Fatal(err)
	}
	u, err := c.CreateDatabase(ctx, "it_works")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	var db string
	if err := conn.QueryRow(ctx, "SELECT current_database()").Scan(&db); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	if db != "it_works" {
		t.Fatalf("connected to %q, want it_works", db)
	}
	dir := c.Dir()
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("cluster directory %s still there after Stop (err %v)", dir, err)
	}
}

func TestWithDatabase(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"postgres://u:p@h:5432/postgres?sslmode=disable", "postgres://u:p@h:5432/x?sslmode=disable"},
		{"postgres://h:5432", "postgres://h:5432/x"},
		{"postgresql://h/db", "postgresql://h/x"},
		{"host=h user=u", "host=h user=u dbname=x"},
	} {
		got, err := pgtemp.WithDatabase(tc.in, "x")
		if err != nil || got != tc.want {
			t.Errorf("WithDatabase(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

// TestTimescalePreload checks that a cluster preloads TimescaleDB exactly
// when it is installed and MDS_PG_NO_TIMESCALE is unset: CREATE EXTENSION
// then works; with the switch set it is refused as not preloaded.
func TestTimescalePreload(t *testing.T) {
	bindir, err := pgtemp.BinDir()
	if err != nil {
		t.Skip(err)
	}
	installed := pgtemp.TimescaleInstalled(bindir)
	for _, off := range []bool{false, true} {
		t.Run(map[bool]string{false: "default", true: pgtemp.EnvNoTimescale}[off], func(t *testing.T) {
			if off {
				t.Setenv(pgtemp.EnvNoTimescale, "1")
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			c, err := pgtemp.Start(ctx, pgtemp.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Stop()
			if want := installed && !off; c.Timescale != want {
				t.Fatalf("Cluster.Timescale = %v, want %v (installed %v)", c.Timescale, want, installed)
			}
			if !installed {
				t.Skip("TimescaleDB is not installed for this server: only the plain cluster is checked")
			}
			conn, err := pgx.Connect(ctx, c.URL)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(ctx)
			_, err = conn.Exec(ctx, "CREATE EXTENSION timescaledb")
			if c.Timescale && err != nil {
				t.Fatalf("CREATE EXTENSION on a preloading cluster: %v", err)
			}
			if !c.Timescale && err == nil {
				t.Fatal("CREATE EXTENSION succeeded although the library is not preloaded")
			}
		})
	}
}
