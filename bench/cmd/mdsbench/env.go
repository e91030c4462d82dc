package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kfake"

	kafkatest "github.com/market-data-store/mds/integration/kafka"

	"github.com/market-data-store/mds/internal/pgtemp"
)

// benchEnv is what every phase shares: one PostgreSQL server, one Kafka
// broker, the processor binary and the template database holding the schema.
type benchEnv struct {
	dir      string // temporary directory: binary, processor logs
	bin      string // processor binary
	pg       *pgtemp.Cluster
	kf       *kfake.Cluster     // -kafka kfake
	real     *kafkatest.Cluster // -kafka real
	brokers  string
	template string   // database created by `processor migrate`
	sets     []string // the -set flags, given to every processor run
	pprofDir string   // where profiles go; empty: no profiling
}

const (
	ticksTopic   = "market.ticks"
	templateDB   = "bench_template"
	migrateLimit = 2 * time.Minute
)

func startEnv(ctx context.Context, o options) (_ *benchEnv, err error) {
	e := &benchEnv{sets: o.set, pprofDir: o.pprofDir}
	defer func() {
		if err != nil {
			e.close()
		}
	}()
	if e.dir, err = os.MkdirTemp("", "mdsbench-"); err != nil {
		return nil, fmt.Errorf("creating temporary directory: %w", err)
	}
	e.bin = o.processor
	if e.bin == "" {
		if e.bin, err = buildProcessor(ctx, e.dir); err != nil {
			return nil, err
		}
	}

	progress("starting PostgreSQL (durable=%v: fsync and synchronous_commit %s)", o.durable, onOff(o.durable))
	if e.pg, err = pgtemp.Start(ctx, pgtemp.Options{Durable: o.durable}); err != nil {
		return nil, fmt.Errorf("starting PostgreSQL: %w", err)
	}
	if o.kafka == "real" {
		progress("starting Apache Kafka %s (1 broker in its own process), %d partitions of %s", kafkatest.Version, o.partitions, ticksTopic)
		if e.real, err = kafkatest.Start(ctx, kafkatest.Options{HeapMB: 1024}); err != nil {
			return nil, fmt.Errorf("starting Apache Kafka: %w", err)
		}
		e.brokers = strings.Join(e.real.Addrs(), ",")
		if err := createTopic(ctx, e, ticksTopic, o.partitions); err != nil {
			return nil, err
		}
	} else {
		progress("starting kfake (1 broker, %d partitions of %s)", o.partitions, ticksTopic)
		e.kf, err = kfake.NewCluster(
			kfake.NumBrokers(1),
			kfake.SeedTopics(int32(o.partitions), ticksTopic),
			kfake.GroupMinSessionTimeout(100*time.Millisecond),
		)
		if err != nil {
			return nil, fmt.Errorf("starting kfake: %w", err)
		}
		e.brokers = strings.Join(e.kf.ListenAddrs(), ",")
	}

	url, err := e.pg.CreateDatabase(ctx, templateDB)
	if err != nil {
		return nil, err
	}
	progress("creating the schema: processor migrate into database %s", templateDB)
	mctx, cancel := context.WithTimeout(ctx, migrateLimit)
	defer cancel()
	cmd := exec.CommandContext(mctx, e.bin, "migrate")
	cmd.Env = e.processorEnv(map[string]string{"MDS_DATABASE_URL": url})
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("processor migrate: %w\n%s", err, out)
	}
	e.template = templateDB
	return e, nil
}

// buildProcessor builds ./cmd/processor as `make build` does.
func buildProcessor(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "processor")
	progress("building the processor (go build -trimpath -o %s ./cmd/processor)", bin)
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", bin, "./cmd/processor")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building the processor: %w\n%s", err, out)
	}
	return bin, nil
}

func (e *benchEnv) close() {
	if e.kf != nil {
		e.kf.Close()
	}
	if e.real != nil {
		e.real.Stop()
		e.real.Remove()
	}
	if e.pg != nil {
		_ = e.pg.Stop()
	}
	if e.dir != "" {
		_ = os.RemoveAll(e.dir)
	}
}

// freshDB creates database name as a copy of the template: the schema and
// indexes `processor migrate` made, and no rows.
func (e *benchEnv) freshDB(ctx context.Context, name string) (string, error) {
	conn, err := pgx.Connect(ctx, e.pg.URL)
	if err != nil {
		return "", fmt.Errorf("connecting to create database %s: %w", name, err)
	}
	defer conn.Close(ctx)
	q := fmt.Sprintf("CREATE DATABASE %s TEMPLATE %s",
		pgx.Identifier{name}.Sanitize(), pgx.Identifier{e.template}.Sanitize())
	if _, err := conn.Exec(ctx, q); err != nil {
		return "", fmt.Errorf("creating database %s: %w", name, err)
	}
	return pgtemp.WithDatabase(e.pg.URL, name)
}

// openFreshDB creates database name as freshDB does and connects to it. It
// returns the database URL, the connection, and a function that closes the
// connection and drops the database.
func (e *benchEnv) openFreshDB(ctx context.Context, name string) (string, *pgx.Conn, func(), error) {
	url, err := e.freshDB(ctx, name)
	if err != nil {
		return "", nil, nil, err
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		e.dropDB(ctx, name)
		return "", nil, nil, fmt.Errorf("connecting: %w", err)
	}
	return url, conn, func() {
		conn.Close(ctx)
		e.dropDB(ctx, name)
	}, nil
}

// dropDB drops a database of an earlier phase, so that its dirty pages and
// files do not weigh on the next one.
func (e *benchEnv) dropDB(ctx context.Context, name string) {
	_ = pgtemp.DropDatabase(ctx, e.pg.URL, name)
	conn, err := pgx.Connect(ctx, e.pg.URL)
	if err != nil {
		return
	}
	defer conn.Close(ctx)
	_, _ = conn.Exec(ctx, "CHECKPOINT")
}

// processorEnv is the environment of a processor subprocess: this process's
// environment without any MDS_ or DATABASE_URL setting (so the processor
// runs on its defaults), the broker address, then the -set flags, then
// extra.
func (e *benchEnv) processorEnv(extra map[string]string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "MDS_") || k == "DATABASE_URL" {
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "MDS_KAFKA_BROKERS="+e.brokers)
	env = append(env, e.sets...)
	for k, v := range extra {
		env = append(env, k+"="+v)
	}
	return env
}

// postgresCPU is the CPU time used so far by the PostgreSQL server: the
// postmaster, its reaped children and its live children.
func (e *benchEnv) postgresCPU() time.Duration {
	b, err := os.ReadFile(filepath.Join(e.pg.Dir(), "data", "postmaster.pid"))
	if err != nil {
		return 0
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	pid, err := strconv.Atoi(string(line))
	if err != nil {
		return 0
	}
	st, err := readStat(pid)
	if err != nil {
		return 0
	}
	total := st.cpu + st.childCPU
	entries, _ := os.ReadDir("/proc")
	for _, d := range entries {
		child, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		if cs, err := readStat(child); err == nil && cs.ppid == pid {
			total += cs.cpu
		}
	}
	return total
}

// machine describes where the run happened.
type machine struct {
	NumCPU    int    `json:"nproc"`
	CPUModel  string `json:"cpu_model"`
	MemMB     int    `json:"mem_mb"`
	Kernel    string `json:"kernel"`
	GoVersion string `json:"go_version"`
	Commit    string `json:"commit"`
}

func machineInfo() machine {
	m := machine{NumCPU: runtime.NumCPU(), GoVersion: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		if kb, ok := procField(string(b), "MemTotal:"); ok {
			m.MemMB = int(kb / 1024)
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if out, err := exec.Command("git", "describe", "--always", "--dirty").Output(); err == nil {
		m.Commit = strings.TrimSpace(string(out))
	}
	return m
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}
