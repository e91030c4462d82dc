package tick

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/caarlos0/env/v11"
)

// example is the tick of the contract in DESIGN.md.
const example = `{"ts":"2026-01-02T15:04:05.123456Z","symbol":"AAPL","venue":"XNAS","price":189.25,"size":100,"bid":189.24,"ask":189.26,"bid_size":300,"ask_size":200,"seq":123456}`

var exampleTick = Tick{
	TS:     time.Date(2026, 1, 2, 15, 4, 5, 123456000, time.UTC),
	Symbol: "AAPL", Venue: "XNAS",
	Price: 189.25, Size: 100, Bid: 189.24, Ask: 189.26, BidSize: 300, AskSize: 200, Seq: 123456,
	Has: HasVenue | HasSize | HasBid | HasAsk | HasBidSize | HasAskSize | HasSeq,
}

var ts0 = time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC)

// minimal returns the smallest valid tick object with extra members
// appended.
func minimal(extra string) string {
	return `{"ts":"2026-01-02T15:04:05Z","symbol":"AAPL","price":1` + extra + `}`
}

func minTick(mod func(*Tick)) Tick {
	t := Tick{TS: ts0, Symbol: "AAPL", Price: 1}
	if mod != nil {
		mod(&t)
	}
	return t
}

type validCase struct {
	name string
	in   string
	want Tick
}

var validCases = []validCase{
	{"contract example", example, exampleTick},
	{"required members only", minimal(""), minTick(nil)},
	{"members in any order, whitespace anywhere",
		" \t\r\n{ \"price\" : 1 ,\n\"symbol\":\"AAPL\" , \"ts\" :\"2026-01-02T15:04:05Z\" } \n", minTick(nil)},
	{"ts epoch nanoseconds", `{"ts":1767366245123456789,"symbol":"AAPL","price":1}`,
		minTick(func(t *Tick) { t.TS = time.Date(2026, 1, 2, 15, 4, 5, 123456789, time.UTC) })},
	{"ts epoch nanoseconds as a string", `{"ts":"1767366245000000000","symbol":"AAPL","price":1}`, minTick(nil)},
	{"ts with an offset is converted to UTC", `{"ts":"2026-01-02T20:34:05.5+05:30","symbol":"AAPL","price":1}`,
		minTick(func(t *Tick) { t.TS = ts0.Add(500 * time.Millisecond) })},
	{"ts with a negative offset", `{"ts":"2026-01-02T10:04:05-05:00","symbol":"AAPL","price":1}`, minTick(nil)},
	{"ts -00:00 offset", `{"ts":"2026-01-02T15:04:05-00:00","symbol":"AAPL","price":1}`, minTick(nil)},
	{"ts fraction beyond nanoseconds is truncated", `{"ts":"2026-01-02T15:04:05.1234567899Z","symbol":"AAPL","price":1}`,
		minTick(func(t *Tick) { t.TS = ts0.Add(123456789) })},
	{"ts leap day", `{"ts":"2024-02-29T00:00:00Z","symbol":"AAPL","price":1}`,
		minTick(func(t *Tick) { t.TS = time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC) })},
	{"ts at MDS_TICK_MIN_TIME", `{"ts":"1990-01-01T00:00:00Z","symbol":"AAPL","price":1}`,
		minTick(func(t *Tick) { t.TS = time.Date(1990, 1, 1, 0, 0, 0, 0, time.UTC) })},
	{"ts just before MDS_TICK_MAX_TIME", `{"ts":"2099-12-31T23:59:59.999999999Z","symbol":"AAPL","price":1}`,
		minTick(func(t *Tick) { t.TS = time.Date(2100, 1, 1, 0, 0, 0, -1, time.UTC) })},
	{"ts escaped", `{"ts":"2026\u002d01-02T15:04:05Z","symbol":"AAPL","price":1}`, minTick(nil)},
	{"null optional members are absent",
		minimal(`,"venue":null,"size":null,"bid":null,"ask":null,"bid_size":null,"ask_size":null,"seq":null`), minTick(nil)},
	{"empty venue is no venue", minimal(`,"venue":""`), minTick(nil)},
	{"unknown members of every type are skipped",
		minimal(`,"x":{"a":[1,2.5e-3,{"b":null}],"c":"\"}\\"},"y":[],"z":{},"t":true,"f":false,"n":null,"":-0.0,"s":"\ud800\u00e9"`), minTick(nil)},
	{"unknown member nested to the depth limit", minimal(`,"x":` + strings.Repeat("[", maxDepth-1) + strings.Repeat("]", maxDepth-1)), minTick(nil)},
	{"symbol with escapes", `{"ts":"2026-01-02T15:04:05Z","symbol":"\u0041A\/PL","price":1}`,
		minTick(func(t *Tick) { t.Symbol = "AA/PL" })},
	{"symbol with a surrogate pair", `{"ts":"2026-01-02T15:04:05Z","symbol":"\ud83d\ude00X","price":1}`,
		minTick(func(t *Tick) { t.Symbol = "\U0001F600X" })},
	{"symbol in UTF-8", `{"ts":"2026-01-02T15:04:05Z","symbol":"日経225","price":1}`,
		minTick(func(t *Tick) { t.Symbol = "日経225" })},
	{"symbol of MDS_TICK_MAX_SYMBOL_LEN bytes", `{"ts":"2026-01-02T15:04:05Z","symbol":"` + strings.Repeat("S", 32) + `","price":1}`,
		minTick(func(t *Tick) { t.Symbol = strings.Repeat("S", 32) })},
	{"venue of MDS_TICK_MAX_VENUE_LEN bytes", minimal(`,"venue":"` + strings.Repeat("V", 16) + `"`),
		minTick(func(t *Tick) { t.Venue, t.Has = strings.Repeat("V", 16), HasVenue })},
	{"escaped member name", `{"ts":"2026-01-02T15:04:05Z","\u0073ymbol":"AAPL","price":1}`, minTick(nil)},
	{"negative and zero prices", `{"ts":"2026-01-02T15:04:05Z","symbol":"CL","price":-37.63,"bid":0,"ask":-0.0}`,
		minTick(func(t *Tick) { t.Symbol, t.Price, t.Has = "CL", -37.63, HasBid|HasAsk })},
	{"price at MDS_TICK_MAX_ABS_PRICE", `{"ts":"2026-01-02T15:04:05Z","symbol":"AAPL","price":1e12,"bid":-1E+12}`,
		minTick(func(t *Tick) { t.Price, t.Bid, t.Has = 1e12, -1e12, HasBid })},
	{"price with exponent", `{"ts":"2026-01-02T15:04:05Z","symbol":"AAPL","price":18925e-2}`,
		minTick(func(t *Tick) { t.Price = 189.25 })},
	{"price that underflows to zero", `{"ts":"2026-01-02T15:04:05Z","symbol":"AAPL","price":1e-400}`,
		minTick(func(t *Tick) { t.Price = 0 })},
	{"fractional sizes", minimal(`,"size":0.5,"bid_size":0,"ask_size":1e3`),
		minTick(func(t *Tick) { t.Size, t.AskSize, t.Has = 0.5, 1000, HasSize|HasBidSize|HasAskSize })},
	{"seq extremes", minimal(`,"seq":-9223372036854775808`),
		minTick(func(t *Tick) { t.Seq, t.Has = math.MinInt64, HasSeq })},
	{"seq as a string", minimal(`,"seq":"9223372036854775807"`),
		minTick(func(t *Tick) { t.Seq, t.Has = math.MaxInt64, HasSeq })},
	{"record of MDS_TICK_MAX_RECORD_BYTES", minimal(strings.Repeat(" ", 64<<10-len(minimal("")))), minTick(nil)},
}

type invalidCase struct {
	name   string
	in     string
	reason string
}

var invalidCases = []invalidCase{
	// Not JSON, or not a tick-shaped JSON object.
	{"empty", "", ReasonDecode},
	{"whitespace only", " \n", ReasonDecode},
	{"null", "null", ReasonDecode},
	{"array", "[]", ReasonDecode},
	{"string", `"tick"`, ReasonDecode},
	{"byte order mark", "\xef\xbb\xbf" + minimal(""), ReasonDecode},
	{"unterminated object", `{"ts":"2026-01-02T15:04:05Z"`, ReasonDecode},
	{"member without value", `{"ts":}`, ReasonDecode},
	{"member without colon", `{"ts" "2026-01-02T15:04:05Z"}`, ReasonDecode},
	{"members without comma", `{"symbol":"A" "price":1}`, ReasonDecode},
	{"trailing comma", minimal(","), ReasonDecode},
	{"non-string member name", `{1:2}`, ReasonDecode},
	{"single quotes", `{'symbol':'A'}`, ReasonDecode},
	{"data after the object", minimal("") + " x", ReasonDecode},
	{"two objects", minimal("") + minimal(""), ReasonDecode},
	{"comment", minimal("") + "// c", ReasonDecode},
	{"NaN literal", minimal(`,"bid":NaN`), ReasonDecode},
	{"Infinity literal", minimal(`,"bid":Infinity`), ReasonDecode},
	{"leading zero", minimal(`,"bid":01`), ReasonDecode},
	{"plus sign", minimal(`,"bid":+1`), ReasonDecode},
	{"bare minus", minimal(`,"bid":-`), ReasonDecode},
	{"no digit after point", minimal(`,"bid":1.`), ReasonDecode},
	{"no digit before point", minimal(`,"bid":.5`), ReasonDecode},
	{"no digit in exponent", minimal(`,"bid":1e+`), ReasonDecode},
	{"hex number", minimal(`,"bid":0x10`), ReasonDecode},
	{"price as a string", `{"ts":"2026-01-02T15:04:05Z","symbol":"AAPL","price":"189.25"}`, ReasonDecode},
	{"price as a boolean", `{"ts":"2026-01-02T15:04:05Z","symbol":"AAPL","price":true}`, ReasonDecode},
	{"size as an array", minimal(`,"size":[1]`), ReasonDecode},
	{"symbol as a number", `{"ts":"2026-01-02T15:04:05Z","symbol":1,"price":1}`, ReasonDecode},
	{"venue as an object", minimal(`,"venue":{}`), ReasonDecode},
	{"ts as a boolean", `{"ts":false,"symbol":"A","price":1}`, ReasonDecode},
	{"seq as an object", minimal(`,"seq":{"v":1}`), ReasonDecode},
	{"misspelt literal", minimal(`,"x":nul`), ReasonDecode},
	{"raw control character in a string", minimal(`,"x":"a` + "\n" + `"`), ReasonDecode},
	{"invalid escape", minimal(`,"x":"\x41"`), ReasonDecode},
	{"invalid unicode escape", minimal(`,"x":"\u12G4"`), ReasonDecode},
	{"short unicode escape", minimal(`,"x":"\u12"`), ReasonDecode},
	{"unterminated string", `{"ts":"2026-01-02T15:04:05Z","symbol":"AAPL`, ReasonDecode},
	{"mismatched brackets", minimal(`,"x":[1}`), ReasonDecode},
	{"object member without value in unknown", minimal(`,"x":{"a"}`), ReasonDecode},
	{"nested beyond the depth limit", minimal(`,"x":` + strings.Repeat("[", maxDepth) + strings.Repeat("]", maxDepth)), ReasonDecode},
	{"objects nested beyond the depth limit", minimal(`,"x":` + strings.Repeat(`{"a":`, maxDepth) + "1" + strings.Repeat("}", maxDepth)), ReasonDecode},
	{"hostile nesting", minimal(`,"x":` + strings.Repeat("[", 60000)), ReasonDecode},
	{"broken JSON wins over an invalid value", `{"ts":"yesterday","symbol":"","price":1e999,`, ReasonDecode},

	// Well-formed, but not a valid tick.
	{"empty object", `{}`, ReasonInvalid},
	{"missing ts", `{"symbol":"AAPL","price":1}`, ReasonInvalid},
	{"null ts", `{"ts":null,"symbol":"AAPL","price":1}`, ReasonInvalid},
	{"missing symbol", `{"ts":"2026-01-02T15:04:05Z","price":1}`, ReasonInvalid},
	{"null symbol", `{"ts":"2026-01-02T15:04:05Z","symbol":null,"price":1}`, ReasonInvalid},
	{"empty symbol", `{"ts":"2026-01-02T15:04:05Z","symbol":"","price":1}`, ReasonInvalid},
	{"missing price", `{"ts":"2026-01-02T15:04:05Z","symbol":"AAPL"}`, ReasonInvalid},
	{"null price", `{"ts":"2026-01-02T15:04:05Z","symbol":"AAPL","price":null}`, ReasonInvalid},
	{"price out of float64 range", `{"ts":"2026-01-02T15:04:05Z","symbol":"AAPL","price":1e309}`, ReasonInvalid},
	{"price beyond MDS_TICK_MAX_ABS_PRICE", `{"ts":"2026-01-02T15:04:05Z","symbol":"AAPL","price":1.0000001e12}`, ReasonInvalid},
	{"bid beyond MDS_TICK_MAX_ABS_PRICE", minimal(`,"bid":-2e12`), ReasonInvalid},
	{"ask out of float64 range", minimal(`,"ask":-1e400`), ReasonInvalid},
	{"size out of float64 range", minimal(`,"size":1e400`), ReasonInvalid},
	{"negative size", minimal(`,"size":-1`), ReasonInvalid},
	{"negative bid_size", minimal(`,"bid_size":-0.5`), ReasonInvalid},
	{"negative ask_size", minimal(`,"ask_size":-1e-9`), ReasonInvalid},
	{"symbol too long", `{"ts":"2026-01-02T15:04:05Z","symbol":"` + strings.Repeat("S", 33) + `","price":1}`, ReasonInvalid},
	{"symbol too long once unescaped", `{"ts":"2026-01-02T15:04:05Z","symbol":"` + strings.Repeat(`\u00e9`, 17) + `","price":1}`, ReasonInvalid},
	{"venue too long", minimal(`,"venue":"` + strings.Repeat("V", 17) + `"`), ReasonInvalid},
	{"NUL in symbol", `{"ts":"2026-01-02T15:04:05Z","symbol":"A\u0000B","price":1}`, ReasonInvalid},
	{"NUL in venue", minimal(`,"venue":"\u0000"`), ReasonInvalid},
	{"tab in symbol", `{"ts":"2026-01-02T15:04:05Z","symbol":"A\tB","price":1}`, ReasonInvalid},
	{"DEL in venue", minimal(`,"venue":"X` + "\x7f" + `"`), ReasonInvalid},
	{"invalid UTF-8 in symbol", `{"ts":"2026-01-02T15:04:05Z","symbol":"A` + "\xff" + `","price":1}`, ReasonInvalid},
	{"unpaired high surrogate in symbol", `{"ts":"2026-01-02T15:04:05Z","symbol":"\ud83dA","price":1}`, ReasonInvalid},
	{"unpaired low surrogate in venue", minimal(`,"venue":"\ude00"`), ReasonInvalid},
	{"ts before MDS_TICK_MIN_TIME", `{"ts":"1989-12-31T23:59:59.999999999Z","symbol":"AAPL","price":1}`, ReasonInvalid},
	{"ts at MDS_TICK_MAX_TIME", `{"ts":"2100-01-01T00:00:00Z","symbol":"AAPL","price":1}`, ReasonInvalid},
	{"ts in epoch seconds", `{"ts":1767366245,"symbol":"AAPL","price":1}`, ReasonInvalid},
	{"ts epoch with a fraction", `{"ts":1767366245.123,"symbol":"AAPL","price":1}`, ReasonInvalid},
	{"ts epoch with an exponent", `{"ts":1.767366245e18,"symbol":"AAPL","price":1}`, ReasonInvalid},
	{"ts epoch beyond 64 bits", `{"ts":"99999999999999999999","symbol":"AAPL","price":1}`, ReasonInvalid},
	{"ts February 30", `{"ts":"2026-02-30T15:04:05Z","symbol":"AAPL","price":1}`, ReasonInvalid},
	{"ts February 29 of a common year", `{"ts":"2100-02-29T00:00:00Z","symbol":"AAPL","price":1}`, ReasonInvalid},
	{"ts hour 24", `{"ts":"2026-01-02T24:00:00Z","symbol":"AAPL","price":1}`, ReasonInvalid},
	{"ts leap second", `{"ts":"2026-12-31T23:59:60Z","symbol":"AAPL","price":1}`, ReasonInvalid},
	{"ts offset hour 24", `{"ts":"2026-01-02T15:04:05+24:00","symbol":"AAPL","price":1}`, ReasonInvalid},
	{"ts without zone", `{"ts":"2026-01-02T15:04:05","symbol":"AAPL","price":1}`, ReasonInvalid},
	{"ts with a space", `{"ts":"2026-01-02 15:04:05Z","symbol":"AAPL","price":1}`, ReasonInvalid},
	{"ts lower-case", `{"ts":"2026-01-02t15:04:05z","symbol":"AAPL","price":1}`, ReasonInvalid},
	{"ts one-digit hour", `{"ts":"2026-01-02T5:04:05Z","symbol":"AAPL","price":1}`, ReasonInvalid},
	{"ts comma fraction", `{"ts":"2026-01-02T15:04:05,5Z","symbol":"AAPL","price":1}`, ReasonInvalid},
	{"ts empty", `{"ts":"","symbol":"AAPL","price":1}`, ReasonInvalid},
	{"ts words", `{"ts":"yesterday","symbol":"AAPL","price":1}`, ReasonInvalid},
	{"seq with a fraction", minimal(`,"seq":1.5`), ReasonInvalid},
	{"seq with an exponent", minimal(`,"seq":1e3`), ReasonInvalid},
	{"seq beyond int64", minimal(`,"seq":9223372036854775808`), ReasonInvalid},
	{"seq below int64", minimal(`,"seq":-9223372036854775809`), ReasonInvalid},
	{"seq string not an integer", minimal(`,"seq":"12a"`), ReasonInvalid},
	{"seq string with leading zero", minimal(`,"seq":"012"`), ReasonInvalid},
	{"duplicate price", minimal(`,"price":2`), ReasonInvalid},
	{"duplicate after null", `{"ts":"2026-01-02T15:04:05Z","symbol":"AAPL","venue":null,"venue":"X","price":1}`, ReasonInvalid},
	{"duplicate through an escaped name", minimal(`,"pric\u0065":1`), ReasonInvalid},

	{"record beyond MDS_TICK_MAX_RECORD_BYTES", minimal(strings.Repeat(" ", 64<<10+1-len(minimal("")))), ReasonTooLarge},
}

// untilMaxTime is DefaultLimits without the future limit, so that times up
// to MDS_TICK_MAX_TIME decode whatever the clock says.
func untilMaxTime() Limits {
	l := DefaultLimits()
	l.MaxFuture = 0
	return l
}

func TestDecodeValid(t *testing.T) {
	d := NewDecoder(untilMaxTime())
	for _, tc := range validCases {
		t.Run(tc.name, func(t *testing.T) {
			var got Tick
			if err := d.Decode([]byte(tc.in), &got); err != nil {
				t.Fatalf("Decode(%s): %v", tc.in, err)
			}
			if !sameTick(got, tc.want) {
				t.Fatalf("Decode(%s)\n got %+v\nwant %+v", tc.in, got, tc.want)
			}
			if err := checkTick(&got, DefaultLimits()); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestDecodeInvalid(t *testing.T) {
	d := NewDecoder(DefaultLimits())
	for _, tc := range invalidCases {
		t.Run(tc.name, func(t *testing.T) {
			var got Tick
			err := d.Decode([]byte(tc.in), &got)
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("Decode(%.200q) = %v, want a *DecodeError with reason %s", tc.in, err, tc.reason)
			}
			if de.Reason != tc.reason {
				t.Fatalf("Decode(%.200q): reason %s (%v), want %s", tc.in, de.Reason, err, tc.reason)
			}
			if de.Error() != de.Reason+": "+de.Msg || de.Msg == "" {
				t.Fatalf("error text %q", de.Error())
			}
		})
	}
}

func TestDecodeOverwritesPreviousTick(t *testing.T) {
	d := NewDecoder(DefaultLimits())
	var got Tick
	if err := d.Decode([]byte(example), &got); err != nil {
		t.Fatal(err)
	}
	if err := d.Decode([]byte(minimal("")), &got); err != nil {
		t.Fatal(err)
	}
	if !sameTick(got, minTick(nil)) {
		t.Fatalf("fields of the previous tick survived: %+v", got)
	}
}

func TestDecodeHonoursLimits(t *testing.T) {
	l := Limits{
		MaxRecordBytes: 100,
		MaxSymbolLen:   2,
		MaxVenueLen:    1,
		MinTime:        time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		MaxTime:        time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC),
		MaxAbsPrice:    10,
	}
	d := NewDecoder(l)
	for in, reason := range map[string]string{
		`{"ts":"2026-01-02T15:04:05Z","symbol":"AB","venue":"V","price":-10}`:                        "",
		`{"ts":"2026-01-02T15:04:05Z","symbol":"ABC","price":1}`:                                     ReasonInvalid,
		`{"ts":"2026-01-02T15:04:05Z","symbol":"A","venue":"VV","price":1}`:                          ReasonInvalid,
		`{"ts":"2025-12-31T23:59:59Z","symbol":"A","price":1}`:                                       ReasonInvalid,
		`{"ts":"2026-02-01T00:00:00Z","symbol":"A","price":1}`:                                       ReasonInvalid,
		`{"ts":"2026-01-02T15:04:05Z","symbol":"A","price":10.5}`:                                    ReasonInvalid,
		`{"ts":"2026-01-02T15:04:05Z","symbol":"A","price":1,"ask":-11}`:                             ReasonInvalid,
		`{"ts":"2026-01-02T15:04:05Z","symbol":"A","price":1,"x":"` + strings.Repeat("x", 50) + `"}`: ReasonTooLarge,
	} {
		var got Tick
		err := d.Decode([]byte(in), &got)
		var de *DecodeError
		switch {
		case reason == "" && err != nil:
			t.Errorf("Decode(%s): %v", in, err)
		case reason != "" && (!errors.As(err, &de) || de.Reason != reason):
			t.Errorf("Decode(%s) = %v, want reason %s", in, err, reason)
		}
	}
}

// TestDecodeRejectsTheFuture checks MDS_TICK_MAX_FUTURE against a clock
// the test moves: ticks up to now + MaxFuture pass, later ones are invalid,
// the bound follows the clock, and the past (backfill) is not limited.
func TestDecodeRejectsTheFuture(t *testing.T) {
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	d := NewDecoder(DefaultLimits())
	d.now = func() time.Time { return now }
	decode := func(ts time.Time) error {
		var got Tick
		return d.Decode([]byte(`{"ts":"`+ts.Format(time.RFC3339Nano)+`","symbol":"A","price":1}`), &got)
	}
	for _, c := range []struct {
		ts time.Time
		ok bool
	}{
		{now, true},
		{now.Add(24 * time.Hour), true},
		{now.Add(24*time.Hour + time.Nanosecond), false},
		{now.Add(25 * time.Hour), false},
		{time.Date(1995, 3, 1, 0, 0, 0, 0, time.UTC), true},
		{time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC), false},
	} {
		err := decode(c.ts)
		var de *DecodeError
		if c.ok && err != nil || !c.ok && (!errors.As(err, &de) || de.Reason != ReasonInvalid) {
			t.Errorf("ts %v with now %v: Decode = %v, want ok=%v", c.ts, now, err, c.ok)
		}
	}
	now = now.Add(2 * time.Hour)
	if err := decode(time.Date(2026, 6, 2, 13, 0, 0, 0, time.UTC)); err != nil {
		t.Errorf("two hours later, now + 23h is refused: %v", err)
	}
	d = NewDecoder(untilMaxTime())
	d.now = func() time.Time { return now }
	if err := decode(time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC)); err != nil {
		t.Errorf("MDS_TICK_MAX_FUTURE=0 still limits the future: %v", err)
	}
}

func TestDecodeSteadyStateDoesNotAllocate(t *testing.T) {
	d := NewDecoder(DefaultLimits())
	for _, s := range []string{example, `{"ts":1767366245123456789,"symbol":"MSFT","venue":"X\u004eAS","price":1e2,"seq":"7","x":[{"y":null}]}`} {
		in := []byte(s)
		var got Tick
		if err := d.Decode(in, &got); err != nil {
			t.Fatal(err)
		}
		if n := testing.AllocsPerRun(100, func() { _ = d.Decode(in, &got) }); n != 0 {
			t.Errorf("Decode(%s) allocates %v times per tick, want 0", in, n)
		}
	}
}

func TestDecodeInternsBoundedly(t *testing.T) {
	d := NewDecoder(DefaultLimits())
	var a, b Tick
	if err := d.Decode([]byte(example), &a); err != nil {
		t.Fatal(err)
	}
	if err := d.Decode([]byte(example), &b); err != nil {
		t.Fatal(err)
	}
	if unsafe.StringData(a.Symbol) != unsafe.StringData(b.Symbol) {
		t.Fatal("the same symbol decoded twice is not shared")
	}
	var buf []byte
	for i := range maxInterned + 10 {
		buf = AppendJSON(buf[:0], &Tick{TS: ts0, Symbol: fmt.Sprintf("S%d", i), Price: 1})
		if err := d.Decode(buf, &a); err != nil {
			t.Fatal(err)
		}
		if len(d.interned) > maxInterned {
			t.Fatalf("interned table grew to %d entries", len(d.interned))
		}
	}
	if a.Symbol != fmt.Sprintf("S%d", maxInterned+9) {
		t.Fatalf("symbol after the table was cleared: %q", a.Symbol)
	}
}

func TestAppendJSONIsTheContractForm(t *testing.T) {
	if got := string(AppendJSON(nil, &exampleTick)); got != example {
		t.Fatalf("AppendJSON\n got %s\nwant %s", got, example)
	}
	if got, want := string(AppendJSON([]byte("x"), &Tick{TS: ts0, Symbol: "A", Price: 1e21, Has: HasBid, Bid: 1e-7})), `x{"ts":"2026-01-02T15:04:05Z","symbol":"A","price":1e+21,"bid":1e-07}`; got != want {
		t.Fatalf("AppendJSON\n got %s\nwant %s", got, want)
	}
}

func TestAppendJSONIsValidJSONWhateverTheTick(t *testing.T) {
	odd := "q\"b\\c\x00\n\x1f\x7f\xffé😀"
	tk := Tick{TS: ts0.In(time.FixedZone("X", 3600)), Symbol: odd, Venue: odd, Price: math.NaN(), Size: math.Inf(1), Has: HasVenue | HasSize}
	out := AppendJSON(nil, &tk)
	var m map[string]any
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatalf("AppendJSON wrote invalid JSON %s: %v", out, err)
	}
	want := strings.ToValidUTF8(odd, "\uFFFD")
	if m["symbol"] != want || m["venue"] != want || m["price"] != nil || m["size"] != nil || m["ts"] != "2026-01-02T15:04:05Z" {
		t.Fatalf("AppendJSON wrote %s", out)
	}
}

func TestRoundTrip(t *testing.T) {
	d := NewDecoder(untilMaxTime())
	for _, tc := range validCases {
		out := AppendJSON(nil, &tc.want)
		var got Tick
		if err := d.Decode(out, &got); err != nil {
			t.Fatalf("%s: Decode(AppendJSON) = %v for %s", tc.name, err, out)
		}
		if !sameTick(got, tc.want) {
			t.Fatalf("%s: round trip through %s\n got %+v\nwant %+v", tc.name, out, got, tc.want)
		}
	}
}

func TestParseRFC3339AgreesWithTimeParse(t *testing.T) {
	for _, s := range []string{
		"2026-01-02T15:04:05Z", "2026-01-02T15:04:05.000000001Z", "0000-01-01T00:00:00Z",
		"9999-12-31T23:59:59.999999999+23:59", "2000-02-29T12:00:00-12:30", "1999-12-31T23:59:59.1234567891234Z",
	} {
		got, ok := parseRFC3339([]byte(s))
		want, err := time.Parse(time.RFC3339Nano, s)
		if !ok || err != nil || !got.Equal(want) || got.Location() != time.UTC {
			t.Errorf("parseRFC3339(%s) = %v, %v; time.Parse = %v, %v", s, got, ok, want, err)
		}
	}
}

func TestLimitsValidate(t *testing.T) {
	if err := DefaultLimits().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for env, mod := range map[string]func(*Limits){
		"MDS_TICK_MAX_RECORD_BYTES": func(l *Limits) { l.MaxRecordBytes = 0 },
		"MDS_TICK_MAX_SYMBOL_LEN":   func(l *Limits) { l.MaxSymbolLen = -1 },
		"MDS_TICK_MAX_VENUE_LEN":    func(l *Limits) { l.MaxVenueLen = 0 },
		"MDS_TICK_MIN_TIME":         func(l *Limits) { l.MinTime = l.MaxTime },
		"MDS_TICK_MAX_FUTURE":       func(l *Limits) { l.MaxFuture = -time.Second },
		"MDS_TICK_MAX_ABS_PRICE":    func(l *Limits) { l.MaxAbsPrice = math.Inf(1) },
	} {
		l := DefaultLimits()
		mod(&l)
		if err := l.Validate(); err == nil || !strings.Contains(err.Error(), env) {
			t.Errorf("broken %s: Validate() = %v, want an error naming it", env, err)
		}
	}
	for _, p := range []float64{0, -1, math.NaN()} {
		l := DefaultLimits()
		l.MaxAbsPrice = p
		if l.Validate() == nil {
			t.Errorf("MaxAbsPrice %v accepted", p)
		}
	}
}

func TestLimitsLoadFromEnvironment(t *testing.T) {
	typ := reflect.TypeFor[Limits]()
	for i := range typ.NumField() {
		f := typ.Field(i)
		if !strings.HasPrefix(f.Tag.Get("env"), "MDS_TICK_") || f.Tag.Get("help") == "" {
			t.Errorf("field %s lacks an MDS_TICK_ env tag or a help tag", f.Name)
		}
	}
	l := DefaultLimits()
	err := env.ParseWithOptions(&l, env.Options{Environment: map[string]string{
		"MDS_TICK_MAX_RECORD_BYTES": "1024",
		"MDS_TICK_MIN_TIME":         "2000-01-01T00:00:00Z",
		"MDS_TICK_MAX_ABS_PRICE":    "1e6",
	}})
	if err != nil {
		t.Fatal(err)
	}
	want := DefaultLimits()
	want.MaxRecordBytes, want.MinTime, want.MaxAbsPrice = 1024, time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC), 1e6
	if !l.MinTime.Equal(want.MinTime) || l.MaxRecordBytes != want.MaxRecordBytes || l.MaxAbsPrice != want.MaxAbsPrice ||
		l.MaxSymbolLen != want.MaxSymbolLen || !l.MaxTime.Equal(want.MaxTime) {
		t.Fatalf("loaded %+v, want %+v", l, want)
	}
}

// sameTick compares ticks exactly: floats by their bits, times as UTC
// instants.
func sameTick(a, b Tick) bool {
	fa := []float64{a.Price, a.Size, a.Bid, a.Ask, a.BidSize, a.AskSize}
	fb := []float64{b.Price, b.Size, b.Bid, b.Ask, b.BidSize, b.AskSize}
	for i := range fa {
		if math.Float64bits(fa[i]) != math.Float64bits(fb[i]) && !(fa[i] == 0 && fb[i] == 0) {
			return false
		}
	}
	return a.TS.Equal(b.TS) && a.TS.Location() == b.TS.Location() &&
		a.Symbol == b.Symbol && a.Venue == b.Venue && a.Seq == b.Seq && a.Has == b.Has
}

// checkTick reports how a decoded tick breaks the decoding contract.
func checkTick(t *Tick, l Limits) error {
	switch {
	case t.TS.Location() != time.UTC:
		return fmt.Errorf("ts %v not in UTC", t.TS)
	case t.TS.Before(l.MinTime) || !t.TS.Before(l.MaxTime):
		return fmt.Errorf("ts %v out of range", t.TS)
	case t.Symbol == "" || len(t.Symbol) > l.MaxSymbolLen || !printable([]byte(t.Symbol)):
		return fmt.Errorf("bad symbol %q", t.Symbol)
	case t.Has&HasVenue != 0 && (t.Venue == "" || len(t.Venue) > l.MaxVenueLen || !printable([]byte(t.Venue))):
		return fmt.Errorf("bad venue %q", t.Venue)
	case t.Has&HasVenue == 0 && t.Venue != "":
		return fmt.Errorf("venue %q without its bit", t.Venue)
	case t.Has&HasSeq == 0 && t.Seq != 0:
		return fmt.Errorf("seq %d without its bit", t.Seq)
	case t.Has >= HasSeq<<1:
		return fmt.Errorf("unknown bits in Has %b", t.Has)
	case !(math.Abs(t.Price) <= l.MaxAbsPrice):
		return fmt.Errorf("bad price %v", t.Price)
	}
	for _, o := range []struct {
		bit   Field
		v     float64
		price bool
	}{{HasSize, t.Size, false}, {HasBid, t.Bid, true}, {HasAsk, t.Ask, true}, {HasBidSize, t.BidSize, false}, {HasAskSize, t.AskSize, false}} {
		switch {
		case t.Has&o.bit == 0 && o.v != 0:
			return fmt.Errorf("value %v without bit %b", o.v, o.bit)
		case o.price && !(math.Abs(o.v) <= l.MaxAbsPrice):
			return fmt.Errorf("bad price-like value %v", o.v)
		case !o.price && !(o.v >= 0 && !math.IsInf(o.v, 0)):
			return fmt.Errorf("bad size %v", o.v)
		}
	}
	return nil
}
