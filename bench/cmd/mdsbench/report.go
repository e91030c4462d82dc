package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/market-data-store/mds/internal/coordinator"
)

// result is everything one run measured; it is written as JSON.
type result struct {
	Date           string         `json:"date"`
	Machine        machine        `json:"machine"`
	Settings       benchSettings  `json:"settings"`
	Produce        produceResult  `json:"produce"`
	DBCeiling      *dbResult      `json:"db_ceiling,omitempty"`
	ConsumeCeiling *consumeResult `json:"consume_ceiling,omitempty"`
	Processor      *e2eResult     `json:"processor,omitempty"`
	// PctOfLowerCeiling is the processor's rate as a percentage of the
	// lower of the two ceilings measured in this run.
	PctOfLowerCeiling float64        `json:"processor_pct_of_lower_ceiling,omitempty"`
	Latency           *latencyResult `json:"latency,omitempty"`
	BigRecords        *bigResult     `json:"big_records,omitempty"`
	Targets           []target       `json:"targets"`
	// Rounds lists every round's figures; the sections above hold the
	// best round of each.
	Rounds []roundResult `json:"rounds"`
}

// roundResult is one round's headline figures.
type roundResult struct {
	Round               int     `json:"round"`
	DBRowsPerSec        float64 `json:"db_ceiling_rows_per_s,omitempty"`
	ConsumeRowsPerSec   float64 `json:"consume_ceiling_rows_per_s,omitempty"`
	ProcessorRowsPerSec float64 `json:"processor_rows_per_s,omitempty"`
	ProcessorCPUPerM    float64 `json:"processor_cpu_s_per_million,omitempty"`
	ProcessorPeakRSSMB  float64 `json:"processor_peak_rss_mb,omitempty"`
}

type benchSettings struct {
	N               int      `json:"n"`
	Partitions      int      `json:"partitions"`
	Symbols         int      `json:"symbols"`
	Durable         bool     `json:"durable"`
	Compression     string   `json:"compression"`
	LatencyRate     int      `json:"latency_rate"`
	LatencySeconds  float64  `json:"latency_duration_s"`
	PollIntervalMs  float64  `json:"poll_interval_ms"`
	ProcessorSet    []string `json:"processor_settings,omitempty"` // -set flags; empty means defaults
	FlushIntervalMs float64  `json:"flush_interval_ms"`
	Rounds          int      `json:"rounds"`
	Kafka           string   `json:"kafka,omitempty"` // kfake (in the harness) or real (Apache Kafka in its own process)
}

func settingsOf(o options) benchSettings {
	return benchSettings{
		N: o.n, Partitions: o.partitions, Symbols: o.symbols, Durable: o.durable, Compression: o.compression,
		LatencyRate: o.latencyRate, LatencySeconds: o.latencyDuration.Seconds(),
		PollIntervalMs: float64(o.pollInterval) / 1e6, ProcessorSet: o.set,
		FlushIntervalMs: float64(flushInterval(o.set)) / 1e6, Rounds: o.rounds, Kafka: o.kafka,
	}
}

// flushInterval is the processor's flush interval: the default, or the
// value of a -set MDS_COORDINATOR_FLUSH_INTERVAL (Go duration or seconds).
func flushInterval(set []string) time.Duration {
	d := coordinator.DefaultConfig().FlushInterval
	for _, kv := range set {
		k, v, _ := strings.Cut(kv, "=")
		if k != "MDS_COORDINATOR_FLUSH_INTERVAL" {
			continue
		}
		if pd, err := time.ParseDuration(v); err == nil {
			d = pd
		} else if s, err := strconv.ParseFloat(v, 64); err == nil {
			d = time.Duration(s * float64(time.Second))
		}
	}
	return d
}

// target is one goal of the issue and whether this run met it.
type target struct {
	Name  string  `json:"name"`
	Goal  string  `json:"goal"`
	Value float64 `json:"value"`
	Pass  bool    `json:"pass"`
}

// The goals.
const (
	minPctOfCeiling = 75
	maxCPUPerM      = 3
	maxPeakRSSMB    = 150
	latencySlack    = 50 * time.Millisecond
)

// judge computes the derived figures and checks the goals that were measured.
func (r *result) judge() {
	if p := r.Processor; p != nil {
		if lower := r.lowerCeiling(); lower > 0 {
			r.PctOfLowerCeiling = 100 * p.RowsPerSec / lower
			r.Targets = append(r.Targets, target{"throughput", fmt.Sprintf(">= %d %% of the lower ceiling", minPctOfCeiling),
				round1(r.PctOfLowerCeiling), r.PctOfLowerCeiling >= minPctOfCeiling})
		}
		r.Targets = append(r.Targets,
			target{"cpu", fmt.Sprintf("< %d CPU s per million ticks", maxCPUPerM), round2(p.CPUPerM), p.CPUPerM < maxCPUPerM},
			target{"memory", fmt.Sprintf("peak RSS < %d MB", maxPeakRSSMB), round1(p.PeakRSSMB), p.PeakRSSMB < maxPeakRSSMB})
	}
	if l := r.Latency; l != nil {
		limit := r.Settings.FlushIntervalMs + float64(latencySlack/time.Millisecond)
		r.Targets = append(r.Targets, target{"latency", fmt.Sprintf("p99 <= %.0f ms at %d ticks/s", limit, r.Settings.LatencyRate),
			l.P99Ms, l.P99Ms <= limit})
	}
}

// lowerCeiling is the lower of the ceilings measured (0 if none).
func (r *result) lowerCeiling() float64 {
	var c []float64
	if r.DBCeiling != nil {
		c = append(c, r.DBCeiling.RowsPerSec)
	}
	if r.ConsumeCeiling != nil {
		c = append(c, r.ConsumeCeiling.RowsPerSec)
	}
	if len(c) == 0 {
		return 0
	}
	return min(c[0], c[len(c)-1])
}

func (r *result) print(w io.Writer) {
	fmt.Fprintf(w, "\nmdsbench %s  %d CPUs (%s)  %s  commit %s\n", r.Date, r.Machine.NumCPU, r.Machine.CPUModel, r.Machine.GoVersion, r.Machine.Commit)
	fmt.Fprintf(w, "%d ticks, %d partitions, %d symbols, %s compression, PostgreSQL durable=%v",
		r.Settings.N, r.Settings.Partitions, r.Settings.Symbols, r.Settings.Compression, r.Settings.Durable)
	if r.Settings.Kafka == "real" {
		fmt.Fprint(w, ", Apache Kafka in its own process")
	}
	if len(r.Settings.ProcessorSet) > 0 {
		fmt.Fprintf(w, ", processor with %s", strings.Join(r.Settings.ProcessorSet, " "))
	}
	fmt.Fprint(w, "\n\n")
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	fmt.Fprintln(tw, "\trows/s\t% of lower ceiling\tCPU s / M ticks\tpeak RSS MB")
	if c := r.DBCeiling; c != nil {
		fmt.Fprintf(tw, "database ceiling: COPY, best of 1|2 conns (%.0f|%.0f)\t%.0f\t\t%.2f (postgres)\t\n",
			c.ByConns["1"], c.ByConns["2"], c.RowsPerSec, c.PostgresCPUPerM)
	}
	if c := r.ConsumeCeiling; c != nil {
		who := "harness+kfake"
		if r.Settings.Kafka == "real" {
			who = "harness; Apache Kafka apart"
		}
		fmt.Fprintf(tw, "consume ceiling: franz-go + tick.Decoder\t%.0f\t\t%.2f (%s)\t\n", c.RowsPerSec, c.HarnessCPUPerM, who)
	}
	if p := r.Processor; p != nil {
		pct := "-"
		if r.PctOfLowerCeiling > 0 {
			pct = fmt.Sprintf("%.1f %%", r.PctOfLowerCeiling)
		}
		fmt.Fprintf(tw, "processor end to end\t%.0f\t%s\t%.2f\t%.1f\n", p.RowsPerSec, pct, p.CPUPerM, p.PeakRSSMB)
	}
	tw.Flush()
	if p := r.Processor; p != nil {
		fmt.Fprintf(w, "  processor: %.0f rows/s including start-up; %.0f batches of %.0f rows, mean write %.1f ms; "+
			"%g HARD events; postgres %.2f CPU s / M\n",
			p.WallRowsPerSec, p.Batches, p.RowsPerBatch, p.MeanWriteMs, p.HardEvents, p.PostgresCPUPerM)
	}
	if len(r.Rounds) > 1 {
		fmt.Fprintln(w, "  every round (the table shows the best of each): database | consume | processor rows/s, processor CPU s / M, peak RSS MB")
		for _, rr := range r.Rounds {
			fmt.Fprintf(w, "    round %d: %.0f | %.0f | %.0f, %.2f, %.1f\n", rr.Round,
				rr.DBRowsPerSec, rr.ConsumeRowsPerSec, rr.ProcessorRowsPerSec, rr.ProcessorCPUPerM, rr.ProcessorPeakRSSMB)
		}
	}
	if l := r.Latency; l != nil {
		fmt.Fprintf(w, "\nlatency, produce to commit, at %.0f ticks/s offered (%.0f achieved, %d ticks):\n", l.OfferedPerSec, l.AchievedPerSec, l.Ticks)
		fmt.Fprintf(w, "  p50 %.1f ms  p90 %.1f ms  p99 %.1f ms  p99.9 %.1f ms  max %.1f ms  (each ±%.1f ms at most, ±%.1f ms on average)\n",
			l.P50Ms, l.P90Ms, l.P99Ms, l.P999Ms, l.MaxMs, l.ErrorBoundMs, l.MeanErrorBoundMs)
		fmt.Fprintf(w, "  processor histogram mds_ingest_latency_seconds: p50 %.1f ms, p99 %.1f ms; last commit %.0f ms after the last produce; %.2f CPU s / M ticks\n",
			l.HistP50Ms, l.HistP99Ms, l.DrainMs, l.CPUPerM)
	}
	if b := r.BigRecords; b != nil {
		fmt.Fprintf(w, "\npeak memory, backlog of %d records of %d bytes (too_large dead letters), default settings:\n", b.Records, b.RecordBytes)
		fmt.Fprintf(w, "  peak RSS %.1f MB, peak queue %.1f MB, %d dead letters, %.1f s, %g HARD events\n",
			b.PeakRSSMB, b.PeakQueueBytesMB, b.DeadLetters, b.Seconds, b.HardEvents)
	}
	if len(r.Targets) > 0 {
		fmt.Fprintln(w, "\ntargets:")
		for _, t := range r.Targets {
			verdict := "PASS"
			if !t.Pass {
				verdict = "MISS"
			}
			fmt.Fprintf(w, "  %-4s %-10s %-40s measured %g\n", verdict, t.Name, t.Goal, t.Value)
		}
	}
	fmt.Fprintln(w)
}

func (r *result) write(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding results: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("creating results directory: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing results: %w", err)
	}
	return nil
}

func round1(v float64) float64 { return float64(int64(v*10+0.5)) / 10 }
func round2(v float64) float64 { return float64(int64(v*100+0.5)) / 100 }
