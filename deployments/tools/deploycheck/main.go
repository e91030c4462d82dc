package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// problems collects check failures; a check reports each one and goes on, so that
// one run shows everything that is wrong.
type problems []string

func (p *problems) addf(format string, args ...any) {
	*p = append(*p, fmt.Sprintf(format, args...))
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: deploycheck dockerfile|compose|k8s|yaml|metrics|dashboard ...")
		return 2
	}
	var (
		probs   problems
		summary string
		err     error
	)
	switch cmd, rest := args[0], args[1:]; cmd {
	case "dockerfile":
		summary, err = forEachFile(rest, func(path string) (string, error) { return checkDockerfile(path, &probs) })
	case "compose":
		summary, err = forEachFile(rest, func(path string) (string, error) { return checkCompose(path, &probs) })
	case "dashboard":
		summary, err = forEachFile(rest, func(path string) (string, error) { return checkDashboard(path, &probs) })
	case "yaml":
		summary, err = forEachFile(rest, func(path string) (string, error) { return checkYAML(path, &probs) })
	case "k8s":
		summary, err = checkK8s(rest, &probs)
	case "metrics":
		summary, err = runMetrics(rest, &probs)
	default:
		fmt.Fprintf(stderr, "deploycheck: unknown command %q\n", cmd)
		return 2
	}
	if err != nil {
		fmt.Fprintf(stderr, "deploycheck %s: %v\n", args[0], err)
		return 2
	}
	for _, p := range probs {
		fmt.Fprintf(stdout, "FAIL %s\n", p)
	}
	if len(probs) > 0 {
		return 1
	}
	fmt.Fprintf(stdout, "ok   %s\n", summary)
	return 0
}

func forEachFile(paths []string, check func(string) (string, error)) (string, error) {
	if len(paths) == 0 {
		return "", fmt.Errorf("no file given")
	}
	var out []string
	for _, p := range paths {
		s, err := check(p)
		if err != nil {
			return "", err
		}
		out = append(out, s)
	}
	return strings.Join(out, "; "), nil
}

// stringList is a repeatable flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func runMetrics(args []string, probs *problems) (string, error) {
	fs := flag.NewFlagSet("metrics", flag.ContinueOnError)
	scrape := fs.String("scrape", "", "file with a /metrics scrape (Prometheus text format)")
	prefix := fs.String("prefix", "mds_", "only metric names with this prefix are checked")
	var rules, dashboards stringList
	fs.Var(&rules, "rules", "Prometheus rule file (repeatable)")
	fs.Var(&dashboards, "dashboard", "Grafana dashboard JSON (repeatable)")
	if err := fs.Parse(args); err != nil {
		return "", err
	}
	if *scrape == "" || len(rules)+len(dashboards) == 0 {
		return "", fmt.Errorf("--scrape and at least one --rules or --dashboard are required")
	}
	return checkMetrics(*scrape, rules, dashboards, *prefix, probs)
}
