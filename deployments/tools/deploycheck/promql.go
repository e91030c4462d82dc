package main

import (
	"fmt"
	"os"
	"regexp"
	"strings"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"go.yaml.in/yaml/v3"
)

// expression is one PromQL expression and where it was found.
type expression struct {
	where string
	expr  string
}

var promql = parser.NewParser(parser.Options{})

// metricNames parses expr and returns the metric names it selects: selector names
// and __name__ equality matchers.
func metricNames(expr string) ([]string, error) {
	node, err := promql.ParseExpr(expr)
	if err != nil {
		return nil, err
	}
	var names []string
	parser.Inspect(node, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		if vs.Name != "" {
			names = append(names, vs.Name)
			return nil
		}
		for _, m := range vs.LabelMatchers {
			if m.Name == model.MetricNameLabel && m.Type == labels.MatchEqual {
				names = append(names, m.Value)
			}
		}
		return nil
	})
	return names, nil
}

// ruleFile is the part of a Prometheus rule file that holds expressions;
// `promtool check rules` validates the rest.
type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert  string `yaml:"alert"`
			Record string `yaml:"record"`
			Expr   string `yaml:"expr"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

func ruleExpressions(path string) ([]expression, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var rf ruleFile
	if err := yaml.Unmarshal(raw, &rf); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var out []expression
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			out = append(out, expression{where: fmt.Sprintf("%s: group %s: rule %s%s", path, g.Name, r.Alert, r.Record), expr: r.Expr})
		}
	}
	return out, nil
}

var (
	grafanaBuiltin = regexp.MustCompile(`\$\{__[A-Za-z_]+(?::[^}]*)?\}|\$__[A-Za-z_]+`)
	grafanaVar     = regexp.MustCompile(`\$\{[A-Za-z0-9_]+(?::[^}]*)?\}|\$[A-Za-z0-9_]+|\[\[[A-Za-z0-9_]+\]\]`)
)

// substituteGrafanaVars replaces Grafana's variables by values that keep the
// expression valid PromQL: built-in intervals by a duration (or its seconds or
// milliseconds), dashboard variables, which this project uses only in regex label
// matchers, by ".*".
func substituteGrafanaVars(expr string) string {
	expr = grafanaBuiltin.ReplaceAllStringFunc(expr, func(v string) string {
		v = strings.Trim(v, "${}")
		switch {
		case strings.HasSuffix(v, "_ms"):
			return "300000"
		case strings.HasSuffix(v, "_s"):
			return "300"
		default:
			return "5m"
		}
	})
	return grafanaVar.ReplaceAllString(expr, ".*")
}
