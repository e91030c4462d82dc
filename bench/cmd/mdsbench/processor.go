package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// proc is a running processor subprocess.
type proc struct {
	cmd     *exec.Cmd
	done    chan struct{}
	logPath string
	addr    string // MDS_HTTP_ADDR
	pprof   string // where /debug/pprof/ answers, when profiling
}

// startProcessor runs the processor with its defaults, the broker address,
// the -set flags and extra, serving /metrics on a free local port.
func startProcessor(e *benchEnv, name string, extra map[string]string) (*proc, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	extra["MDS_HTTP_ADDR"] = addr
	p := &proc{done: make(chan struct{}), logPath: filepath.Join(e.dir, name+".log"), addr: addr}
	if e.pprofDir != "" {
		extra["MDS_HTTP_PPROF"] = "true" // /debug/pprof/ on MDS_HTTP_ADDR
		p.pprof = addr
	}
	logf, err := os.Create(p.logPath)
	if err != nil {
		return nil, fmt.Errorf("creating processor log: %w", err)
	}
	p.cmd = exec.Command(e.bin)
	p.cmd.Env = e.processorEnv(extra)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("starting the processor: %w", err)
	}
	go func() { _ = p.cmd.Wait(); logf.Close(); close(p.done) }()
	return p, nil
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// profile starts a CPU profile of the next seconds in the background and
// returns a function that waits for it and saves it as <name>-cpu.prof in
// dir, with the allocation profile since the start (<name>-allocs.prof).
// Without profiling it does nothing. Failures are reported, not fatal.
func (p *proc) profile(ctx context.Context, dir, name string, seconds int) (finish func()) {
	if p.pprof == "" {
		return func() {}
	}
	get := func(ctx context.Context, path, file string) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.pprof+path, nil)
		resp, err := http.DefaultClient.Do(req)
		for i := 0; err != nil && i < 40 && ctx.Err() == nil; i++ { // until it listens
			time.Sleep(50 * time.Millisecond)
			resp, err = http.DefaultClient.Do(req)
		}
		if err != nil {
			progress("  profile %s: %v", file, err)
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("%s: %s", resp.Status, b)
		}
		if err == nil {
			err = os.MkdirAll(dir, 0o755)
		}
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, file), b, 0o644)
		}
		if err != nil {
			progress("  profile %s: %v", file, err)
			return
		}
		progress("  saved %s", filepath.Join(dir, file))
	}
	ctx, cancel := context.WithTimeout(ctx, time.Duration(seconds+15)*time.Second)
	done := make(chan struct{})
	go func() {
		defer close(done)
		get(ctx, fmt.Sprintf("/debug/pprof/profile?seconds=%d", seconds), name+"-cpu.prof")
	}()
	return func() {
		defer cancel()
		<-done
		get(ctx, "/debug/pprof/allocs", name+"-allocs.prof")
	}
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// alive returns an error with the log tail if the processor has exited.
func (p *proc) alive() error {
	select {
	case <-p.done:
		return fmt.Errorf("processor exited (%s): %s", p.cmd.ProcessState, p.logTail())
	default:
		return nil
	}
}

// stop sends SIGTERM (a graceful shutdown) and waits, killing after 30 s.
func (p *proc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func (p *proc) logTail() string {
	b, _ := os.ReadFile(p.logPath)
	lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
	if len(lines) > 15 {
		lines = lines[len(lines)-15:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// waitReady polls /readyz until it answers 200: joined the group, with
// partitions assigned, and the database answers.
func (p *proc) waitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		if err := p.alive(); err != nil {
			return err
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.addr+"/readyz", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("processor not ready: %w\n%s", ctx.Err(), p.logTail())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// metrics scrapes /metrics.
func (p *proc) metrics(ctx context.Context) (map[string]*dto.MetricFamily, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.addr+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scraping metrics: %w", err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("parsing metrics: %w", err)
	}
	return mfs, nil
}

// sample sums the values of one counter or gauge over its label sets, or
// the sample count of a histogram.
func sample(mfs map[string]*dto.MetricFamily, name string) float64 {
	mf := mfs[name]
	if mf == nil {
		return 0
	}
	var v float64
	for _, m := range mf.GetMetric() {
		switch {
		case m.Counter != nil:
			v += m.Counter.GetValue()
		case m.Gauge != nil:
			v += m.Gauge.GetValue()
		case m.Histogram != nil:
			v += float64(m.Histogram.GetSampleCount())
		}
	}
	return v
}

// procStat is what /proc/<pid>/stat tells about a process.
type procStat struct {
	ppid     int
	cpu      time.Duration // utime + stime
	childCPU time.Duration // cutime + cstime (reaped children)
}

// clockTick is USER_HZ, the unit of the times in /proc/<pid>/stat: 100 on
// every Linux architecture Go supports.
const clockTick = 10 * time.Millisecond

func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, err
	}
	return parseStat(string(b))
}

// parseStat parses /proc/<pid>/stat. The command name (field 2) is in
// parentheses and may hold spaces, so fields are counted after the last ')'.
func parseStat(s string) (procStat, error) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return procStat{}, errors.New("malformed /proc stat")
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3 (state)
	if len(f) < 15 {
		return procStat{}, errors.New("short /proc stat")
	}
	n := func(field int) int64 { v, _ := strconv.ParseInt(f[field-3], 10, 64); return v }
	return procStat{
		ppid:     int(n(4)),
		cpu:      time.Duration(n(14)+n(15)) * clockTick,
		childCPU: time.Duration(n(16)+n(17)) * clockTick,
	}, nil
}

// peakRSS is VmHWM of /proc/<pid>/status, in bytes.
func peakRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	kb, ok := procField(string(b), "VmHWM:")
	if !ok {
		return 0, errors.New("no VmHWM in /proc status")
	}
	return kb * 1024, nil
}

// procField finds "key   123 kB" in a /proc file and returns 123.
func procField(s, key string) (int64, bool) {
	for _, l := range strings.Split(s, "\n") {
		if rest, ok := strings.CutPrefix(l, key); ok {
			f := strings.Fields(rest)
			if len(f) == 0 {
				return 0, false
			}
			v, err := strconv.ParseInt(f[0], 10, 64)
			return v, err == nil
		}
	}
	return 0, false
}
