//go:build integration

package integration

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kfake"

	kafkatest "github.com/market-data-store/mds/integration/kafka"
	"github.com/market-data-store/mds/internal/pgtemp"
	"github.com/market-data-store/mds/internal/pgtest"
)

// Environment variables that choose the services.
const (
	envDocker         = "MDS_IT_DOCKER"          // 1: use testcontainers; 0: never probe Docker
	envKafkaBrokers   = "MDS_IT_KAFKA_BROKERS"   // existing brokers, comma separated
	envDatabaseURL    = "MDS_IT_DATABASE_URL"    // existing server; its role creates the test databases
	envSessionTimeout = "MDS_IT_SESSION_TIMEOUT" // group session timeout against existing brokers
	envKafka          = "MDS_IT_KAFKA"           // kfake: an in-process kfake cluster per test instead of Apache Kafka
)

// SCRAM-SHA-512 users of the broker mode: superUser bypasses the ACLs;
// appUser gets the ACLs a test grants it (none by default).
var (
	superUser = [2]string{"mds-super", "super-secret"}
	appUser   = [2]string{"mds-app", "app-secret"}
)

// services are where the tests find Kafka and PostgreSQL. They are chosen
// once, in TestMain.
type services struct {
	mode string // broker, docker, env or local: how the services were found, for the log

	// cluster is the Apache Kafka broker of the broker mode, with its
	// SCRAM, TLS and mutual-TLS listeners and the StandardAuthorizer
	// (nil in the other modes).
	cluster *kafkatest.Cluster

	brokers []string // empty: an in-process kfake cluster per test
	// dbServer is a server URL on which each test creates its database;
	// empty: the throwaway server of package pgtest.
	dbServer string
	// requireTimescale fails the TimescaleDB assertions instead of
	// skipping them when the extension is missing.
	requireTimescale bool
	// sessionTimeout is the group session timeout the tests use: how long a
	// SIGKILLed or stalled member keeps its partitions.
	sessionTimeout time.Duration
	describe       string
}

var (
	svc     services
	nameSeq atomic.Int64
)

func TestMain(m *testing.M) {
	s, stop, err := chooseServices()
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration:", err)
		os.Exit(1)
	}
	svc = s
	fmt.Fprintf(os.Stderr, "integration: mode %s: %s\n", s.mode, s.describe)
	var code int
	if s.dbServer == "" {
		code = pgtest.Run(m)
	} else {
		code = m.Run()
	}
	stop(code != 0)
	os.Exit(code)
}

// chooseServices picks broker, docker, env or local services (see doc.go)
// and returns a function that releases them (failed: keep their logs).
func chooseServices() (services, func(failed bool), error) {
	if useDocker() {
		s, stop, err := startContainers()
		return s, func(bool) { stop() }, err
	}
	s := services{mode: "local", sessionTimeout: 1500 * time.Millisecond}
	stop := func(bool) {}
	var parts []string
	switch b := strings.TrimSpace(os.Getenv(envKafkaBrokers)); {
	case b != "":
		s.mode = "env"
		s.brokers = strings.Split(b, ",")
		s.sessionTimeout = 6 * time.Second
		parts = append(parts, fmt.Sprintf("Kafka at %s (%s)", b, envKafkaBrokers))
	case os.Getenv(envKafka) == "kfake":
		parts = append(parts, "Kafka: an in-process kfake cluster per test on 127.0.0.1 ("+envKafka+"=kfake)")
	default:
		c, err := startBroker()
		if err != nil {
			return s, nil, err
		}
		s.mode, s.cluster, s.brokers = "broker", c, c.Addrs()
		s.sessionTimeout = 2 * time.Second
		stop = func(failed bool) {
			c.Stop()
			if failed {
				fmt.Fprintf(os.Stderr, "integration: the broker's files and logs are kept in %s\n", c.Dir())
				return
			}
			c.Remove()
		}
		parts = append(parts, fmt.Sprintf("Apache Kafka %s (one KRaft broker from Maven Central at %s; SCRAM-SHA-512, TLS and mutual-TLS listeners; StandardAuthorizer)", kafkatest.Version, strings.Join(s.brokers, ",")))
	}
	if d := strings.TrimSpace(os.Getenv(envDatabaseURL)); d != "" {
		s.mode = "env"
		s.dbServer = d
		parts = append(parts, "PostgreSQL from "+envDatabaseURL+" (a database per test)")
	} else {
		parts = append(parts, "PostgreSQL: the throwaway server of "+pgtest.EnvURL+" or one started by pgtest (a database per test)")
	}
	if v := os.Getenv(envSessionTimeout); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			stop(false)
			return s, nil, fmt.Errorf("%s must be a positive Go duration, not %q", envSessionTimeout, v)
		}
		s.sessionTimeout = d
	}
	parts = append(parts, fmt.Sprintf("group session timeout %s", s.sessionTimeout))
	if os.Getenv(envDocker) != "0" {
		parts = append(parts, "no Docker engine answered, so the testcontainers path (Redpanda + TimescaleDB) is compiled but not run")
	}
	s.describe = strings.Join(parts, "; ")
	return s, stop, nil
}

// startBroker starts the broker of the broker mode: one Apache Kafka node
// shared by the tests (each uses its own topics and group), with every
// listener the security tests need.
func startBroker() (*kafkatest.Cluster, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c, err := kafkatest.Start(ctx, kafkatest.Options{
		SCRAMUsers: map[string]string{superUser[0]: superUser[1], appUser[0]: appUser[1]},
		TLS:        true,
		Authorizer: true,
		SuperUsers: []string{"User:" + superUser[0], "User:CN=" + kafkatest.ClientCN},
		// KIP-848 groups: the same session as the classic groups of the tests.
		ConsumerGroupSessionTimeout: 2 * time.Second,
		ConsumerGroupHeartbeat:      100 * time.Millisecond,
	})
	if err != nil {
		return nil, fmt.Errorf("starting Apache Kafka %s: %w", kafkatest.Version, err)
	}
	return c, nil
}

// useDocker reports whether to start containers: MDS_IT_DOCKER=1, or a
// Docker engine answering /_ping within a second.
func useDocker() bool {
	switch os.Getenv(envDocker) {
	case "1", "true":
		return true
	case "0", "false":
		return false
	}
	network, addr := "unix", "/var/run/docker.sock"
	if h := os.Getenv("DOCKER_HOST"); h != "" {
		scheme, rest, ok := strings.Cut(h, "://")
		if !ok || (scheme != "unix" && scheme != "tcp") {
			return false
		}
		network, addr = scheme, rest
	}
	if network == "unix" {
		if _, err := os.Stat(addr); err != nil {
			return false
		}
	}
	c := http.Client{
		Timeout: time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		}},
	}
	resp, err := c.Get("http://docker/_ping")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// uniqueName returns a name no other test of this run (or an earlier run on
// shared services) uses.
func uniqueName(prefix string) string {
	return fmt.Sprintf("%s-%d-%d-%d", prefix, os.Getpid(), time.Now().UnixNano()%1e9, nameSeq.Add(1))
}

// kafka returns the seed brokers for the test: the shared ones, or a fresh
// kfake cluster that lives as long as the test.
func kafka(t *testing.T) []string {
	t.Helper()
	if len(svc.brokers) > 0 {
		return svc.brokers
	}
	// kfake listens on 127.0.0.1, on free ports.
	c, err := kfake.NewCluster(kfake.GroupMinSessionTimeout(500 * time.Millisecond))
	if err != nil {
		t.Fatalf("starting kfake: %v", err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}

// database creates a fresh database for the test and returns its URL.
func database(t *testing.T) string {
	t.Helper()
	if svc.dbServer == "" {
		return pgtest.NewDatabase(t)
	}
	name := strings.ReplaceAll(uniqueName("mds_it"), "-", "_")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	u, err := pgtemp.CreateDatabase(ctx, svc.dbServer, name)
	if err != nil {
		t.Fatalf("creating the test database on %s: %v", envDatabaseURL, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := pgtemp.DropDatabase(ctx, svc.dbServer, name); err != nil {
			t.Logf("dropping %s: %v", name, err)
		}
	})
	return u
}

// checkTimescale asserts, where TimescaleDB is available, that ticks is a
// hypertable and bars_1m exists. On plain PostgreSQL it skips (as a
// subtest) with a message naming why.
func checkTimescale(t *testing.T, db *pgxpool.Pool) {
	t.Run("timescale", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var available, preloaded bool
		if err := db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'),
			EXISTS (SELECT 1 FROM pg_settings WHERE name = 'timescaledb.bgw_launcher_poll_time')`).Scan(&available, &preloaded); err != nil {
			t.Fatal(err)
		}
		if !available || !preloaded {
			if svc.requireTimescale {
				t.Fatalf("the TimescaleDB container offers no usable timescaledb extension (available %v, preloaded %v)", available, preloaded)
			}
			if available {
				t.Skip("TimescaleDB is installed but the server does not preload it (e.g. MDS_PG_NO_TIMESCALE=1), so the service runs the plain path and the hypertable and bars_1m assertions do not apply")
			}
			t.Skip("plain PostgreSQL: the timescaledb extension is not installed in the test database, so the hypertable and bars_1m assertions do not apply (they run in docker mode against timescale/timescaledb)")
		}
		var hyper, bars bool
		err := db.QueryRow(ctx, `SELECT
			EXISTS (SELECT 1 FROM timescaledb_information.hypertables WHERE hypertable_name = 'ticks'),
			EXISTS (SELECT 1 FROM timescaledb_information.continuous_aggregates WHERE view_name = 'bars_1m')`).Scan(&hyper, &bars)
		if err != nil {
			t.Fatal(err)
		}
		if !hyper || !bars {
			t.Fatalf("TimescaleDB present but ticks hypertable=%v, bars_1m continuous aggregate=%v", hyper, bars)
		}
		var n int64
		if err := db.QueryRow(ctx, `SELECT coalesce(sum(trades), 0) FROM bars_1m`).Scan(&n); err != nil {
			t.Fatalf("reading bars_1m: %v", err)
		}
		t.Logf("TimescaleDB: ticks is a hypertable; bars_1m answers (%d trades aggregated in real time)", n)
	})
}

var errTimeout = errors.New("timed out")

// waitFor polls cond every interval until it returns true, an error, or
// the deadline passes.
func waitFor(ctx context.Context, d, interval time.Duration, cond func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return errTimeout
		case <-time.After(interval):
		}
	}
}
