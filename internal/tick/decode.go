package tick

import (
	"errors"
	"fmt"
	"math"
	"time"
	"unicode/utf8"
)

// Limits bound what the decoder accepts from a topic it does not control.
// Records outside them are dead-lettered, never written.
type Limits struct {
	MaxRecordBytes int       `env:"MDS_TICK_MAX_RECORD_BYTES" help:"largest record value decoded, in bytes; larger records are dead-lettered unparsed (reason too_large)"`
	MaxSymbolLen   int       `env:"MDS_TICK_MAX_SYMBOL_LEN" help:"longest symbol accepted, in UTF-8 bytes"`
	MaxVenueLen    int       `env:"MDS_TICK_MAX_VENUE_LEN" help:"longest venue accepted, in UTF-8 bytes"`
	MinTime        time.Time `env:"MDS_TICK_MIN_TIME" help:"earliest tick time accepted (RFC 3339, inclusive)"`
	MaxTime        time.Time `env:"MDS_TICK_MAX_TIME" help:"tick times must be before this (RFC 3339, exclusive)"`
	// MaxFuture rejects ticks later than now + MaxFuture: with one chunk
	// per day, junk times spread over decades would each create a chunk.
	// The past is bounded by MinTime only, so backfill stays possible.
	MaxFuture   time.Duration `env:"MDS_TICK_MAX_FUTURE" help:"tick times later than now plus this are invalid (clock skew allowed for the future; 0: no such limit, only MDS_TICK_MAX_TIME)"`
	MaxAbsPrice float64       `env:"MDS_TICK_MAX_ABS_PRICE" help:"largest absolute price, bid or ask accepted; beyond it a tick is invalid"`
}

// DefaultLimits returns the documented defaults: 64 KiB records, 32-byte
// symbols, 16-byte venues, times in [1990-01-01, 2100-01-01) UTC and at
// most 24 hours ahead of now, and absolute prices up to 1e12.
func DefaultLimits() Limits {
	return Limits{
		MaxRecordBytes: 64 << 10,
		MaxSymbolLen:   32,
		MaxVenueLen:    16,
		MinTime:        time.Date(1990, 1, 1, 0, 0, 0, 0, time.UTC),
		MaxTime:        time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC),
		MaxFuture:      24 * time.Hour,
		MaxAbsPrice:    1e12,
	}
}

// Validate reports every setting out of range, naming its variable.
func (l Limits) Validate() error {
	var errs []error
	if l.MaxRecordBytes <= 0 {
		errs = append(errs, errors.New("MDS_TICK_MAX_RECORD_BYTES must be > 0"))
	}
	if l.MaxSymbolLen <= 0 {
		errs = append(errs, errors.New("MDS_TICK_MAX_SYMBOL_LEN must be > 0"))
	}
	if l.MaxVenueLen <= 0 {
		errs = append(errs, errors.New("MDS_TICK_MAX_VENUE_LEN must be > 0"))
	}
	if !l.MinTime.Before(l.MaxTime) {
		errs = append(errs, errors.New("MDS_TICK_MIN_TIME must be before MDS_TICK_MAX_TIME"))
	}
	if l.MaxFuture < 0 {
		errs = append(errs, errors.New("MDS_TICK_MAX_FUTURE must be >= 0"))
	}
	if !(l.MaxAbsPrice > 0) || math.IsInf(l.MaxAbsPrice, 0) {
		errs = append(errs, errors.New("MDS_TICK_MAX_ABS_PRICE must be a finite number > 0"))
	}
	return errors.Join(errs...)
}

// DecodeError is why a record value is not a tick. Reason is ReasonDecode,
// ReasonInvalid or ReasonTooLarge, ready to label a dead letter.
type DecodeError struct {
	Reason string
	Msg    string
}

func (e *DecodeError) Error() string { return e.Reason + ": " + e.Msg }

const (
	// maxDepth is the deepest nesting of objects and arrays accepted,
	// counting the tick object itself.
	maxDepth = 16
	// maxInterned bounds the decoder's symbol and venue table; when it is
	// full the table is cleared, so a stream of random symbols costs
	// allocations but never unbounded memory.
	maxInterned = 1 << 14
)

// Decoder turns record values into Ticks. It keeps scratch space and a table
// of interned symbol and venue strings between calls, so that decoding a
// stream of ticks over a steady set of symbols does not allocate. A Decoder
// is not safe for concurrent use: use one per goroutine.
type Decoder struct {
	lim      Limits
	scratch  []byte
	interned map[string]string
	now      func() time.Time
	// future is a past value of now + MaxFuture. The true bound only grows,
	// so a time before it is before the true bound: the clock is read only
	// for a time at or after it (once a MaxFuture, in a steady feed).
	future time.Time
}

// NewDecoder returns a decoder enforcing l, which should have passed
// Validate.
func NewDecoder(l Limits) *Decoder {
	return &Decoder{lim: l, interned: make(map[string]string), now: time.Now}
}

// field names a member of the tick object.
type field uint8

const (
	fieldTS field = iota
	fieldSymbol
	fieldVenue
	fieldPrice
	fieldSize
	fieldBid
	fieldAsk
	fieldBidSize
	fieldAskSize
	fieldSeq
	fieldUnknown
)

var fieldNames = [...]string{"ts", "symbol", "venue", "price", "size", "bid", "ask", "bid_size", "ask_size", "seq"}

func lookupField(key []byte) field {
	switch string(key) {
	case "ts":
		return fieldTS
	case "symbol":
		return fieldSymbol
	case "venue":
		return fieldVenue
	case "price":
		return fieldPrice
	case "size":
		return fieldSize
	case "bid":
		return fieldBid
	case "ask":
		return fieldAsk
	case "bid_size":
		return fieldBidSize
	case "ask_size":
		return fieldAskSize
	case "seq":
		return fieldSeq
	}
	return fieldUnknown
}

// Decode parses value into *t, overwriting all of it. On failure it returns a
// *DecodeError and *t is undefined. The rules are in the package
// documentation.
func (d *Decoder) Decode(value []byte, t *Tick) error {
	*t = Tick{}
	if len(value) > d.lim.MaxRecordBytes {
		return &DecodeError{ReasonTooLarge, fmt.Sprintf("record of %d bytes exceeds MDS_TICK_MAX_RECORD_BYTES (%d)", len(value), d.lim.MaxRecordBytes)}
	}
	s := scanner{b: value}
	seen, err := d.members(&s, t)
	if err != nil {
		return &DecodeError{ReasonDecode, err.Error()}
	}
	if s.invalid != "" {
		return &DecodeError{ReasonInvalid, s.invalid}
	}
	switch {
	case seen&(1<<fieldTS) == 0:
		return &DecodeError{ReasonInvalid, "missing ts"}
	case t.Symbol == "":
		return &DecodeError{ReasonInvalid, "missing or empty symbol"}
	case seen&(1<<fieldPrice) == 0:
		return &DecodeError{ReasonInvalid, "missing price"}
	}
	return nil
}

// members scans the whole value as one JSON object, decoding the known
// members into t. It returns the set of known members that were present and
// not null, and a syntax or shape error; validation failures are left in
// s.invalid so that malformed input is always reported as such.
func (d *Decoder) members(s *scanner, t *Tick) (seen uint16, err error) {
	var present uint16 // members seen at all, null or not
	s.ws()
	if !s.eat('{') {
		return 0, s.fail("not a JSON object")
	}
	s.ws()
	if !s.eat('}') {
		for {
			key, esc, err := s.key()
			if err != nil {
				return 0, err
			}
			if esc {
				var ok bool
				if d.scratch, ok = unescape(d.scratch[:0], key); ok {
					key = d.scratch
				}
			}
			f := lookupField(key)
			if f == fieldUnknown {
				if err := s.skip(); err != nil {
					return 0, err
				}
			} else {
				if present&(1<<f) != 0 {
					s.reject("duplicate member " + fieldNames[f])
				}
				present |= 1 << f
				set, err := d.member(s, f, t)
				if err != nil {
					return 0, err
				}
				if set {
					seen |= 1 << f
				}
			}
			s.ws()
			if s.eat('}') {
				break
			}
			if !s.eat(',') {
				return 0, s.fail("expected ',' or '}' after object member")
			}
			s.ws()
		}
	}
	s.ws()
	if s.pos != len(s.b) {
		return 0, s.fail("data after the tick object")
	}
	return seen, nil
}

// member decodes the value of known member f into t. It reports whether the
// member had a value (was not null). Only syntax and type errors are
// returned; a well-typed value that breaks a rule is recorded in s.
func (d *Decoder) member(s *scanner, f field, t *Tick) (bool, error) {
	k, raw, esc, err := s.scalar()
	if err != nil {
		return false, err
	}
	if k == kindNull {
		return false, nil
	}
	name := fieldNames[f]
	if k == kindString && esc {
		raw = d.unescaped(s, name, raw)
	}
	switch f {
	case fieldTS:
		switch k {
		case kindNumber, kindString:
			if n, ok := parseInt64(raw); ok {
				d.checkTime(s, time.Unix(0, n).UTC(), t)
			} else if ts, ok := parseRFC3339(raw); ok && k == kindString {
				d.checkTime(s, ts, t)
			} else {
				s.reject("ts is neither RFC 3339 nor integer epoch nanoseconds within 64 bits")
			}
		default:
			return false, s.fail("ts must be a string or a number")
		}
	case fieldSymbol, fieldVenue:
		if k != kindString {
			return false, s.fail(name + " must be a string")
		}
		max := d.lim.MaxSymbolLen
		if f == fieldVenue {
			max = d.lim.MaxVenueLen
		}
		switch {
		case len(raw) > max:
			s.reject(fmt.Sprintf("%s longer than %d bytes", name, max))
		case !printable(raw):
			s.reject(name + " is not valid UTF-8 without control characters")
		case f == fieldSymbol:
			t.Symbol = d.intern(raw)
		case len(raw) > 0: // an empty venue is no venue
			t.Venue = d.intern(raw)
			t.Has |= HasVenue
		}
	case fieldSeq:
		if k != kindNumber && k != kindString {
			return false, s.fail("seq must be a number")
		}
		n, ok := parseInt64(raw)
		if !ok {
			s.reject("seq is not an integer within 64 bits")
			return true, nil
		}
		t.Seq = n
		t.Has |= HasSeq
	default: // the numbers
		if k != kindNumber {
			return false, s.fail(name + " must be a number")
		}
		v, ok := parseFloat(raw)
		if !ok {
			s.reject(name + " is not finite")
			return true, nil
		}
		switch f {
		case fieldPrice, fieldBid, fieldAsk:
			if math.Abs(v) > d.lim.MaxAbsPrice {
				s.reject(fmt.Sprintf("%s beyond MDS_TICK_MAX_ABS_PRICE (%g)", name, d.lim.MaxAbsPrice))
			}
		default:
			if v < 0 {
				s.reject(name + " is negative")
			}
		}
		switch f {
		case fieldPrice:
			t.Price = v
		case fieldSize:
			t.Size, t.Has = v, t.Has|HasSize
		case fieldBid:
			t.Bid, t.Has = v, t.Has|HasBid
		case fieldAsk:
			t.Ask, t.Has = v, t.Has|HasAsk
		case fieldBidSize:
			t.BidSize, t.Has = v, t.Has|HasBidSize
		case fieldAskSize:
			t.AskSize, t.Has = v, t.Has|HasAskSize
		}
	}
	return true, nil
}

// unescaped decodes the escapes of a string member into the scratch buffer.
func (d *Decoder) unescaped(s *scanner, name string, raw []byte) []byte {
	var ok bool
	d.scratch, ok = unescape(d.scratch[:0], raw)
	if !ok {
		s.reject(name + " holds an unpaired UTF-16 surrogate")
	}
	return d.scratch
}

func (d *Decoder) checkTime(s *scanner, ts time.Time, t *Tick) {
	if ts.Before(d.lim.MinTime) || !ts.Before(d.lim.MaxTime) {
		s.reject("ts outside [MDS_TICK_MIN_TIME, MDS_TICK_MAX_TIME)")
		return
	}
	if d.lim.MaxFuture > 0 && !ts.Before(d.future) {
		d.future = d.now().Add(d.lim.MaxFuture)
		if ts.After(d.future) {
			s.reject("ts later than now + MDS_TICK_MAX_FUTURE")
			return
		}
	}
	t.TS = ts
}

// intern returns b as a string, shared with earlier calls that saw the same
// bytes.
func (d *Decoder) intern(b []byte) string {
	if v, ok := d.interned[string(b)]; ok {
		return v
	}
	if len(d.interned) >= maxInterned {
		clear(d.interned)
	}
	v := string(b)
	d.interned[v] = v
	return v
}

// printable reports whether b is valid UTF-8 free of control characters
// (U+0000–U+001F, U+007F), which no symbol or venue contains and NUL in
// particular cannot be stored in PostgreSQL text.
func printable(b []byte) bool {
	for i := 0; i < len(b); {
		c := b[i]
		if c < utf8.RuneSelf {
			if c < 0x20 || c == 0x7f {
				return false
			}
			i++
			continue
		}
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n == 1 {
			return false
		}
		i += n
	}
	return true
}
