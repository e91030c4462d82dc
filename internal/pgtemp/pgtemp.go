package pgtemp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// Options tunes the cluster. The zero value is a fast, non-durable cluster on
// a free port.
type Options struct {
	// Port to listen on (127.0.0.1). Zero picks a free one.
	Port int
	// Durable keeps fsync and synchronous commit on. Off by default: a
	// throwaway cluster has nothing to protect, and tests run faster.
	Durable bool
	// Settings are extra server settings (name → value), e.g. max_connections.
	Settings map[string]string
}

// Cluster is a running throwaway cluster.
type Cluster struct {
	// URL connects to database "postgres" as superuser "postgres", no password.
	URL string
	// Port is the TCP port on 127.0.0.1.
	Port int
	// Timescale is true when the server preloads the timescaledb library
	// (see Start), so CREATE EXTENSION timescaledb works in its databases.
	Timescale bool

	dir  string
	cmd  *exec.Cmd
	done chan struct{}
	log  *os.File
}

// Start creates and starts a cluster, and waits until it accepts connections.
func Start(ctx context.Context, opt Options) (c *Cluster, err error) {
	bindir, err := BinDir()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "mds-pg-")
	if err != nil {
		return nil, fmt.Errorf("creating cluster directory: %w", err)
	}
	defer func() {
		if err != nil {
			_ = os.RemoveAll(dir)
		}
	}()
	cred, err := credential()
	if err != nil {
		return nil, err
	}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return nil, fmt.Errorf("giving %s to the postgres user: %w", dir, err)
		}
	}
	data := filepath.Join(dir, "data")
	initdb := exec.CommandContext(ctx, filepath.Join(bindir, "initdb"),
		"-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("initdb: %w: %s", err, lastLines(out, 5))
	}

	port := opt.Port
	if port == 0 {
		if port, err = freePort(); err != nil {
			return nil, err
		}
	}
	args := []string{"-D", data, "-p", strconv.Itoa(port), "-k", dir,
		"-c", "listen_addresses=127.0.0.1", "-c", "max_connections=200",
		"-c", "shared_buffers=256MB", "-c", "max_wal_size=4GB"}
	if !opt.Durable {
		args = append(args, "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")
	}
	keys := make([]string, 0, len(opt.Settings))
	for k := range opt.Settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		args = append(args, "-c", k+"="+opt.Settings[k])
	}
	timescale := os.Getenv(EnvNoTimescale) == "" && timescaleInstalled(bindir)
	if timescale {
		// Telemetry off: a throwaway cluster must not call home.
		args = append(args, "-c", "shared_preload_libraries=timescaledb", "-c", "timescaledb.telemetry_level=off")
	}
	logf, err := os.Create(filepath.Join(dir, "postgres.log"))
	if err != nil {
		return nil, fmt.Errorf("creating server log: %w", err)
	}
	cmd := exec.Command(filepath.Join(bindir, "postgres"), args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Pdeathsig: if this process dies without Stop, the server goes with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("starting postgres: %w", err)
	}
	c = &Cluster{
		URL:  fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port),
		Port: port, Timescale: timescale, dir: dir, cmd: cmd, done: make(chan struct{}), log: logf,
	}
	go func() { _ = cmd.Wait(); close(c.done) }()
	if err := c.waitReady(ctx); err != nil {
		_ = c.Stop()
		return nil, err
	}
	return c, nil
}

func (c *Cluster) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for {
		conn, err := pgx.Connect(ctx, c.URL)
		if err == nil {
			return conn.Close(ctx)
		}
		select {
		case <-c.done:
			return fmt.Errorf("postgres exited at start: %s", c.logTail())
		case <-ctx.Done():
			return fmt.Errorf("postgres not ready: %w: %s", err, c.logTail())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// CreateDatabase creates a database and returns its URL.
func (c *Cluster) CreateDatabase(ctx context.Context, name string) (string, error) {
	return CreateDatabase(ctx, c.URL, name)
}

// Dir is the directory holding the cluster's data, socket and server log.
func (c *Cluster) Dir() string { return c.dir }

// Stop shuts the server down (fast shutdown, then kill after 10 s) and
// removes its directory.
func (c *Cluster) Stop() error {
	if c.cmd.Process != nil {
		_ = c.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-c.done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
			<-c.done
		}
	}
	c.log.Close()
	return os.RemoveAll(c.dir)
}

func (c *Cluster) logTail() string {
	b, _ := os.ReadFile(c.log.Name())
	return lastLines(b, 10)
}

// CreateDatabase creates database name on the server that serverURL points
// to, and returns the URL of the new database.
func CreateDatabase(ctx context.Context, serverURL, name string) (string, error) {
	conn, err := pgx.Connect(ctx, serverURL)
	if err != nil {
		return "", fmt.Errorf("connecting to create database: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", fmt.Errorf("creating database %s: %w", name, err)
	}
	return WithDatabase(serverURL, name)
}

// DropDatabase drops database name, disconnecting its sessions.
func DropDatabase(ctx context.Context, serverURL, name string) error {
	conn, err := pgx.Connect(ctx, serverURL)
	if err != nil {
		return fmt.Errorf("connecting to drop database: %w", err)
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
	return err
}

// WithDatabase returns serverURL (a postgres:// URL or a key=value DSN)
// pointing at database name instead.
func WithDatabase(serverURL, name string) (string, error) {
	if strings.HasPrefix(serverURL, "postgres://") || strings.HasPrefix(serverURL, "postgresql://") {
		u, err := url.Parse(serverURL)
		if err != nil {
			return "", errors.New("database URL does not parse") // the URL may hold a password: not echoed
		}
		u.Path = "/" + name
		return u.String(), nil
	}
	if strings.TrimSpace(serverURL) == "" {
		return "", errors.New("empty database URL")
	}
	return serverURL + " dbname=" + name, nil
}

// EnvNoTimescale names the variable that, set to any non-empty value, keeps
// Start from preloading TimescaleDB even where it is installed, to exercise
// the plain PostgreSQL path on such a machine.
const EnvNoTimescale = "MDS_PG_NO_TIMESCALE"

// timescaleInstalled reports whether the timescaledb library sits in the
// library directory of the server in bindir: beside bin in the Debian and
// source layouts, or where pg_config says when it belongs to that server.
func timescaleInstalled(bindir string) bool {
	dirs := []string{filepath.Join(filepath.Dir(bindir), "lib"), filepath.Join(filepath.Dir(bindir), "lib", "postgresql")}
	if out, err := exec.Command("pg_config", "--bindir", "--pkglibdir").Output(); err == nil {
		if f := strings.Fields(string(out)); len(f) == 2 && filepath.Clean(f[0]) == filepath.Clean(bindir) {
			dirs = append(dirs, f[1])
		}
	}
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "timescaledb.so")); err == nil {
			return true
		}
	}
	return false
}

// BinDir finds the PostgreSQL server binaries.
func BinDir() (string, error) {
	if d := os.Getenv("MDS_PG_BINDIR"); d != "" {
		return d, checkBin(d)
	}
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		d := strings.TrimSpace(string(out))
		if checkBin(d) == nil {
			return d, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return versionOf(dirs[i]) > versionOf(dirs[j]) })
	for _, d := range dirs {
		if checkBin(d) == nil {
			return d, nil
		}
	}
	return "", errors.New("no PostgreSQL server binaries (initdb, postgres) found: install them " +
		"(Debian: apt-get install postgresql) or set MDS_PG_BINDIR")
}

func versionOf(dir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
	return v
}

func checkBin(d string) error {
	for _, b := range []string{"initdb", "postgres"} {
		if _, err := os.Stat(filepath.Join(d, b)); err != nil {
			return fmt.Errorf("no %s in %s", b, d)
		}
	}
	return nil
}

// credential returns the user to run the server as: nil (the current user)
// unless we are root.
func credential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
	}
	return nil, errors.New("running as root and no unprivileged user (postgres, nobody) to run PostgreSQL as")
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func lastLines(b []byte, n int) string {
	lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte(" | ")))
}
