package kafkatest

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Options configure a cluster. The zero value is one combined
// broker/controller with a PLAINTEXT listener and no authorizer.
type Options struct {
	// Brokers is the number of nodes, each a combined broker and KRaft
	// controller (default 1). With 3 or more, topics default to
	// replication factor 3 and min.insync.replicas 2.
	Brokers int
	// SCRAMUsers adds a SASL_PLAINTEXT listener speaking SCRAM-SHA-512 and
	// creates these users (name → password) when the storage is formatted.
	SCRAMUsers map[string]string
	// TLS adds a TLS listener (server authentication only) and an MTLS
	// listener that requires a client certificate; Cluster.Certs holds the
	// files.
	TLS bool
	// Authorizer turns on the KRaft StandardAuthorizer. The PLAINTEXT and
	// controller listeners (User:ANONYMOUS) and SuperUsers bypass it; any
	// other principal needs ACLs (create them with kadm over Addrs).
	Authorizer bool
	SuperUsers []string // principals, e.g. "User:admin"
	// ConsumerGroupSessionTimeout and ConsumerGroupHeartbeat are the
	// broker-side timings of KIP-848 (consumer protocol) groups, which the
	// broker, not the client, decides (defaults 6s and 250ms).
	ConsumerGroupSessionTimeout time.Duration
	ConsumerGroupHeartbeat      time.Duration
	// BrokerSessionTimeout is how long the controller waits for a silent
	// broker before it fences it and moves its leaderships (default 9s,
	// Kafka's own: shorter ones made brokers of a loaded 2-core machine
	// miss heartbeats and flap at start).
	BrokerSessionTimeout time.Duration
	// StartTimeout bounds the start (default 3 minutes: a loaded machine
	// starts a JVM slowly).
	StartTimeout time.Duration
	// HeapMB is each broker's maximum heap (default 512).
	HeapMB int
	// Dir holds the cluster's files; default a new temporary directory.
	Dir string
}

// Cluster is a running Apache Kafka cluster of local processes. Its
// methods are safe for concurrent use.
type Cluster struct {
	opts      Options
	dir       string
	clusterID string
	classpath string
	// Certs are the TLS files (nil without Options.TLS).
	Certs *Certs

	mu    sync.Mutex
	nodes []*node
}

type node struct {
	id                           int32
	dir                          string
	plain, ctrl, sasl, tls, mtls int // ports; 0: no such listener
	proc                         *process
}

// process is one running JVM, in its own process group.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when it exited
	err  error
}

// Start formats the storage of opts.Brokers nodes and starts them on
// 127.0.0.1 (free ports, a temporary directory), and waits until every
// broker is registered. On error it stops what it started and keeps the
// directory; the error names it and ends with the tail of a broker log.
// A broker that exits during the start (a port taken meanwhile by another
// process) makes it try once more, on new ports.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	c, err := start(ctx, opts)
	if errors.Is(err, errExited) && opts.Dir == "" {
		c, err = start(ctx, opts)
	}
	return c, err
}

// errExited is a broker process that ended on its own.
var errExited = errors.New("broker exited")

func start(ctx context.Context, opts Options) (*Cluster, error) {
	if opts.Brokers <= 0 {
		opts.Brokers = 1
	}
	if opts.ConsumerGroupSessionTimeout == 0 {
		opts.ConsumerGroupSessionTimeout = 6 * time.Second
	}
	if opts.ConsumerGroupHeartbeat == 0 {
		opts.ConsumerGroupHeartbeat = 250 * time.Millisecond
	}
	if opts.BrokerSessionTimeout == 0 {
		opts.BrokerSessionTimeout = 9 * time.Second
	}
	if opts.StartTimeout == 0 {
		opts.StartTimeout = 3 * time.Minute
	}
	if opts.HeapMB == 0 {
		opts.HeapMB = 512
	}
	cp, err := Classpath()
	if err != nil {
		return nil, err
	}
	dir := opts.Dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "mds-kafka-"); err != nil {
			return nil, err
		}
	}
	c := &Cluster{opts: opts, dir: dir, classpath: cp, clusterID: newClusterID()}
	if opts.TLS {
		if c.Certs, err = writeCerts(dir); err != nil {
			return nil, fmt.Errorf("generating certificates: %w", err)
		}
	}
	for i := range opts.Brokers {
		n := &node{id: int32(i + 1), dir: filepath.Join(dir, fmt.Sprintf("broker-%d", i+1))}
		ports := []*int{&n.plain, &n.ctrl}
		if len(opts.SCRAMUsers) > 0 {
			ports = append(ports, &n.sasl)
		}
		if opts.TLS {
			ports = append(ports, &n.tls, &n.mtls)
		}
		for _, p := range ports {
			if *p, err = freePort(); err != nil {
				return nil, err
			}
		}
		if err := os.MkdirAll(n.dir, 0o755); err != nil {
			return nil, err
		}
		c.nodes = append(c.nodes, n)
	}
	ctx, cancel := context.WithTimeout(ctx, opts.StartTimeout)
	defer cancel()
	fail := func(err error) (*Cluster, error) {
		c.Stop()
		return nil, fmt.Errorf("%w (files kept in %s)%s", err, dir, c.logTail())
	}
	var wg sync.WaitGroup
	errs := make([]error, len(c.nodes))
	for i, n := range c.nodes {
		if err := c.writeConfig(n); err != nil {
			return fail(err)
		}
		wg.Go(func() { errs[i] = c.format(ctx, n) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fail(err)
	}
	for _, n := range c.nodes {
		if err := c.launch(n); err != nil {
			return fail(err)
		}
	}
	if err := c.waitRegistered(ctx, c.Addrs()); err != nil {
		return fail(err)
	}
	return c, nil
}

// StartT starts a cluster for the test and stops it when the test ends,
// also when it fails or panics (t.Cleanup). The directory and its logs are
// removed after a passing test and kept, and named, after a failing one.
// A JVM also dies with the test process (Pdeathsig).
func StartT(t testing.TB, opts Options) *Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	c, err := Start(ctx, opts)
	if err != nil {
		t.Fatalf("starting Apache Kafka %s: %v", Version, err)
	}
	t.Logf("Apache Kafka %s: %d broker(s) at %s, started in %s", Version, len(c.nodes), strings.Join(c.Addrs(), ","), time.Since(start).Round(100*time.Millisecond))
	t.Cleanup(func() {
		c.Stop()
		if t.Failed() {
			t.Logf("Kafka files and logs kept in %s", c.dir)
			return
		}
		c.Remove()
	})
	return c
}

// Dir is the cluster's directory: broker-N/server.log is each broker's log.
func (c *Cluster) Dir() string { return c.dir }

// Size is the number of brokers.
func (c *Cluster) Size() int { return len(c.nodes) }

// NodeID is the broker id of node i (0-based): i+1.
func (c *Cluster) NodeID(i int) int32 { return c.nodes[i].id }

// Addrs are the PLAINTEXT listeners, one per broker.
func (c *Cluster) Addrs() []string { return c.addrs(func(n *node) int { return n.plain }) }

// SASLAddrs are the SASL_PLAINTEXT (SCRAM-SHA-512) listeners.
func (c *Cluster) SASLAddrs() []string { return c.addrs(func(n *node) int { return n.sasl }) }

// TLSAddrs are the TLS listeners (no client certificate asked).
func (c *Cluster) TLSAddrs() []string { return c.addrs(func(n *node) int { return n.tls }) }

// MTLSAddrs are the mutual-TLS listeners (a client certificate required).
func (c *Cluster) MTLSAddrs() []string { return c.addrs(func(n *node) int { return n.mtls }) }

func (c *Cluster) addrs(port func(*node) int) []string {
	var out []string
	for _, n := range c.nodes {
		if p := port(n); p != 0 {
			out = append(out, net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		}
	}
	return out
}

// Kill SIGKILLs broker i (0-based) and waits until it is gone.
func (c *Cluster) Kill(i int) {
	c.mu.Lock()
	p := c.nodes[i].proc
	c.nodes[i].proc = nil
	c.mu.Unlock()
	p.kill()
}

// Terminate stops broker i gracefully (SIGTERM: a controlled shutdown that
// hands its leaderships over first), as in a rolling restart, and waits
// until it exited; after 2 minutes it kills it.
func (c *Cluster) Terminate(i int) {
	c.mu.Lock()
	p := c.nodes[i].proc
	c.nodes[i].proc = nil
	c.mu.Unlock()
	if p == nil {
		return
	}
	_ = syscall.Kill(p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(2 * time.Minute):
		p.kill()
	}
}

// Restart starts broker i again (after Kill or Terminate) and waits until it answers
// and the cluster lists every broker again.
func (c *Cluster) Restart(ctx context.Context, i int) error {
	ctx, cancel := context.WithTimeout(ctx, c.opts.StartTimeout)
	defer cancel()
	if err := c.launch(c.nodes[i]); err != nil {
		return err
	}
	if err := c.waitRegistered(ctx, c.addrs(func(n *node) int {
		if n == c.nodes[i] {
			return n.plain
		}
		return 0
	})); err != nil {
		return fmt.Errorf("%w%s", err, c.logTail())
	}
	return nil
}

// Stop SIGKILLs every broker (the process groups) and waits for them.
// The files stay until Remove.
func (c *Cluster) Stop() {
	c.mu.Lock()
	var procs []*process
	for _, n := range c.nodes {
		if n.proc != nil {
			procs = append(procs, n.proc)
			n.proc = nil
		}
	}
	c.mu.Unlock()
	for _, p := range procs {
		p.kill()
	}
}

// Remove deletes the cluster's directory (after Stop).
func (c *Cluster) Remove() { _ = os.RemoveAll(c.dir) }

func (p *process) kill() {
	if p == nil {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
	}
}

// java returns a command running class main of the broker's classpath,
// with log4j2 writing to n's server.log.
func (c *Cluster) java(n *node, heapMB int, main string, args ...string) *exec.Cmd {
	jvm := []string{
		fmt.Sprintf("-Xmx%dm", heapMB), "-Xss1m", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
		"-Djava.awt.headless=true",
		"-Dlog4j2.configurationFile=" + filepath.Join(n.dir, "log4j2.properties"),
		"-cp", c.classpath, main,
	}
	cmd := exec.Command("java", append(jvm, args...)...)
	cmd.Dir = n.dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	return cmd
}

// format runs the KRaft StorageTool on n (and creates the SCRAM users).
func (c *Cluster) format(ctx context.Context, n *node) error {
	args := []string{"format", "-t", c.clusterID, "-c", filepath.Join(n.dir, "server.properties")}
	users := make([]string, 0, len(c.opts.SCRAMUsers))
	for u := range c.opts.SCRAMUsers {
		users = append(users, u)
	}
	sort.Strings(users)
	for _, u := range users {
		args = append(args, "--add-scram", fmt.Sprintf("SCRAM-SHA-512=[name=%s,password=%s]", u, c.opts.SCRAMUsers[u]))
	}
	cmd := c.java(n, 256, "kafka.tools.StorageTool", args...)
	out, err := runBounded(ctx, cmd)
	if err != nil {
		return fmt.Errorf("formatting broker %d: %w: %s", n.id, err, lastLines(out, 5))
	}
	return nil
}

// runBounded runs cmd until it exits or ctx ends (then kills its group).
func runBounded(ctx context.Context, cmd *exec.Cmd) (string, error) {
	var buf strings.Builder
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Start(); err != nil {
		return "", err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return buf.String(), err
	case <-ctx.Done():
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		return buf.String(), ctx.Err()
	}
}

// launch starts n's broker process.
func (c *Cluster) launch(n *node) error {
	out, err := os.OpenFile(filepath.Join(n.dir, "stdout.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := c.java(n, c.opts.HeapMB, "kafka.Kafka", filepath.Join(n.dir, "server.properties"))
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		out.Close()
		return fmt.Errorf("starting broker %d: %w", n.id, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		out.Close()
		close(p.done)
	}()
	c.mu.Lock()
	n.proc = p
	c.mu.Unlock()
	return nil
}

// waitRegistered polls seeds until their metadata lists every broker of
// the cluster, or a broker process exits, or ctx ends.
func (c *Cluster) waitRegistered(ctx context.Context, seeds []string) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.RetryTimeout(time.Second), kgo.DialTimeout(time.Second))
	if err != nil {
		return err
	}
	defer cl.Close()
	var last error
	for {
		if err := c.exited(); err != nil {
			return err
		}
		// A metadata request of its own each time: kadm's BrokerMetadata
		// answers from the client's cache, which may never see the last
		// broker register.
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		req := kmsg.NewPtrMetadataRequest()
		req.Topics = []kmsg.MetadataRequestTopic{}
		resp, err := req.RequestWith(actx, cl)
		cancel()
		switch {
		case err != nil:
			last = err
		case len(resp.Brokers) < len(c.nodes):
			last = fmt.Errorf("%d of %d brokers registered", len(resp.Brokers), len(c.nodes))
		default:
			return c.warmUp(ctx, cl)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("brokers at %s not ready: %v", strings.Join(seeds, ","), last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// warmUp waits until the group coordinator and producer ids are served:
// a fresh cluster creates __consumer_offsets on the first group request and
// answers COORDINATOR_LOAD_IN_PROGRESS meanwhile, and allocates producer
// ids lazily, which on a loaded machine takes seconds the tests would
// otherwise spend.
func (c *Cluster) warmUp(ctx context.Context, cl *kgo.Client) error {
	adm := kadm.NewClient(cl)
	var last error
	for ctx.Err() == nil {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		coords := adm.FindGroupCoordinators(actx, "kafkatest-warm-up")
		last = coords.Error()
		if last == nil {
			req := kmsg.NewPtrInitProducerIDRequest()
			req.TransactionTimeoutMillis = -1
			var resp *kmsg.InitProducerIDResponse
			if resp, last = req.RequestWith(actx, cl); last == nil {
				last = kerr.ErrorForCode(resp.ErrorCode)
			}
		}
		cancel()
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("warming up the group coordinator and producer ids: %v", last)
}

// exited reports a broker process that ended on its own.
func (c *Cluster) exited() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.nodes {
		if n.proc == nil {
			continue
		}
		select {
		case <-n.proc.done:
			return fmt.Errorf("%w: broker %d: %v", errExited, n.id, n.proc.err)
		default:
		}
	}
	return nil
}

// logTail returns the last lines of the first broker's logs that hold
// something, for an error message.
func (c *Cluster) logTail() string {
	for _, n := range c.nodes {
		for _, name := range []string{"stdout.log", "server.log"} {
			b, err := os.ReadFile(filepath.Join(n.dir, name))
			if err != nil || len(b) == 0 {
				continue
			}
			var errs []string
			for _, l := range strings.Split(string(b), "\n") {
				if strings.Contains(l, "ERROR") || strings.Contains(l, "Exception") {
					errs = append(errs, l)
				}
			}
			if len(errs) == 0 {
				continue
			}
			return fmt.Sprintf("; broker %d %s: %s", n.id, name, lastLines(strings.Join(errs, "\n"), 3))
		}
	}
	return ""
}

// newClusterID returns a random Kafka cluster id (a base64url UUID not
// starting with '-').
func newClusterID() string {
	for {
		var b [16]byte
		_, _ = rand.Read(b[:])
		if id := base64.RawURLEncoding.EncodeToString(b[:]); id[0] != '-' {
			return id
		}
	}
}

// freePort returns a port free now on 127.0.0.1, below Linux's
// ephemeral range (32768-60999): a port the kernel picks for ":0" is one
// that outgoing connections may take before the JVM binds it.
func freePort() (int, error) {
	for range 100 {
		port := 20000 + mrand.IntN(12000)
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue
		}
		l.Close()
		return port, nil
	}
	return 0, errors.New("no free port on 127.0.0.1 in 20000-31999")
}
