package main

import (
	"math"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"
)

func TestParseStat(t *testing.T) {
	// A command name with spaces and parentheses, as /proc allows.
	line := "4242 (my (odd) proc) S 17 4242 4242 0 -1 4194560 100 0 0 0 250 75 12 3 20 0 9 0 123 456 789\n"
	st, err := parseStat(line)
	if err != nil {
		t.Fatal(err)
	}
	if st.ppid != 17 || st.cpu != 3250*time.Millisecond || st.childCPU != 150*time.Millisecond {
		t.Fatalf("parseStat = %+v", st)
	}
	if _, err := parseStat("4242 (x) S 1 2"); err == nil {
		t.Fatal("a short stat line parsed")
	}
}

func TestProcField(t *testing.T) {
	status := "Name:\tprocessor\nVmPeak:\t  999 kB\nVmHWM:\t   81234 kB\nVmRSS:\t 70000 kB\n"
	if v, ok := procField(status, "VmHWM:"); !ok || v != 81234 {
		t.Fatalf("VmHWM = %d, %v", v, ok)
	}
	if _, ok := procField(status, "VmSwap:"); ok {
		t.Fatal("found a missing field")
	}
}

func TestQuantile(t *testing.T) {
	var s []float64
	for i := 1; i <= 1000; i++ {
		s = append(s, float64(i)/1000) // 1ms .. 1000ms
	}
	for _, c := range []struct{ q, want float64 }{{0.5, 500}, {0.99, 990}, {0.999, 999}, {1, 1000}, {0, 1}} {
		if got := quantile(s, c.q); math.Abs(got-c.want) > 1e-9 {
			t.Errorf("quantile(%v) = %v ms, want %v", c.q, got, c.want)
		}
	}
}

func TestHistogramQuantile(t *testing.T) {
	bucket := func(upper float64, cum uint64) *dto.Bucket {
		return &dto.Bucket{UpperBound: proto.Float64(upper), CumulativeCount: proto.Uint64(cum)}
	}
	h := &dto.Histogram{
		SampleCount: proto.Uint64(100),
		Bucket:      []*dto.Bucket{bucket(0.1, 0), bucket(0.2, 50), bucket(0.4, 100)},
	}
	for _, c := range []struct{ q, want float64 }{{0.25, 0.15}, {0.5, 0.2}, {0.75, 0.3}, {0.99, 0.396}} {
		if got := histogramQuantile(h, c.q); math.Abs(got-c.want) > 1e-9 {
			t.Errorf("histogramQuantile(%v) = %v, want %v", c.q, got, c.want)
		}
	}
}

func TestLatencies(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	produced := [][]time.Time{{at(0), at(10)}, {at(5)}}
	obs := []commitObs{
		{part: 0, from: 0, to: 2, lo: at(100), hi: at(110)}, // midpoint 105, ±5
		{part: 1, from: 0, to: 1, lo: at(200), hi: at(204)}, // midpoint 202, ±2
	}
	lat, bound, mean, err := latencies(obs, produced)
	if err != nil {
		t.Fatal(err)
	}
	want := []float64{0.095, 0.105, 0.197}
	if len(lat) != len(want) {
		t.Fatalf("latencies = %v", lat)
	}
	for i := range want {
		if math.Abs(lat[i]-want[i]) > 1e-9 {
			t.Fatalf("latencies = %v, want %v", lat, want)
		}
	}
	if math.Abs(bound-5) > 1e-9 || math.Abs(mean-4) > 1e-9 {
		t.Fatalf("bound %v mean %v, want 5 and 4", bound, mean)
	}
	if _, _, _, err := latencies([]commitObs{{part: 1, from: 0, to: 2}}, produced); err == nil {
		t.Fatal("a commit beyond the produced offsets was accepted")
	}
}

func TestFlushInterval(t *testing.T) {
	if d := flushInterval(nil); d != 250*time.Millisecond {
		t.Fatalf("default flush interval %v", d)
	}
	if d := flushInterval([]string{"MDS_COORDINATOR_FLUSH_INTERVAL=100ms"}); d != 100*time.Millisecond {
		t.Fatalf("duration override %v", d)
	}
	if d := flushInterval([]string{"MDS_COORDINATOR_FLUSH_INTERVAL=0.5"}); d != 500*time.Millisecond {
		t.Fatalf("seconds override %v", d)
	}
}

func TestEnvListSet(t *testing.T) {
	var e envList
	if err := e.Set("MDS_COORDINATOR_WORKERS=2"); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"WORKERS=2", "MDS_COORDINATOR_WORKERS"} {
		if err := e.Set(bad); err == nil {
			t.Errorf("Set(%q) accepted", bad)
		}
	}
	if len(e) != 1 {
		t.Fatalf("envList = %v", e)
	}
}
