package tick

import (
	"encoding/json"
	"errors"
	"math"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// FuzzDecode checks the decoder against its contract on any input: it never
// panics, it classifies every failure, its idea of well-formed JSON is
// encoding/json's, what it accepts satisfies every rule and matches what
// encoding/json reads, and what it accepts survives AppendJSON unchanged.
func FuzzDecode(f *testing.F) {
	// A small record limit keeps the too_large path in reach of the
	// mutator, and the seeds small enough to minimize quickly.
	lim := DefaultLimits()
	lim.MaxRecordBytes = 1 << 10
	var seeds []string
	for _, tc := range validCases {
		seeds = append(seeds, tc.in)
	}
	for _, tc := range invalidCases {
		seeds = append(seeds, tc.in)
	}
	for _, in := range seeds {
		if len(in) <= 2*lim.MaxRecordBytes {
			f.Add([]byte(in))
		}
	}
	d := NewDecoder(lim)
	f.Fuzz(func(t *testing.T, in []byte) {
		var tk Tick
		err := d.Decode(in, &tk)
		valid := json.Valid(in)
		if err != nil {
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("error %v is not a *DecodeError", err)
			}
			switch de.Reason {
			case ReasonTooLarge:
				if len(in) <= lim.MaxRecordBytes {
					t.Fatalf("%d bytes called too large", len(in))
				}
			case ReasonInvalid:
				if !valid {
					t.Fatalf("malformed JSON %q reported as %v", in, err)
				}
			case ReasonDecode:
			default:
				t.Fatalf("unknown reason in %v", err)
			}
			return
		}
		if !valid {
			t.Fatalf("accepted malformed JSON %q", in)
		}
		if err := checkTick(&tk, lim); err != nil {
			t.Fatalf("accepted %q as a tick that breaks the contract: %v", in, err)
		}
		compareWithStdlib(t, in, &tk)

		out := AppendJSON(nil, &tk)
		var again Tick
		if err := d.Decode(out, &again); err != nil {
			t.Fatalf("re-encoded %q as %s, which does not decode: %v", in, out, err)
		}
		if !sameTick(tk, again) {
			t.Fatalf("round trip of %q through %s\n got %+v\nwant %+v", in, out, again, tk)
		}
	})
}

// compareWithStdlib checks a decoded tick against what encoding/json reads
// from the same bytes. The decoder rejected duplicate members, so "last one
// wins" in encoding/json cannot differ.
func compareWithStdlib(t *testing.T, in []byte, tk *Tick) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(in, &m); err != nil {
		t.Fatalf("encoding/json rejects accepted %q: %v", in, err)
	}
	str := func(name string) (string, bool) {
		var s *string
		if err := json.Unmarshal(m[name], &s); err != nil || s == nil {
			return "", false
		}
		return *s, true
	}
	if s, _ := str("symbol"); s != tk.Symbol {
		t.Fatalf("symbol %q, encoding/json reads %q", tk.Symbol, s)
	}
	if s, ok := str("venue"); s != tk.Venue || (ok && s != "") != (tk.Has&HasVenue != 0) {
		t.Fatalf("venue %q (has %v), encoding/json reads %q", tk.Venue, tk.Has&HasVenue != 0, s)
	}
	for _, o := range []struct {
		name string
		bit  Field
		v    float64
	}{{"price", 0, tk.Price}, {"size", HasSize, tk.Size}, {"bid", HasBid, tk.Bid}, {"ask", HasAsk, tk.Ask}, {"bid_size", HasBidSize, tk.BidSize}, {"ask_size", HasAskSize, tk.AskSize}} {
		var v *float64
		if err := json.Unmarshal(m[o.name], &v); err != nil && m[o.name] != nil {
			t.Fatalf("%s: encoding/json: %v", o.name, err)
		}
		if (v != nil) != (o.bit == 0 || tk.Has&o.bit != 0) || v != nil && math.Float64bits(*v) != math.Float64bits(o.v) && *v != o.v {
			t.Fatalf("%s = %v, encoding/json reads %v", o.name, o.v, v)
		}
	}
	if tk.Has&HasSeq != 0 {
		var n json.Number
		if err := json.Unmarshal(m["seq"], &n); err != nil {
			t.Fatalf("seq: encoding/json: %v", err)
		}
		if v, err := strconv.ParseInt(n.String(), 10, 64); err != nil || v != tk.Seq {
			t.Fatalf("seq %d, encoding/json reads %s", tk.Seq, n)
		}
	}
	if s, ok := str("ts"); ok {
		if want, err := time.Parse(time.RFC3339Nano, s); err == nil && !want.Equal(tk.TS) {
			t.Fatalf("ts %v, time.Parse reads %v", tk.TS, want)
		}
	}
}

// strictRFC3339 is the form parseRFC3339 takes. time.Parse also takes
// offsets of 24 hours or more, which RFC 3339 does not allow.
var strictRFC3339 = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]([01]\d|2[0-3]):[0-5]\d)$`)

// FuzzParseRFC3339 checks the fast timestamp parser against time.Parse: it
// accepts only what time.Parse accepts, with the same instant, and accepts
// everything of the strict RFC 3339 form that time.Parse accepts.
func FuzzParseRFC3339(f *testing.F) {
	for _, s := range []string{
		"2026-01-02T15:04:05Z", "2026-01-02T15:04:05.123456789+05:30", "2026-02-29T00:00:00Z",
		"2026-01-02T15:04:05.1234567891-00:00", "2026-01-02T24:00:00Z", "2026-01-02T15:04:05+24:00",
		"2026-01-02T5:04:05Z", "2026-01-02T15:04:05,5Z", "0000-01-01T00:00:00Z",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := parseRFC3339([]byte(s))
		want, err := time.Parse(time.RFC3339Nano, s)
		switch {
		case ok && err != nil:
			t.Fatalf("accepted %q, which time.Parse rejects: %v", s, err)
		case ok && (!got.Equal(want) || got.Location() != time.UTC):
			t.Fatalf("parsed %q as %v, time.Parse as %v", s, got, want)
		case !ok && err == nil && strictRFC3339.MatchString(s):
			t.Fatalf("rejected %q, which time.Parse reads as %v", s, want)
		}
	})
}
