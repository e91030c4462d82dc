package tick

import (
	"math"
	"strconv"
	"time"
	"unicode/utf8"
)

// AppendJSON appends the canonical JSON form of t to dst: the members in the
// order of the contract, ts as RFC 3339 in UTC with nanoseconds as needed,
// optional members only when their bit is set in t.Has. Decode reads it back
// to an identical Tick when t is one Decode could have produced. A
// non-finite number is written as null, and strings are escaped so that the
// output is valid JSON whatever t holds; t.TS must lie in years 0 to 9999.
func AppendJSON(dst []byte, t *Tick) []byte {
	dst = append(dst, `{"ts":"`...)
	dst = t.TS.UTC().AppendFormat(dst, time.RFC3339Nano)
	dst = append(dst, `","symbol":`...)
	dst = appendString(dst, t.Symbol)
	if t.Has&HasVenue != 0 {
		dst = append(dst, `,"venue":`...)
		dst = appendString(dst, t.Venue)
	}
	dst = append(dst, `,"price":`...)
	dst = appendFloat(dst, t.Price)
	for _, o := range [...]struct {
		bit  Field
		name string
		v    float64
	}{
		{HasSize, `,"size":`, t.Size},
		{HasBid, `,"bid":`, t.Bid},
		{HasAsk, `,"ask":`, t.Ask},
		{HasBidSize, `,"bid_size":`, t.BidSize},
		{HasAskSize, `,"ask_size":`, t.AskSize},
	} {
		if t.Has&o.bit != 0 {
			dst = append(dst, o.name...)
			dst = appendFloat(dst, o.v)
		}
	}
	if t.Has&HasSeq != 0 {
		dst = append(dst, `,"seq":`...)
		dst = strconv.AppendInt(dst, t.Seq, 10)
	}
	return append(dst, '}')
}

// appendFloat writes the shortest decimal that reads back as f, in the same
// notation as encoding/json.
func appendFloat(dst []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(dst, "null"...)
	}
	format := byte('f')
	if a := math.Abs(f); a != 0 && (a < 1e-6 || a >= 1e21) {
		format = 'e'
	}
	return strconv.AppendFloat(dst, f, format, -1, 64)
}

// appendString writes s as a JSON string. Control characters are escaped and
// invalid UTF-8 becomes U+FFFD.
func appendString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				dst = append(dst, '\\', c)
			case c < 0x20:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				dst = append(dst, c)
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			dst = append(dst, `\ufffd`...)
		} else {
			dst = append(dst, s[i:i+n]...)
		}
		i += n
	}
	return append(dst, '"')
}
