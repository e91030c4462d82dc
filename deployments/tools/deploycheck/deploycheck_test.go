package main

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const scrape = `# HELP mds_coord_level Backpressure level.
# TYPE mds_coord_level gauge
mds_coord_level 0
# HELP mds_dead_letters_total Dead letters.
# TYPE mds_dead_letters_total counter
mds_dead_letters_total{reason="decode"} 0
# HELP mds_worker_write_latency_seconds Write latency.
# TYPE mds_worker_write_latency_seconds histogram
mds_worker_write_latency_seconds_bucket{le="+Inf"} 0
mds_worker_write_latency_seconds_sum 0
mds_worker_write_latency_seconds_count 0
# HELP mds_rpc_seconds A summary.
# TYPE mds_rpc_seconds summary
mds_rpc_seconds{quantile="0.5"} 0
mds_rpc_seconds_sum 0
mds_rpc_seconds_count 0
`

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestResolve(t *testing.T) {
	exp, err := loadScrape(writeFile(t, "scrape.txt", scrape))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, family, problem string
	}{
		{"mds_coord_level", "mds_coord_level", ""},
		{"mds_dead_letters_total", "mds_dead_letters_total", ""},
		{"mds_worker_write_latency_seconds_bucket", "mds_worker_write_latency_seconds", ""},
		{"mds_worker_write_latency_seconds_sum", "mds_worker_write_latency_seconds", ""},
		{"mds_worker_write_latency_seconds_count", "mds_worker_write_latency_seconds", ""},
		{"mds_rpc_seconds", "mds_rpc_seconds", ""},
		{"mds_rpc_seconds_count", "mds_rpc_seconds", ""},
		{"mds_worker_write_latency_seconds", "", "is a histogram: select mds_worker_write_latency_seconds_bucket"},
		{"mds_rpc_seconds_bucket", "", "mds_rpc_seconds is a summary, which has no _bucket series"},
		{"mds_coord_level_count", "", "mds_coord_level is a gauge, which has no _count series"},
		{"mds_dead_letters", "", "is not in the scrape"},
	}
	for _, tt := range tests {
		fam, problem := exp.resolve(tt.name)
		if fam != tt.family || (tt.problem == "") != (problem == "") || !strings.Contains(problem, tt.problem) {
			t.Errorf("resolve(%q) = %q, %q; want %q, a problem containing %q", tt.name, fam, problem, tt.family, tt.problem)
		}
	}
}

func TestSubstituteGrafanaVars(t *testing.T) {
	tests := map[string]string{
		`rate(x{instance=~"$instance"}[$__rate_interval])`: `rate(x{instance=~".*"}[5m])`,
		`rate(x{job=~"${job:regex}"}[${__interval}])`:      `rate(x{job=~".*"}[5m])`,
		`increase(x{a=~"[[a]]"}[$__range]) / $__range_s`:   `increase(x{a=~".*"}[5m]) / 300`,
		`x offset $__interval_ms`:                          `x offset 300000`,
	}
	for in, want := range tests {
		if got := substituteGrafanaVars(in); got != want {
			t.Errorf("substituteGrafanaVars(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestMetricNames(t *testing.T) {
	got, err := metricNames(`histogram_quantile(0.9, sum by (le) (rate(a_bucket[5m]))) / on() group_left {__name__="b"} and up`)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	if want := []string{"a_bucket", "b", "up"}; !slices.Equal(got, want) {
		t.Errorf("metricNames = %v, want %v", got, want)
	}
	if _, err := metricNames(`sum(rate(a[5m])`); err == nil {
		t.Error("metricNames accepted an unbalanced parenthesis")
	}
}

const dashboard = `{
  "uid": "d", "title": "d",
  "annotations": {"list": [{"name": "HARD", "expr": "mds_coord_level >= 2"}]},
  "templating": {"list": [
    {"name": "instance", "type": "query", "query": {"query": "label_values(mds_coord_level{job=~\"$job\"}, instance)"}},
    {"name": "job", "type": "query", "query": "label_values(job)"}
  ]},
  "panels": [
    {"id": 1, "type": "row", "title": "r", "gridPos": {}, "panels": [
      {"id": 2, "type": "timeseries", "title": "latency", "gridPos": {}, "datasource": {"uid": "x"},
       "targets": [{"refId": "A", "expr": "rate(mds_worker_write_latency_seconds[$__rate_interval])"}]}
    ]},
    {"id": 2, "type": "stat", "title": "broken", "gridPos": {}, "datasource": {"uid": "x"},
     "targets": [{"refId": "A", "expr": "sum(mds_dead_letters_total"}, {"refId": "A", "expr": ""}]}
  ]
}`

func TestRunMetricsReportsEveryBadName(t *testing.T) {
	dash := writeFile(t, "d.json", dashboard)
	rules := writeFile(t, "r.yml", "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: mds_nope > 0 and up == 0\n")
	var out, errOut bytes.Buffer
	code := run([]string{"metrics", "--scrape", writeFile(t, "s.txt", scrape), "--rules", rules, "--dashboard", dash}, &out, &errOut)
	if code != 1 {
		t.Fatalf("exit %d, want 1; stdout:\n%s\nstderr:\n%s", code, out.String(), errOut.String())
	}
	for _, want := range []string{
		`rule A: mds_nope is not in the scrape`,
		`panel "latency" target A: mds_worker_write_latency_seconds is a histogram`,
		`panel "broken" target A: invalid PromQL`,
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if n := strings.Count(out.String(), "FAIL"); n != 3 {
		t.Errorf("%d failures, want 3 (annotation and variables are valid):\n%s", n, out.String())
	}
}

func TestRunDashboardStructure(t *testing.T) {
	var out bytes.Buffer
	if code := run([]string{"dashboard", writeFile(t, "d.json", dashboard)}, &out, &out); code != 1 {
		t.Fatalf("exit %d, want 1:\n%s", code, out.String())
	}
	for _, want := range []string{`panel "broken" has id 2, as panel "latency" has`, `refId "A" used twice`, `target "A" has no expr`, `invalid PromQL`} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestRunDockerfile(t *testing.T) {
	tests := []struct {
		name, content, want string
		code                int
	}{
		{"nonroot", "FROM scratch\nCOPY a /a\nUSER nonroot:nonroot\n", "ok   ", 0},
		{"no user", "FROM scratch\nCOPY a /a\n", "sets no USER", 1},
		{"root", "FROM scratch AS final\nUSER 0\n", "runs as root", 1},
		{"syntax", "FROM scratch\nCOPY a\nUSER nonroot\n", "COPY requires at least two arguments", 1},
		{"lint", "FROM golang AS Build\nFROM scratch\nUSER nonroot\n", "lint StageNameCasing", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			code := run([]string{"dockerfile", writeFile(t, "Dockerfile", tt.content)}, &out, &out)
			if code != tt.code || !strings.Contains(out.String(), tt.want) {
				t.Errorf("exit %d, want %d; output lacks %q:\n%s", code, tt.code, tt.want, out.String())
			}
		})
	}
}

func TestRunCompose(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "conf"), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, content, want string
		code                int
	}{
		{"valid", "name: x\nservices:\n  a:\n    image: busybox\n    volumes: [./conf:/conf:ro]\n", `project "x", 1 services`, 0},
		{"unknown key", "name: x\nservices:\n  a:\n    image: busybox\n    stop_grace_priod: 3s\n", "stop_grace_priod", 1},
		{"missing dependency", "name: x\nservices:\n  a:\n    image: busybox\n    depends_on: [b]\n", `undefined service "b"`, 1},
		{"missing bind source", "name: x\nservices:\n  a:\n    image: busybox\n    volumes: [./nope:/conf:ro]\n", "bind mount source", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, "compose.yml")
			if err := os.WriteFile(p, []byte(tt.content), 0o644); err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			code := run([]string{"compose", p}, &out, &out)
			if code != tt.code || !strings.Contains(out.String(), tt.want) {
				t.Errorf("exit %d, want %d; output lacks %q:\n%s", code, tt.code, tt.want, out.String())
			}
		})
	}
}

func TestRunYAML(t *testing.T) {
	var out bytes.Buffer
	if code := run([]string{"yaml", writeFile(t, "a.yml", "a: 1\n---\nb: [2\n")}, &out, &out); code != 1 || !strings.Contains(out.String(), "FAIL") {
		t.Errorf("exit %d for broken YAML:\n%s", code, out.String())
	}
	out.Reset()
	if code := run([]string{"yaml", writeFile(t, "a.yml", "a: 1\n---\nb: [2]\n")}, &out, &out); code != 0 || !strings.Contains(out.String(), "2 documents") {
		t.Errorf("exit %d for valid YAML:\n%s", code, out.String())
	}
}
