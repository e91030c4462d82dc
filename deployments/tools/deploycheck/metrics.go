package main

import (
	"fmt"
	"os"
	"slices"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// exported is what a /metrics scrape offers: the series names a query can select,
// each mapped to its metric family, and the type of every family.
type exported struct {
	series   map[string]string
	families map[string]dto.MetricType
}

func loadScrape(path string) (exported, error) {
	f, err := os.Open(path)
	if err != nil {
		return exported{}, err
	}
	defer f.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(f)
	if err != nil {
		return exported{}, fmt.Errorf("%s: %w", path, err)
	}
	e := exported{series: map[string]string{}, families: map[string]dto.MetricType{}}
	for name, mf := range fams {
		e.families[name] = mf.GetType()
		for _, s := range seriesNames(name, mf.GetType()) {
			e.series[s] = name
		}
	}
	return e, nil
}

// seriesNames returns the names under which a family's samples are stored.
func seriesNames(family string, t dto.MetricType) []string {
	switch t {
	case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
		return []string{family + "_bucket", family + "_sum", family + "_count"}
	case dto.MetricType_SUMMARY:
		return []string{family, family + "_sum", family + "_count"}
	default:
		return []string{family}
	}
}

// resolve maps a metric name used in a query to the exported family, or says why
// no series of that name exists.
func (e exported) resolve(name string) (family string, problem string) {
	if fam, ok := e.series[name]; ok {
		return fam, ""
	}
	if t, ok := e.families[name]; ok {
		return "", fmt.Sprintf("%s is a %s: select %s", name, typeName(t), strings.Join(seriesNames(name, t), ", "))
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(name, suffix)
		if t, found := e.families[base]; ok && found {
			return "", fmt.Sprintf("%s: %s is a %s, which has no %s series", name, base, typeName(t), suffix)
		}
	}
	return "", fmt.Sprintf("%s is not in the scrape (not exported, misspelt, or a labelled metric none of whose label values was ever set)", name)
}

func typeName(t dto.MetricType) string {
	return strings.ToLower(strings.ReplaceAll(t.String(), "_", " "))
}

// checkMetrics requires every prefixed metric name that the rules and dashboards
// select to be a series of the scrape.
func checkMetrics(scrape string, rules, dashboards []string, prefix string, probs *problems) (string, error) {
	exp, err := loadScrape(scrape)
	if err != nil {
		return "", err
	}
	var exprs []expression
	for _, r := range rules {
		es, err := ruleExpressions(r)
		if err != nil {
			return "", err
		}
		exprs = append(exprs, es...)
	}
	for _, path := range dashboards {
		d, err := loadDashboard(path)
		if err != nil {
			return "", err
		}
		exprs = append(exprs, dashboardExpressions(path, d)...)
	}

	offered := 0
	for fam := range exp.families {
		if strings.HasPrefix(fam, prefix) {
			offered++
		}
	}
	if offered == 0 {
		probs.addf("%s has no %s* metric at all: is it a scrape of the processor?", scrape, prefix)
	}
	used := map[string]bool{}
	names := map[string]bool{}
	for _, e := range exprs {
		ns, err := metricNames(e.expr)
		if err != nil {
			probs.addf("%s: invalid PromQL %q: %v", e.where, e.expr, err)
			continue
		}
		for _, n := range ns {
			if !strings.HasPrefix(n, prefix) {
				continue
			}
			names[n] = true
			fam, problem := exp.resolve(n)
			if problem != "" {
				probs.addf("%s: %s", e.where, problem)
				continue
			}
			used[fam] = true
		}
	}
	var unused []string
	for fam := range exp.families {
		if strings.HasPrefix(fam, prefix) && !used[fam] {
			unused = append(unused, fam)
		}
	}
	slices.Sort(unused)
	summary := fmt.Sprintf("%d expressions use %d %s* names, all exported by %s (%d %s* families)",
		len(exprs), len(names), prefix, scrape, offered, prefix)
	if len(unused) > 0 {
		summary += "; exported but used nowhere: " + strings.Join(unused, ", ")
	}
	return summary, nil
}
