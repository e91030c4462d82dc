//go:build unix

package tick

import (
	"encoding/json"
	"fmt"
	"syscall"
	"testing"
	"time"
)

// cpuClock reports the process's CPU time per operation (user and system,
// garbage collection included) as cpu-ns/op: on a shared machine it is a
// steadier figure than ns/op, and it is what the CPU budget of the service
// is stated in.
func cpuClock(b *testing.B) func() {
	used := func() int64 {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			b.Fatal(err)
		}
		return ru.Utime.Nano() + ru.Stime.Nano()
	}
	start := used()
	return func() { b.ReportMetric(float64(used()-start)/float64(b.N), "cpu-ns/op") }
}

// benchValues returns n canonical ticks over 500 symbols, like a real feed.
func benchValues(n int) [][]byte {
	out := make([][]byte, n)
	base := time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC)
	for i := range out {
		p := 100 + float64(i%1000)/100
		tk := Tick{
			TS: base.Add(time.Duration(i) * 1234567), Symbol: fmt.Sprintf("SYM%d", i%500), Venue: "XNAS",
			Price: p, Size: float64(100 * (i%9 + 1)), Bid: p - 0.01, Ask: p + 0.01, BidSize: 300, AskSize: 200, Seq: int64(i),
			Has: HasVenue | HasSize | HasBid | HasAsk | HasBidSize | HasAskSize | HasSeq,
		}
		out[i] = AppendJSON(nil, &tk)
	}
	return out
}

func BenchmarkDecode(b *testing.B) {
	values := benchValues(4096)
	d := NewDecoder(DefaultLimits())
	var tk Tick
	b.ReportAllocs()
	b.ResetTimer()
	defer cpuClock(b)()
	for i := range b.N {
		v := values[i%len(values)]
		b.SetBytes(int64(len(v)))
		if err := d.Decode(v, &tk); err != nil {
			b.Fatal(err)
		}
	}
}

// stdTick is what encoding/json needs to tell absent members from zero.
type stdTick struct {
	TS      string   `json:"ts"`
	Symbol  string   `json:"symbol"`
	Venue   *string  `json:"venue"`
	Price   *float64 `json:"price"`
	Size    *float64 `json:"size"`
	Bid     *float64 `json:"bid"`
	Ask     *float64 `json:"ask"`
	BidSize *float64 `json:"bid_size"`
	AskSize *float64 `json:"ask_size"`
	Seq     *int64   `json:"seq"`
}

// BenchmarkDecodeStdlib is the baseline: encoding/json and time.Parse
// producing the same Tick, without the validation rules.
func BenchmarkDecodeStdlib(b *testing.B) {
	values := benchValues(4096)
	var tk Tick
	b.ReportAllocs()
	b.ResetTimer()
	defer cpuClock(b)()
	for i := range b.N {
		v := values[i%len(values)]
		b.SetBytes(int64(len(v)))
		var s stdTick
		if err := json.Unmarshal(v, &s); err != nil {
			b.Fatal(err)
		}
		ts, err := time.Parse(time.RFC3339Nano, s.TS)
		if err != nil {
			b.Fatal(err)
		}
		tk = Tick{TS: ts, Symbol: s.Symbol, Price: *s.Price, Size: *s.Size, Bid: *s.Bid, Ask: *s.Ask,
			BidSize: *s.BidSize, AskSize: *s.AskSize, Seq: *s.Seq, Venue: *s.Venue}
	}
	_ = tk
}

func BenchmarkAppendJSON(b *testing.B) {
	values := benchValues(4096)
	d := NewDecoder(DefaultLimits())
	ticks := make([]Tick, len(values))
	for i, v := range values {
		if err := d.Decode(v, &ticks[i]); err != nil {
			b.Fatal(err)
		}
	}
	var buf []byte
	b.ReportAllocs()
	b.ResetTimer()
	defer cpuClock(b)()
	for i := range b.N {
		buf = AppendJSON(buf[:0], &ticks[i%len(ticks)])
	}
	b.SetBytes(int64(len(buf)))
}
