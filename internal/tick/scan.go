package tick

import (
	"fmt"
	"math"
	"strconv"
	"time"
	"unicode/utf16"
	"unicode/utf8"
)

// scanner walks one JSON text in place. It validates the RFC 8259 grammar of
// everything it passes over, including members it skips, and never copies:
// tokens are returned as sub-slices of the input.
type scanner struct {
	b       []byte
	pos     int
	invalid string // the first rule a well-formed value broke
}

// kind is the type of a scalar token.
type kind uint8

const (
	kindNull kind = iota
	kindString
	kindNumber
	kindOther // true, false, an object or an array
)

func (s *scanner) fail(msg string) error {
	return fmt.Errorf("at byte %d: %s", s.pos, msg)
}

// reject records that a well-formed value broke a rule; the first one wins.
func (s *scanner) reject(msg string) {
	if s.invalid == "" {
		s.invalid = msg
	}
}

func (s *scanner) ws() {
	for s.pos < len(s.b) {
		switch s.b[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

func (s *scanner) eat(c byte) bool {
	if s.pos < len(s.b) && s.b[s.pos] == c {
		s.pos++
		return true
	}
	return false
}

// key scans an object member's name and the ':' after it, leaving s at the
// start of the value.
func (s *scanner) key() (raw []byte, esc bool, err error) {
	if s.pos >= len(s.b) || s.b[s.pos] != '"' {
		return nil, false, s.fail("expected a member name")
	}
	if raw, esc, err = s.str(); err != nil {
		return nil, false, err
	}
	s.ws()
	if !s.eat(':') {
		return nil, false, s.fail("expected ':' after member name")
	}
	s.ws()
	return raw, esc, nil
}

// scalar scans the value at s. For a string, raw is its content between the
// quotes and esc tells whether it holds escapes; for a number, raw is the
// literal. Objects, arrays and booleans are reported as kindOther without
// being consumed: the caller treats them as a type error.
func (s *scanner) scalar() (k kind, raw []byte, esc bool, err error) {
	if s.pos >= len(s.b) {
		return 0, nil, false, s.fail("unexpected end of input")
	}
	switch c := s.b[s.pos]; {
	case c == '"':
		raw, esc, err = s.str()
		return kindString, raw, esc, err
	case c == 'n':
		return kindNull, nil, false, s.literal("null")
	case c == '-' || c >= '0' && c <= '9':
		raw, err = s.number()
		return kindNumber, raw, false, err
	}
	return kindOther, nil, false, nil
}

// skip scans over one value of any type, allowing objects and arrays nested
// to maxDepth counting the enclosing tick object. It keeps one bit of state
// per level, so hostile nesting costs nothing before it is refused.
func (s *scanner) skip() error {
	var objects uint32 // bit i set: the container at depth i is an object
	depth := 0         // containers open inside the skipped value
value:
	for {
		if s.pos >= len(s.b) {
			return s.fail("unexpected end of input")
		}
		switch c := s.b[s.pos]; c {
		case '{', '[':
			if depth+2 > maxDepth {
				return s.fail(fmt.Sprintf("nested deeper than %d", maxDepth))
			}
			s.pos++
			s.ws()
			if s.eat(c + 2) { // '{'+2 == '}', '['+2 == ']'
				break
			}
			depth++
			if c == '{' {
				objects |= 1 << depth
				if _, _, err := s.key(); err != nil {
					return err
				}
			} else {
				objects &^= 1 << depth
				s.ws()
			}
			continue value
		case '"':
			if _, _, err := s.str(); err != nil {
				return err
			}
		case 't':
			if err := s.literal("true"); err != nil {
				return err
			}
		case 'f':
			if err := s.literal("false"); err != nil {
				return err
			}
		case 'n':
			if err := s.literal("null"); err != nil {
				return err
			}
		default:
			if _, err := s.number(); err != nil {
				return err
			}
		}
		// A value is complete: close containers until one continues.
		for depth > 0 {
			s.ws()
			inObject := objects&(1<<depth) != 0
			if s.eat(',') {
				s.ws()
				if inObject {
					if _, _, err := s.key(); err != nil {
						return err
					}
				}
				continue value
			}
			if inObject && !s.eat('}') || !inObject && !s.eat(']') {
				return s.fail("expected ',' or the end of an object or array")
			}
			depth--
		}
		return nil
	}
}

func (s *scanner) literal(lit string) error {
	if len(s.b)-s.pos < len(lit) || string(s.b[s.pos:s.pos+len(lit)]) != lit {
		return s.fail("invalid literal")
	}
	s.pos += len(lit)
	return nil
}

// plain marks the bytes that stand for themselves inside a JSON string.
var plain = func() (t [256]bool) {
	for c := 0x20; c < 256; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// str scans a string at s, which is at its opening quote. It checks the
// escapes' syntax but does not decode them.
func (s *scanner) str() (raw []byte, esc bool, err error) {
	start := s.pos + 1
	for i := start; i < len(s.b); i++ {
		c := s.b[i]
		if plain[c] {
			continue
		}
		switch {
		case c == '"':
			s.pos = i + 1
			return s.b[start:i], esc, nil
		case c == '\\':
			esc = true
			i++
			if i >= len(s.b) {
				break
			}
			switch s.b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if len(s.b)-i <= 4 || hex4(s.b[i+1:i+5]) < 0 {
					s.pos = i
					return nil, false, s.fail(`invalid \u escape`)
				}
				i += 4
			default:
				s.pos = i
				return nil, false, s.fail("invalid escape")
			}
		case c < 0x20:
			s.pos = i
			return nil, false, s.fail("control character in string")
		}
	}
	s.pos = len(s.b)
	return nil, false, s.fail("unterminated string")
}

// number scans a number literal at s.
func (s *scanner) number() (raw []byte, err error) {
	b, i := s.b, s.pos
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		i = digits(b, i)
	default:
		s.pos = i
		return nil, s.fail("invalid value")
	}
	if i < len(b) && b[i] == '.' {
		if j := digits(b, i+1); j > i+1 {
			i = j
		} else {
			s.pos = j
			return nil, s.fail("digit expected after decimal point")
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if j := digits(b, i); j > i {
			i = j
		} else {
			s.pos = j
			return nil, s.fail("digit expected in exponent")
		}
	}
	raw, s.pos = b[s.pos:i], i
	return raw, nil
}

// digits returns the index of the first non-digit at or after i.
func digits(b []byte, i int) int {
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	return i
}

// hex4 decodes four hex digits, or returns -1.
func hex4(b []byte) rune {
	var r rune
	for _, c := range b[:4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return -1
		}
		r = r<<4 | rune(c)
	}
	return r
}

// unescape appends the decoded content of a string that str accepted. It
// reports false, writing U+FFFD instead, when a \u escape is an unpaired
// UTF-16 surrogate.
func unescape(dst, raw []byte) ([]byte, bool) {
	ok := true
	for i := 0; i < len(raw); {
		c := raw[i]
		if c != '\\' {
			dst = append(dst, c)
			i++
			continue
		}
		c = raw[i+1]
		i += 2
		switch c {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r := hex4(raw[i:])
			i += 4
			if utf16.IsSurrogate(r) {
				r2 := rune(-1)
				if len(raw)-i >= 6 && raw[i] == '\\' && raw[i+1] == 'u' {
					r2 = hex4(raw[i+2:])
				}
				if r = utf16.DecodeRune(r, r2); r == utf8.RuneError {
					ok = false
				} else {
					i += 6
				}
			}
			dst = utf8.AppendRune(dst, r)
		default: // '"', '\\', '/'
			dst = append(dst, c)
		}
	}
	return dst, ok
}

// parseInt64 parses a JSON integer literal (no leading zeros, no '+') that
// fits in an int64.
func parseInt64(b []byte) (int64, bool) {
	neg := len(b) > 0 && b[0] == '-'
	d := b
	if neg {
		d = b[1:]
	}
	if len(d) == 0 || len(d) > 19 || d[0] == '0' && len(d) > 1 {
		return 0, false
	}
	var u uint64
	for _, c := range d {
		if c < '0' || c > '9' {
			return 0, false
		}
		u = u*10 + uint64(c-'0') // 19 digits cannot overflow a uint64
	}
	if neg {
		if u > 1<<63 {
			return 0, false
		}
		return -int64(u), true
	}
	if u > math.MaxInt64 {
		return 0, false
	}
	return int64(u), true
}

// parseFloat converts a number literal that the scanner accepted. It reports
// false when the value is beyond the float64 range.
func parseFloat(b []byte) (float64, bool) {
	if f, ok := parseSimpleFloat(b); ok {
		return f, true
	}
	// The conversion does not allocate for literals up to 32 bytes:
	// ParseFloat does not retain its argument.
	f, err := strconv.ParseFloat(string(b), 64)
	return f, err == nil
}

// pow10 holds the powers of ten that a float64 represents exactly.
var pow10 = [...]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22}

// parseSimpleFloat converts the common literals, with at most 15 digits and
// no exponent, exactly: the digits as an integer below 2^53 and the power of
// ten are both exact, so one correctly rounded division gives the correctly
// rounded result, as strconv would. It reports false for other literals.
func parseSimpleFloat(b []byte) (float64, bool) {
	neg := b[0] == '-'
	if neg {
		b = b[1:]
	}
	var m uint64
	n, frac := 0, -1
	for i, c := range b {
		switch {
		case c >= '0' && c <= '9':
			m = m*10 + uint64(c-'0')
			n++
		case c == '.':
			frac = len(b) - i - 1
		default: // an exponent
			return 0, false
		}
	}
	if n > 15 {
		return 0, false
	}
	f := float64(m)
	if frac > 0 {
		f /= pow10[frac]
	}
	if neg {
		f = -f
	}
	return f, true
}

// parseRFC3339 parses YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM), exactly the
// strict form time.Parse(time.RFC3339Nano, ...) accepts on its fast path:
// upper-case T and Z, any number of fraction digits (truncated to
// nanoseconds), fields within their calendar ranges. The result is in UTC.
func parseRFC3339(b []byte) (time.Time, bool) {
	if len(b) < len("2006-01-02T15:04:05Z") || b[4] != '-' || b[7] != '-' || b[10] != 'T' || b[13] != ':' || b[16] != ':' {
		return time.Time{}, false
	}
	ok := true
	num := func(b []byte, max int) int {
		n := 0
		for _, c := range b {
			if c < '0' || c > '9' {
				ok = false
			}
			n = n*10 + int(c-'0')
		}
		if n > max {
			ok = false
		}
		return n
	}
	year := num(b[0:4], 9999)
	month := num(b[5:7], 12)
	day := num(b[8:10], 31)
	hour := num(b[11:13], 23)
	minute := num(b[14:16], 59)
	sec := num(b[17:19], 59)
	if !ok || month == 0 || day == 0 || day > daysIn(time.Month(month), year) {
		return time.Time{}, false
	}
	rest := b[19:]
	nsec := 0
	if len(rest) >= 2 && rest[0] == '.' && rest[1] >= '0' && rest[1] <= '9' {
		n := digits(rest, 1)
		scale := 100_000_000
		for _, c := range rest[1:n] {
			nsec += int(c-'0') * scale
			scale /= 10
		}
		rest = rest[n:]
	}
	offset := 0
	switch {
	case len(rest) == 1 && rest[0] == 'Z':
	case len(rest) == 6 && (rest[0] == '+' || rest[0] == '-') && rest[3] == ':':
		offset = (num(rest[1:3], 23)*60 + num(rest[4:6], 59)) * 60
		if rest[0] == '-' {
			offset = -offset
		}
	default:
		return time.Time{}, false
	}
	if !ok {
		return time.Time{}, false
	}
	t := time.Date(year, time.Month(month), day, hour, minute, sec, nsec, time.UTC)
	return t.Add(-time.Duration(offset) * time.Second), true
}

func daysIn(m time.Month, year int) int {
	if m == time.February {
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	}
	return 31 - int(m-1)%7%2
}
