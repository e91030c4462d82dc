package main

// The secret scan: every secret input of the processor gets a distinct
// planted value, the processor runs in every situation that prints
// something (help, healthy start, each kind of start-up failure, /readyz
// with the database or Kafka down, /metrics, a panic), and everything it
// printed or served is searched for each planted value in plain, hex,
// base64 and percent-encoded form.
//
// The processor runs in a child process (this test binary re-executed with
// childModeEnv set), because its logger writes to the process's stderr and a
// panic is only visible from outside.

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"
	"go.uber.org/zap"

	"github.com/market-data-store/mds/backpressure"
	"github.com/market-data-store/mds/internal/app"
	"github.com/market-data-store/mds/internal/config"
	"github.com/market-data-store/mds/internal/pgtemp"
	"github.com/market-data-store/mds/internal/pgtest"
	"github.com/market-data-store/mds/internal/store"
	"github.com/market-data-store/mds/internal/tick"
)

// Child process control. childArgsEnv holds the command line, separated by
// childArgsSep.
const (
	childModeEnv = "MDS_SECRETSCAN_CHILD" // "cli" or "panic"
	childArgsEnv = "MDS_SECRETSCAN_ARGS"
	childArgsSep = "\x1f"
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(childModeEnv); mode != "" {
		os.Exit(child(mode))
	}
	pgtest.Main(m) // the dlq tests use a database of the shared throwaway server
}

// child is main for the processes the scan starts.
func child(mode string) int {
	env := config.Environ(os.Environ())
	delete(env, childModeEnv)
	delete(env, childArgsEnv)
	switch mode {
	case "cli":
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		var args []string
		if a := os.Getenv(childArgsEnv); a != "" {
			args = strings.Split(a, childArgsSep)
		}
		return run(ctx, args, env, os.Stdout, os.Stderr)
	case "panic":
		// What careless code could do with the settings: print them with
		// every verb, log them, encode them, and panic with them.
		s, err := app.LoadSettings(env)
		if err != nil {
			fmt.Fprintln(os.Stderr, "settings:", err)
			return 3
		}
		fmt.Printf("%%v %v\n%%+v %+v\n%%#v %#v\n", s, s, s)
		fmt.Printf("store %v %+v %#v\n", s.Store, s.Store, s.Store)
		fmt.Printf("pointer %v %+v\n", &s, &s)
		b, err := json.Marshal(s)
		fmt.Printf("json %s %v\n", b, err)
		log, err := app.NewLogger(app.LogConfig{Level: "debug", Format: "json"})
		if err != nil {
			fmt.Fprintln(os.Stderr, "logger:", err)
			return 3
		}
		log.Debug("settings", zap.Any("settings", s), zap.Any("store", s.Store), zap.Any("kafka", s.Kafka),
			zap.Any("feedback", s.Feedback), zap.Reflect("reflect", s))
		_ = log.Sync()
		// The panic ends the process (exit code 2) from its goroutine; this
		// one waits for that and never returns, so exit code 0 cannot win
		// the race (a deferred close would let it return first).
		go func() { panic(fmt.Errorf("forced panic with settings %+v", s)) }()
		select {}
	}
	fmt.Fprintln(os.Stderr, "unknown child mode", mode)
	return 3
}

// planted is one secret input with its planted value. parts are random
// pieces of the value, each searched alone, so that a value cut apart (a
// password with a raw '/' read as part of a path) is caught too.
type planted struct {
	name, value string
	parts       []string
}

// newMarker returns a distinct value that cannot occur by chance, random on
// both sides of characters that URLs treat specially, so that the
// percent-encoded form differs from the plain one and a value split at any
// of them still shows a random part.
func newMarker(name string) planted {
	r := func() string {
		b := make([]byte, 8)
		if _, err := rand.Read(b); err != nil {
			panic(err)
		}
		return hex.EncodeToString(b)
	}
	a, b := r(), r()
	kind := strings.ToLower(strings.ReplaceAll(name, "_", ""))
	return planted{name: name, value: "Pl4nt" + a + "-" + kind + "@/:+~x" + b, parts: []string{a, b}}
}

// encodings returns the forms of v the scan looks for, by name. Base64 is
// searched at the three byte alignments v can have inside a longer encoded
// text, keeping only the characters that do not depend on the neighbours.
func encodings(v string) map[string]string {
	forms := map[string]string{
		"plain":                v,
		"hex":                  hex.EncodeToString([]byte(v)),
		"HEX":                  strings.ToUpper(hex.EncodeToString([]byte(v))),
		"query-escaped":        url.QueryEscape(v),
		"path-escaped":         url.PathEscape(v),
		"userinfo-escaped":     strings.TrimPrefix(url.UserPassword("", v).String(), ":"),
		"percent-encoded-all":  percentAll(v),
		"quoted":               fmt.Sprintf("%q", v),
		"json":                 mustJSON(v),
		"lower-case":           strings.ToLower(v),
		"percent-encoded-mixd": strings.ReplaceAll(percentAll(v), "%2F", "%2f"),
	}
	for name, enc := range map[string]*base64.Encoding{
		"base64": base64.StdEncoding, "base64url": base64.URLEncoding,
		"base64raw": base64.RawStdEncoding, "base64rawurl": base64.RawURLEncoding,
	} {
		for k := 0; k < 3; k++ {
			e := enc.EncodeToString(append(make([]byte, k), v...))
			if k > 0 {
				e = e[4:]
			}
			e = e[:len(e)-4]
			forms[fmt.Sprintf("%s@%d", name, k)] = e
		}
	}
	return forms
}

func percentAll(v string) string {
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}

func mustJSON(v string) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// outputs collects everything the processor printed or served, by where it
// came from. Safe for concurrent use by parallel subtests.
type outputs struct {
	mu sync.Mutex
	m  map[string]string
}

func (o *outputs) add(where, text string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.m == nil {
		o.m = map[string]string{}
	}
	for i := 2; ; i++ {
		if _, dup := o.m[where]; !dup {
			break
		}
		where = fmt.Sprintf("%s #%d", strings.SplitN(where, " #", 2)[0], i)
	}
	o.m[where] = text
}

// scan reports every planted value found in any output, in any form.
func (o *outputs) scan(secrets []planted) []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	var found []string
	for where, text := range o.m {
		for _, s := range secrets {
			forms := encodings(s.value)
			for i, part := range s.parts {
				forms[fmt.Sprintf("random part %d", i+1)] = part
			}
			names := make([]string, 0, len(forms))
			for n := range forms {
				if n != "plain" {
					names = append(names, n)
				}
			}
			sort.Strings(names)
			names = append([]string{"plain"}, names...)
			for _, form := range names {
				if i := strings.Index(text, forms[form]); i >= 0 {
					lo, hi := max(0, i-120), min(len(text), i+len(forms[form])+40)
					found = append(found, fmt.Sprintf("%s (%s form) in %s: ...%s...", s.name, form, where, text[lo:hi]))
					break
				}
			}
		}
	}
	sort.Strings(found)
	return found
}

// dump writes every output to a file in dir, to read what was scanned.
func (o *outputs) dump(t *testing.T, dir string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for where, text := range o.m {
		name := strings.Map(func(r rune) rune {
			if r == '/' || r == ' ' || r == ':' {
				return '_'
			}
			return r
		}, where)
		if err := os.WriteFile(filepath.Join(dir, name+".txt"), []byte(text), 0o644); err != nil {
			t.Error(err)
		}
	}
}

// total is the number of bytes collected, to show the scan saw something.
func (o *outputs) total() (n, count int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, t := range o.m {
		n += len(t)
	}
	return n, len(o.m)
}

// result is what a child process printed.
type result struct {
	code           int
	stdout, stderr string
}

// child process handle.
type proc struct {
	cmd            *exec.Cmd
	stdout, stderr bytes.Buffer
	done           chan struct{}
	err            error
}

// start runs the test binary as the processor with args and exactly env
// (plus PATH, HOME and TMPDIR).
func start(t *testing.T, mode string, env map[string]string, args ...string) *proc {
	t.Helper()
	p := &proc{done: make(chan struct{})}
	p.cmd = exec.Command(os.Args[0], "-test.run=^$")
	p.cmd.Env = []string{childModeEnv + "=" + mode, childArgsEnv + "=" + strings.Join(args, childArgsSep)}
	for _, k := range []string{"PATH", "HOME", "TMPDIR"} {
		if v, ok := os.LookupEnv(k); ok {
			p.cmd.Env = append(p.cmd.Env, k+"="+v)
		}
	}
	for k, v := range env {
		p.cmd.Env = append(p.cmd.Env, k+"="+v)
	}
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// wait waits for the child to exit, interrupting it after soft and killing
// it after hard (both from now).
func (p *proc) wait(t *testing.T, soft, hard time.Duration) result {
	t.Helper()
	softT, hardT := time.NewTimer(soft), time.NewTimer(hard)
	defer softT.Stop()
	defer hardT.Stop()
	for {
		select {
		case <-p.done:
			code := 0
			if p.err != nil {
				code = -1
				if ee, ok := p.err.(*exec.ExitError); ok {
					code = ee.ExitCode()
				}
			}
			return result{code: code, stdout: p.stdout.String(), stderr: p.stderr.String()}
		case <-softT.C:
			_ = p.cmd.Process.Signal(os.Interrupt)
		case <-hardT.C:
			t.Logf("child %v did not stop after SIGINT; killing it", p.cmd.Args)
			_ = p.cmd.Process.Kill()
		}
	}
}

// fixture is the world the scenarios run in.
type fixture struct {
	secrets []planted
	m       map[string]string // secret name → planted value

	pgHostPort string // 127.0.0.1:port of a server enforcing passwords
	pgAdmin    string // superuser URL (trust)
	dbName     string
	files      map[string]string // secret name → file holding it
	out        outputs
}

const (
	kafkaUser = "mds-kafka"
	dbRoleURL = "mds_url"  // password: MDS_DATABASE_URL's
	dbRoleEnv = "mds_env"  // password: DATABASE_URL's
	dbRoleFil = "mds_file" // password: MDS_DATABASE_PASSWORD_FILE's
	dbRoleOff = "mds_off"  // password: MDS_DATABASE_URL's; the test changes it
)

// dbURL is a URL of the shared test database for role with password pw
// ("" for none) on host.
func (f *fixture) dbURL(host, role, pw string) string {
	return dbURLOf(host, f.dbName, role, pw)
}

// dbURLTo is a URL of database db on the test server.
func (f *fixture) dbURLTo(role, db, pw string) string { return dbURLOf(f.pgHostPort, db, role, pw) }

func dbURLOf(host, db, role, pw string) string {
	u := url.URL{Scheme: "postgres", Host: host, Path: "/" + db, RawQuery: "sslmode=disable&connect_timeout=3"}
	if pw != "" {
		u.User = url.UserPassword(role, pw)
	} else {
		u.User = url.User(role)
	}
	return u.String()
}

// startPostgres starts a throwaway cluster that trusts the superuser but
// requires scram-sha-256 passwords of every other role, so the planted
// database passwords are really used.
func startPostgres(t *testing.T) (admin string, port int) {
	t.Helper()
	dir, err := os.MkdirTemp("", "mds-secretscan-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	// The server may run as another user (pgtemp drops root): it must read
	// the file.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	hba := filepath.Join(dir, "pg_hba.conf")
	conf := "local all all trust\n" +
		"host all postgres 127.0.0.1/32 trust\n" +
		"host all all 127.0.0.1/32 scram-sha-256\n"
	if err := os.WriteFile(hba, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := pgtemp.Start(ctx, pgtemp.Options{Settings: map[string]string{"hba_file": hba}})
	if err != nil {
		t.Fatalf("starting PostgreSQL: %v", err)
	}
	t.Cleanup(func() { _ = c.Stop() })
	return c.URL, c.Port
}

func newFixture(t *testing.T) *fixture {
	f := &fixture{m: map[string]string{}, files: map[string]string{}}
	for _, name := range []string{
		"MDS_DATABASE_URL", "DATABASE_URL", "MDS_DATABASE_PASSWORD_FILE",
		"MDS_KAFKA_SASL_PASSWORD", "MDS_KAFKA_SASL_PASSWORD_FILE", "MDS_KAFKA_SASL_OAUTH_TOKEN",
		"AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "MDS_FB_HTTP_TOKEN", "MDS_FB_HTTP_HMAC_SECRET",
	} {
		p := newMarker(name)
		f.secrets = append(f.secrets, p)
		f.m[name] = p.value
	}
	dir := t.TempDir()
	for _, name := range []string{"MDS_DATABASE_PASSWORD_FILE", "MDS_KAFKA_SASL_PASSWORD_FILE"} {
		p := filepath.Join(dir, strings.ToLower(name))
		if err := os.WriteFile(p, []byte(f.m[name]+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		f.files[name] = p
	}

	admin, port := startPostgres(t)
	f.pgAdmin, f.pgHostPort = admin, fmt.Sprintf("127.0.0.1:%d", port)
	f.dbName = "secretscan"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for role, secretName := range map[string]string{
		dbRoleURL: "MDS_DATABASE_URL", dbRoleEnv: "DATABASE_URL", dbRoleFil: "MDS_DATABASE_PASSWORD_FILE",
		dbRoleOff: "MDS_DATABASE_URL",
	} {
		sql := fmt.Sprintf("CREATE ROLE %s LOGIN SUPERUSER PASSWORD %s", role, quoteLiteral(f.m[secretName]))
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("creating role %s: %v", role, err)
		}
	}
	for db, owner := range map[string]string{f.dbName: dbRoleURL, "secretscan_env": dbRoleEnv, "secretscan_off": dbRoleOff} {
		if _, err := conn.Exec(ctx, "CREATE DATABASE "+db+" OWNER "+owner); err != nil {
			t.Fatal(err)
		}
	}
	// The shared database gets its schema, so that dlq list finds its table.
	st, err := store.Open(ctx, func() store.Config {
		c := store.DefaultConfig()
		c.DatabaseURL, c.Group, c.Timescale.CreateExtension = f.dbURL(f.pgHostPort, dbRoleURL, f.m["MDS_DATABASE_URL"]), "secretscan", false
		return c
	}(), zap.NewNop(), prometheus.NewRegistry())
	if err != nil {
		t.Fatalf("migrating the test database: %v", err)
	}
	st.Close()
	// Passwords really are checked.
	if c, err := pgx.Connect(ctx, f.dbURL(f.pgHostPort, dbRoleURL, "wrong")); err == nil {
		c.Close(ctx)
		t.Fatal("the test server accepted a wrong password: password authentication is not enforced")
	}
	return f
}

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// kafka starts a kfake cluster with SASL/SCRAM-SHA-256 for user/password.
func kafka(t *testing.T, password string) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.EnableSASL(),
		kfake.Superuser("SCRAM-SHA-256", kafkaUser, password),
		kfake.SeedTopics(2, "market.ticks", backpressure.DefaultTopic),
		kfake.GroupMinSessionTimeout(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// baseEnv is a valid processor environment: debug logs, fast group
// timings, SCRAM to brokers, the webhook on with its token and HMAC key,
// unused AWS secrets set too.
func (f *fixture) baseEnv(brokers []string, webhook string) map[string]string {
	return map[string]string{
		"MDS_LOG_LEVEL":                  "debug",
		"MDS_HTTP_ADDR":                  "",
		"MDS_KAFKA_BROKERS":              strings.Join(brokers, ","),
		"MDS_KAFKA_HEARTBEAT_INTERVAL":   "100ms",
		"MDS_KAFKA_SESSION_TIMEOUT":      "3s",
		"MDS_KAFKA_REVOKE_TIMEOUT":       "1s",
		"MDS_COORDINATOR_DRAIN_TIMEOUT":  "2s",
		"MDS_COORDINATOR_ID":             "secretscan",
		"MDS_FB_HEARTBEAT_INTERVAL":      "200ms",
		"MDS_KAFKA_SASL_MECHANISM":       "scram-sha-256",
		"MDS_KAFKA_SASL_USERNAME":        kafkaUser,
		"MDS_KAFKA_SASL_PASSWORD":        f.m["MDS_KAFKA_SASL_PASSWORD"],
		"MDS_DATABASE_URL":               f.dbURL(f.pgHostPort, dbRoleURL, f.m["MDS_DATABASE_URL"]),
		"MDS_FB_ENABLE_HTTP_BROADCAST":   "true",
		"MDS_FB_HTTP_ENDPOINT":           webhook,
		"MDS_FB_HTTP_TIMEOUT":            "1s",
		"MDS_FB_HTTP_MAX_RETRIES":        "1",
		"MDS_FB_HTTP_TOKEN":              f.m["MDS_FB_HTTP_TOKEN"],
		"MDS_FB_HTTP_HMAC_SECRET":        f.m["MDS_FB_HTTP_HMAC_SECRET"],
		"AWS_ACCESS_KEY_ID":              "AKIASECRETSCAN",
		"AWS_SECRET_ACCESS_KEY":          f.m["AWS_SECRET_ACCESS_KEY"],
		"AWS_SESSION_TOKEN":              f.m["AWS_SESSION_TOKEN"],
		"MDS_TS_CREATE_EXTENSION":        "false",
		"MDS_KAFKA_REBALANCE_TIMEOUT":    "5s",
		"MDS_RETRY_MAX_ATTEMPTS":         "1",
		"MDS_COORDINATOR_FLUSH_INTERVAL": "50ms",
	}
}

func with(env map[string]string, kv ...string) map[string]string {
	out := make(map[string]string, len(env)+len(kv)/2)
	for k, v := range env {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == "\x00" {
			delete(out, kv[i])
			continue
		}
		out[kv[i]] = kv[i+1]
	}
	return out
}

// unset marks a variable to remove in with.
const unset = "\x00"

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func get(url string) (int, string, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// TestSecretsNeverLeak is the scan of issue 9.
func TestSecretsNeverLeak(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL, Kafka and several processors")
	}
	began := time.Now()
	f := newFixture(t)

	// The webhook receiver checks that the planted token and key are the
	// ones really used.
	var hooks struct {
		sync.Mutex
		auth, sig []string
	}
	wh := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mac := hmac.New(sha256.New, []byte(f.m["MDS_FB_HTTP_HMAC_SECRET"]))
		mac.Write(body)
		hooks.Lock()
		hooks.auth = append(hooks.auth, r.Header.Get("Authorization"))
		if r.Header.Get("X-MDS-Signature") != "sha256="+hex.EncodeToString(mac.Sum(nil)) {
			hooks.sig = append(hooks.sig, r.Header.Get("X-MDS-Signature"))
		}
		hooks.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(wh.Close)

	good := kafka(t, f.m["MDS_KAFKA_SASL_PASSWORD"])
	goodFile := kafka(t, f.m["MDS_KAFKA_SASL_PASSWORD_FILE"])
	rejecting := kafka(t, "not-the-planted-password")
	env := f.baseEnv(good.ListenAddrs(), wh.URL+"/hook")
	closedPort := freeAddr(t)

	t.Run("help", func(t *testing.T) {
		for _, args := range [][]string{
			{"--help"}, {"run", "--help"}, {"migrate", "--help"}, {"dev", "--help"}, {"dlq", "--help"},
			{"dlq", "list", "--help"}, {"dlq", "replay", "--help"}, {"version"}, {"--no-such-flag"}, {"version", "--help"},
		} {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), args, env, &stdout, &stderr)
			where := "processor " + strings.Join(args, " ")
			f.out.add(where+" (stdout)", stdout.String())
			f.out.add(where+" (stderr)", stderr.String())
			if args[len(args)-1] == "--help" && (code != 0 || !strings.Contains(stdout.String(), "MDS_DATABASE_URL")) {
				t.Errorf("%s: exit %d, help without the settings:\n%s", where, code, stdout.String())
			}
		}
	})

	// Each case runs the processor once and expects it to fail with an
	// error containing want (or, with code 0, to succeed).
	cases := []struct {
		name string
		env  map[string]string
		args []string
		code int
		want string
	}{
		{"migrate with MDS_DATABASE_PASSWORD_FILE", with(env,
			"MDS_DATABASE_URL", f.dbURL(f.pgHostPort, dbRoleFil, ""),
			"MDS_DATABASE_PASSWORD_FILE", f.files["MDS_DATABASE_PASSWORD_FILE"]),
			[]string{"migrate"}, 0, "schema at version"},
		{"dlq list with DATABASE_URL", with(env,
			"MDS_DATABASE_URL", unset,
			"DATABASE_URL", f.dbURL(f.pgHostPort, dbRoleEnv, f.m["DATABASE_URL"])),
			[]string{"dlq", "list"}, 0, "dead letter(s)"},
		{"wrong database password", with(env,
			"MDS_DATABASE_URL", f.dbURL(f.pgHostPort, dbRoleEnv, f.m["MDS_DATABASE_URL"])),
			nil, 1, "password authentication failed"},
		{"wrong database password from file", with(env,
			"MDS_DATABASE_URL", f.dbURL(f.pgHostPort, dbRoleURL, ""),
			"MDS_DATABASE_PASSWORD_FILE", f.files["MDS_DATABASE_PASSWORD_FILE"]),
			[]string{"migrate"}, 1, "password authentication failed"},
		{"wrong DATABASE_URL password", with(env,
			"MDS_DATABASE_URL", unset,
			"DATABASE_URL", f.dbURL(f.pgHostPort, dbRoleURL, f.m["DATABASE_URL"])),
			[]string{"migrate"}, 1, "password authentication failed"},
		{"wrong kafka password", with(env, "MDS_KAFKA_BROKERS", rejecting.ListenAddrs()[0]),
			nil, 1, "kafka"},
		{"wrong kafka password from file", with(env, "MDS_KAFKA_BROKERS", rejecting.ListenAddrs()[0],
			"MDS_KAFKA_SASL_PASSWORD", unset,
			"MDS_KAFKA_SASL_PASSWORD_FILE", f.files["MDS_KAFKA_SASL_PASSWORD_FILE"]),
			nil, 1, "kafka"},
		{"oauth token refused", with(env, "MDS_KAFKA_SASL_MECHANISM", "oauthbearer",
			"MDS_KAFKA_SASL_USERNAME", unset, "MDS_KAFKA_SASL_PASSWORD", unset,
			"MDS_KAFKA_SASL_OAUTH_TOKEN", f.m["MDS_KAFKA_SASL_OAUTH_TOKEN"]),
			nil, 1, "kafka"},
		{"aws-msk-iam without TLS", with(env, "MDS_KAFKA_SASL_MECHANISM", "aws-msk-iam",
			"MDS_KAFKA_SASL_USERNAME", unset, "MDS_KAFKA_SASL_PASSWORD", unset),
			nil, 1, "MDS_KAFKA_TLS_ENABLED"},
		{"malformed MDS_DATABASE_URL", with(env,
			"MDS_DATABASE_URL", "postgres://"+url.UserPassword("u", f.m["MDS_DATABASE_URL"]).String()+"@host:notaport/db"),
			nil, 1, "MDS_DATABASE_URL"},
		{"malformed raw MDS_DATABASE_URL", with(env,
			"MDS_DATABASE_URL", "postgres://u:"+f.m["MDS_DATABASE_URL"]+"@host/db"),
			nil, 1, "MDS_DATABASE_URL"},
		{"malformed keyword DSN", with(env,
			"MDS_DATABASE_URL", "host=127.0.0.1 password='"+f.m["MDS_DATABASE_URL"]),
			nil, 1, "MDS_DATABASE_URL"},
		{"malformed DATABASE_URL", with(env, "MDS_DATABASE_URL", unset,
			"DATABASE_URL", "postgres://"+url.UserPassword("u", f.m["DATABASE_URL"]).String()+"@host:notaport/db"),
			nil, 1, "URL"},
		{"password file with a password in the URL", with(env,
			"MDS_DATABASE_PASSWORD_FILE", f.files["MDS_DATABASE_PASSWORD_FILE"]),
			nil, 1, "MDS_DATABASE_URL"},
		{"database unreachable", with(env,
			"MDS_DATABASE_URL", f.dbURL(closedPort, dbRoleURL, f.m["MDS_DATABASE_URL"])),
			nil, 1, "connect"},
		{"database unreachable, password file", with(env,
			"MDS_DATABASE_URL", f.dbURL(closedPort, dbRoleFil, ""),
			"MDS_DATABASE_PASSWORD_FILE", f.files["MDS_DATABASE_PASSWORD_FILE"]),
			[]string{"dlq", "list"}, 1, "connect"},
		{"invalid settings", with(env,
			"MDS_COORDINATOR_CAPACITY", "-5", "MDS_KAFKA_SASL_PASSWORD_FILE", f.files["MDS_KAFKA_SASL_PASSWORD_FILE"],
			"MDS_KAFKA_SASL_OAUTH_TOKEN", f.m["MDS_KAFKA_SASL_OAUTH_TOKEN"], "MDS_FB_HTTP_TOKEN_FILE", "/nonexistent",
			"MDS_FB_HTTP_HMAC_SECRET_FILE", "/nonexistent", "MDS_FB_HTTP_ENDPOINT", "ftp://x"),
			nil, 1, "MDS_COORDINATOR_CAPACITY"},
		{"unparseable settings", with(env,
			"MDS_COORDINATOR_CAPACITY", "lots", "MDS_LOG_LEVEL", "loud", "MDS_DB_AUTO_MIGRATE", "perhaps"),
			nil, 1, "MDS_COORDINATOR_CAPACITY"},
		{"missing password file", with(env,
			"MDS_DATABASE_URL", f.dbURL(f.pgHostPort, dbRoleFil, ""),
			"MDS_DATABASE_PASSWORD_FILE", filepath.Join(t.TempDir(), "absent")),
			nil, 1, "MDS_DATABASE_PASSWORD_FILE"},
	}
	t.Run("failures", func(t *testing.T) {
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				t.Parallel()
				p := start(t, "cli", c.env, c.args...)
				r := p.wait(t, 25*time.Second, 30*time.Second)
				f.out.add(c.name+" (stdout)", r.stdout)
				f.out.add(c.name+" (stderr)", r.stderr)
				if r.code != c.code || !strings.Contains(r.stdout+r.stderr, c.want) {
					t.Errorf("exit %d (want %d), output should contain %q:\nstdout:\n%s\nstderr:\n%s",
						r.code, c.code, c.want, r.stdout, lastLines(r.stderr, 15))
				}
			})
		}
		t.Run("panic", func(t *testing.T) {
			t.Parallel()
			penv := with(env, "MDS_DATABASE_URL", f.dbURL(f.pgHostPort, dbRoleFil, ""),
				"MDS_DATABASE_PASSWORD_FILE", f.files["MDS_DATABASE_PASSWORD_FILE"],
				"MDS_KAFKA_SASL_PASSWORD", unset,
				"MDS_KAFKA_SASL_PASSWORD_FILE", f.files["MDS_KAFKA_SASL_PASSWORD_FILE"])
			r := start(t, "panic", penv).wait(t, 20*time.Second, 25*time.Second)
			f.out.add("panic (stdout)", r.stdout)
			f.out.add("panic (stderr)", r.stderr)
			if r.code != 2 || !strings.Contains(r.stderr, "forced panic") || !strings.Contains(r.stdout, "json {") {
				t.Errorf("the panic child exited %d:\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
			}
		})
		t.Run("healthy run, then database and kafka down", func(t *testing.T) {
			t.Parallel()
			f.healthyRun(t, "healthy (MDS_DATABASE_URL, MDS_KAFKA_SASL_PASSWORD_FILE)", with(env,
				"MDS_KAFKA_BROKERS", goodFile.ListenAddrs()[0],
				"MDS_KAFKA_SASL_PASSWORD", unset,
				"MDS_KAFKA_SASL_PASSWORD_FILE", f.files["MDS_KAFKA_SASL_PASSWORD_FILE"],
				"MDS_DATABASE_URL", f.dbURLTo(dbRoleOff, "secretscan_off", f.m["MDS_DATABASE_URL"])), goodFile, dbRoleOff)
		})
		t.Run("healthy run with the password in MDS_KAFKA_SASL_PASSWORD", func(t *testing.T) {
			t.Parallel()
			// A backlog and a small queue raise the level, so the webhook
			// is called with the planted token and key.
			produceTicks(t, good.ListenAddrs(), f.m["MDS_KAFKA_SASL_PASSWORD"], 3000)
			f.healthyRun(t, "healthy (DATABASE_URL, MDS_KAFKA_SASL_PASSWORD)", with(env,
				"MDS_COORDINATOR_CAPACITY", "50", "MDS_COORDINATOR_BATCH_SIZE", "10", "MDS_COORDINATOR_WORKERS", "1",
				"MDS_DATABASE_URL", unset,
				"DATABASE_URL", f.dbURLTo(dbRoleEnv, "secretscan_env", f.m["DATABASE_URL"])), good, "")
		})
	})

	hooks.Lock()
	auths, badSigs := hooks.auth, hooks.sig
	hooks.Unlock()
	if len(auths) == 0 || auths[0] != "Bearer "+f.m["MDS_FB_HTTP_TOKEN"] {
		t.Errorf("the webhook should have received the planted bearer token, got %d requests (%.40q)", len(auths), auths)
	}
	if len(badSigs) > 0 {
		t.Errorf("%d webhook signatures were not made with the planted HMAC key: %q", len(badSigs), badSigs)
	}

	size, n := f.out.total()
	t.Logf("scanned %d outputs, %d bytes, for %d planted secrets in %d forms each, in %v",
		n, size, len(f.secrets), len(encodings("x-long-enough-marker-for-forms")), time.Since(began).Round(time.Millisecond))
	if dir := os.Getenv("MDS_SECRETSCAN_DUMP"); dir != "" {
		f.out.dump(t, dir)
	}
	if leaks := f.out.scan(f.secrets); len(leaks) > 0 {
		t.Errorf("%d planted secret(s) leaked:\n%s", len(leaks), strings.Join(leaks, "\n"))
	}
}

// healthyRun starts the processor against kf and the database, fetches
// /healthz, /metrics and /readyz while healthy and, when breakRole is set,
// /readyz again with the database refusing that role and then with Kafka
// gone. Then it stops the processor with SIGINT.
func (f *fixture) healthyRun(t *testing.T, name string, env map[string]string, kf *kfake.Cluster, breakRole string) {
	addr := freeAddr(t)
	env = with(env, "MDS_HTTP_ADDR", addr)
	quick := breakRole == ""
	role := breakRole
	p := start(t, "cli", env)
	base := "http://" + addr
	fetch := func(what, path string) (int, string) {
		code, body, err := get(base + path)
		if err != nil {
			body = "error: " + err.Error()
		}
		f.out.add(fmt.Sprintf("%s: GET %s %s", name, path, what), body)
		return code, body
	}

	// Ready within 20 s.
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, body, err := get(base + "/readyz")
		if err == nil && code == http.StatusOK {
			f.out.add(name+": GET /readyz ready", body)
			break
		}
		if time.Now().After(deadline) {
			r := p.wait(t, 0, 5*time.Second)
			t.Fatalf("not ready after 20s (last: %d %s %v); exit %d, stderr:\n%s", code, body, err, r.code, lastLines(r.stderr, 20))
		}
		select {
		case <-p.done:
			r := p.wait(t, 0, 0)
			t.Fatalf("processor exited %d before ready; stderr:\n%s", r.code, lastLines(r.stderr, 20))
		case <-time.After(100 * time.Millisecond):
		}
	}
	fetch("healthy", "/healthz")
	if code, body := fetch("healthy", "/metrics"); code != http.StatusOK || !strings.Contains(body, "go_goroutines") {
		t.Errorf("/metrics: %d %.200s", code, body)
	}
	time.Sleep(500 * time.Millisecond) // some heartbeats and debug logs

	if !quick {
		// The database refuses the role: its password changes and its
		// sessions end, so the pool must reconnect and fail.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, f.pgAdmin)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "ALTER ROLE "+role+" PASSWORD 'changed-by-the-test'"); err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Exec(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", role); err != nil {
			t.Fatal(err)
		}
		var sawDown bool
		for i := 0; i < 20 && !sawDown; i++ {
			code, body := fetch("database down", "/readyz")
			sawDown = code == http.StatusServiceUnavailable && strings.Contains(body, "password authentication failed")
			time.Sleep(100 * time.Millisecond)
		}
		if !sawDown {
			t.Errorf("/readyz never reported the database refusing the password")
		}
		kf.Close()
		for i := 0; i < 5; i++ {
			fetch("kafka down", "/readyz")
			time.Sleep(200 * time.Millisecond)
		}
	}
	r := p.wait(t, 0, 6*time.Second)
	f.out.add(name+" (stdout)", r.stdout)
	f.out.add(name+" (stderr)", r.stderr)
	if quick && r.code != 0 {
		t.Errorf("exit %d after SIGINT; stderr:\n%s", r.code, lastLines(r.stderr, 20))
	}
	if !strings.Contains(r.stderr, `"msg":"partitions assigned"`) {
		t.Errorf("no consumer logs in the output: the scan would miss them; stderr:\n%s", lastLines(r.stderr, 10))
	}
}

// produceTicks writes n valid ticks to market.ticks as the SCRAM user.
func produceTicks(t *testing.T, brokers []string, password string, n int) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic("market.ticks"),
		kgo.SASL(scram.Auth{User: kafkaUser, Pass: password}.AsSha256Mechanism()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	base := time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC)
	recs := make([]*kgo.Record, 0, n)
	for i := 1; i <= n; i++ {
		tk := tick.Tick{TS: base.Add(time.Duration(i) * time.Millisecond), Symbol: fmt.Sprintf("S%d", i%7),
			Price: 100 + float64(i%100)/10, Seq: int64(i), Has: tick.HasSeq}
		recs = append(recs, &kgo.Record{Key: []byte(tk.Symbol), Value: tick.AppendJSON(nil, &tk)})
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
