package main

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"regexp"
	"slices"
	"strings"
)

func loadDashboard(path string) (map[string]any, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var d map[string]any
	if err := json.Unmarshal(raw, &d); err != nil {
		return nil, fmt.Errorf("%s: invalid JSON: %w", path, err)
	}
	return d, nil
}

// labelValuesQuery matches the Prometheus data source's variable queries that
// hold a selector or an expression.
var labelValuesQuery = regexp.MustCompile(`^\s*(?:label_values\((.+),\s*[A-Za-z_][A-Za-z0-9_]*\s*\)|query_result\((.+)\))\s*$`)

// dashboardExpressions returns every PromQL expression of a dashboard: "expr"
// fields anywhere (panel targets, annotations) and query variables, with
// Grafana variables substituted.
func dashboardExpressions(path string, d map[string]any) []expression {
	var out []expression
	var walk func(where string, v any)
	walk = func(where string, v any) {
		switch t := v.(type) {
		case map[string]any:
			switch {
			case t["gridPos"] != nil:
				where = fmt.Sprintf("%s: panel %q", path, t["title"])
			case t["refId"] != nil:
				where = fmt.Sprintf("%s target %v", where, t["refId"])
			case t["expr"] != nil:
				where = fmt.Sprintf("%s: annotation %q", path, t["name"])
			}
			for _, k := range slices.Sorted(maps.Keys(t)) {
				c := t[k]
				if s, ok := c.(string); ok && k == "expr" && strings.TrimSpace(s) != "" {
					out = append(out, expression{where: where, expr: substituteGrafanaVars(s)})
					continue
				}
				walk(where, c)
			}
		case []any:
			for _, c := range t {
				walk(where, c)
			}
		}
	}
	walk(path, d)

	tmpl, _ := d["templating"].(map[string]any)
	vars, _ := tmpl["list"].([]any)
	for _, v := range vars {
		vm, _ := v.(map[string]any)
		if vm["type"] != "query" {
			continue
		}
		q, _ := vm["query"].(string)
		if qm, ok := vm["query"].(map[string]any); ok {
			q, _ = qm["query"].(string)
		}
		m := labelValuesQuery.FindStringSubmatch(q)
		if m == nil {
			continue
		}
		out = append(out, expression{
			where: fmt.Sprintf("%s: variable %v", path, vm["name"]),
			expr:  substituteGrafanaVars(m[1] + m[2]),
		})
	}
	return out
}

// checkDashboard checks the structure Grafana needs to show every panel.
func checkDashboard(path string, probs *problems) (string, error) {
	d, err := loadDashboard(path)
	if err != nil {
		probs.addf("%v", err)
		return "", nil
	}
	if uid, _ := d["uid"].(string); uid == "" {
		probs.addf("%s: dashboard has no uid (provisioning would give it a new one on every load)", path)
	}
	ids := map[float64]string{}
	panels := 0
	var visit func(list []any)
	visit = func(list []any) {
		for _, p := range list {
			pm, _ := p.(map[string]any)
			panels++
			title, _ := pm["title"].(string)
			where := fmt.Sprintf("%s: panel %q", path, title)
			id, ok := pm["id"].(float64)
			if !ok {
				probs.addf("%s has no id", where)
			} else if other, dup := ids[id]; dup {
				probs.addf("%s has id %v, as panel %q has", where, id, other)
			} else {
				ids[id] = title
			}
			if _, ok := pm["gridPos"].(map[string]any); !ok {
				probs.addf("%s has no gridPos", where)
			}
			if nested, ok := pm["panels"].([]any); ok {
				visit(nested)
			}
			if pm["type"] == "row" || pm["type"] == "text" {
				continue
			}
			if pm["datasource"] == nil {
				probs.addf("%s has no datasource", where)
			}
			targets, _ := pm["targets"].([]any)
			if len(targets) == 0 {
				probs.addf("%s has no targets", where)
			}
			refs := map[string]bool{}
			for _, t := range targets {
				tm, _ := t.(map[string]any)
				ref, _ := tm["refId"].(string)
				if refs[ref] {
					probs.addf("%s: refId %q used twice", where, ref)
				}
				refs[ref] = true
				if e, _ := tm["expr"].(string); strings.TrimSpace(e) == "" {
					probs.addf("%s: target %q has no expr", where, ref)
				}
			}
		}
	}
	list, _ := d["panels"].([]any)
	visit(list)
	exprs := dashboardExpressions(path, d)
	for _, e := range exprs {
		if _, err := metricNames(e.expr); err != nil {
			probs.addf("%s: invalid PromQL %q: %v", e.where, e.expr, err)
		}
	}
	return fmt.Sprintf("%s: %d panels, %d PromQL expressions parsed", path, panels, len(exprs)), nil
}
