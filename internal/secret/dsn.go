package secret

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// unparseableDSN replaces a connection string that cannot be scanned: when
// the structure is unclear, so is where the password is.
const unparseableDSN = "[redacted: unparseable connection string]"

// secretKeys are the libpq settings whose values are secrets.
var secretKeys = map[string]bool{"password": true, "sslpassword": true}

// span is a byte range [start, end) of a connection string.
type span struct{ start, end int }

// dsnLayout is where the secrets of a PostgreSQL connection string sit. It
// is found with the rules libpq and pgx use to parse one, so what RedactDSN
// hides is what the driver would send as the password.
type dsnLayout struct {
	isURL       bool
	hostStart   int    // URL: the first byte after "postgres://"
	at          int    // URL: the '@' ending the user info, or -1
	secrets     []span // raw values of password settings (quotes included)
	hasPassword bool   // a password is set anywhere in the string
}

// RedactDSN returns dsn, a PostgreSQL URL (postgres://user:pw@host/db?...)
// or keyword/value string (host=... password=...), with the values of
// password and sslpassword replaced by [Redacted]. Hosts, database, user
// and TLS settings stay visible, which is what logs and /readyz need. A
// string whose structure cannot be scanned is replaced whole.
func RedactDSN(dsn string) string {
	l, err := scanDSN(dsn)
	if err != nil {
		return unparseableDSN
	}
	var b strings.Builder
	last := 0
	for _, s := range l.secrets {
		b.WriteString(dsn[last:s.start])
		b.WriteString(Redacted)
		last = s.end
	}
	b.WriteString(dsn[last:])
	return b.String()
}

// CheckDSN reports whether the secrets of dsn can be located, that is
// whether RedactDSN can hide them. A connection string it refuses, such as
// a URL with a raw '@' or '/' in the password, would be split by the driver
// at a place that puts part of the password in the host or database name,
// where logs and errors show it. The error describes the structure only.
func CheckDSN(dsn string) error {
	_, err := scanDSN(dsn)
	return err
}

// WithPassword returns dsn with the password pw added, in the form dsn
// already uses: percent-encoded in the user info of a URL
// (postgres://user:pw@host, or postgres://:pw@host when the user comes
// from elsewhere), or a quoted password='...' setting put in front of a
// keyword/value string. It refuses a dsn that already sets a password, so a
// password never comes from two places. Errors never quote dsn or pw.
func WithPassword(dsn string, pw Secret) (string, error) {
	if pw.IsZero() {
		return "", errors.New("adding password to connection string: password is empty")
	}
	l, err := scanDSN(dsn)
	if err != nil {
		return "", fmt.Errorf("adding password to connection string: %w", err)
	}
	if l.hasPassword {
		return "", errors.New("adding password to connection string: it already contains a password")
	}
	if !l.isURL {
		// In front, the quoted setting cannot be changed by how dsn ends
		// (an empty "key=" takes the next word, a trailing '\' escapes it).
		setting := "password=" + quoteKeywordValue(pw.Reveal())
		if dsn == "" {
			return setting, nil
		}
		return setting + " " + dsn, nil
	}
	enc := ":" + percentEncode(pw.Reveal())
	if l.at < 0 {
		return dsn[:l.hostStart] + enc + "@" + dsn[l.hostStart:], nil
	}
	return dsn[:l.at] + enc + dsn[l.at:], nil
}

// scanDSN locates the secrets of dsn. Its errors describe the structure
// only, never the content.
func scanDSN(dsn string) (dsnLayout, error) {
	if strings.IndexByte(dsn, 0) >= 0 {
		return dsnLayout{}, errors.New("connection string contains a NUL byte")
	}
	for _, scheme := range []string{"postgresql://", "postgres://"} {
		if strings.HasPrefix(dsn, scheme) {
			return scanURL(dsn, len(scheme))
		}
	}
	return scanKeywordValue(dsn)
}

// scanURL follows libpq: the user info ends at the first '@' met before any
// '/', the password is what follows its first ':', and the query starts at
// the first '?' outside an IPv6 literal.
func scanURL(dsn string, start int) (dsnLayout, error) {
	l := dsnLayout{isURL: true, hostStart: start, at: -1}
	rest := start
	if i := strings.IndexAny(dsn[start:], "@/"); i >= 0 && dsn[start+i] == '@' {
		l.at = start + i
		if c := strings.IndexByte(dsn[start:l.at], ':'); c >= 0 {
			l.secrets = append(l.secrets, span{start + c + 1, l.at})
			l.hasPassword = true
		}
		rest = l.at + 1
	}
	query := len(dsn)
	for i, inBrackets := rest, false; i < len(dsn); i++ {
		switch dsn[i] {
		case '[':
			inBrackets = true
		case ']':
			inBrackets = false
		case '?':
			if !inBrackets {
				query = i
				i = len(dsn)
			}
		}
	}
	// An '@' left between the user info and the query means the user info
	// itself was malformed (a raw '/' or '@' in a password): libpq would
	// reject it, and where the password ends is anyone's guess.
	if strings.IndexByte(dsn[rest:query], '@') >= 0 {
		return dsnLayout{}, errors.New("malformed user info in URL")
	}
	for pos := query + 1; pos < len(dsn); {
		end := strings.IndexByte(dsn[pos:], '&')
		if end < 0 {
			end = len(dsn)
		} else {
			end += pos
		}
		rawKey, _, found := strings.Cut(dsn[pos:end], "=")
		if !found {
			return dsnLayout{}, errors.New("URL query parameter without '='")
		}
		key, err := url.PathUnescape(strings.Trim(rawKey, " "))
		if err != nil {
			return dsnLayout{}, errors.New("malformed escape in URL query key")
		}
		if secretKeys[key] {
			l.secrets = append(l.secrets, span{pos + len(rawKey) + 1, end})
			l.hasPassword = l.hasPassword || key == "password"
		}
		pos = end + 1
	}
	return l, nil
}

const kvSpace = " \t\n\r\v\f"

// scanKeywordValue follows libpq's conninfo rules: key, optional blanks,
// '=', optional blanks, then a value that is either single-quoted or runs
// to the next blank, a backslash escaping the next byte in both.
func scanKeywordValue(dsn string) (dsnLayout, error) {
	var l dsnLayout
	pos := 0
	skip := func() {
		for pos < len(dsn) && strings.IndexByte(kvSpace, dsn[pos]) >= 0 {
			pos++
		}
	}
	for skip(); pos < len(dsn); skip() {
		eq := strings.IndexByte(dsn[pos:], '=')
		if eq < 0 {
			return dsnLayout{}, errors.New("keyword without '='")
		}
		key := strings.Trim(dsn[pos:pos+eq], kvSpace)
		if key == "" || strings.ContainsAny(key, kvSpace) {
			return dsnLayout{}, errors.New("malformed keyword")
		}
		pos += eq + 1
		afterEq := pos
		skip()
		start := pos
		if pos < len(dsn) && dsn[pos] == '\'' {
			for pos++; pos < len(dsn) && dsn[pos] != '\''; pos++ {
				if dsn[pos] == '\\' {
					pos++
				}
			}
			if pos >= len(dsn) {
				return dsnLayout{}, errors.New("unterminated quoted value")
			}
			pos++ // the closing quote
		} else {
			for ; pos < len(dsn) && strings.IndexByte(kvSpace, dsn[pos]) < 0; pos++ {
				if dsn[pos] == '\\' {
					pos++
				}
			}
			pos = min(pos, len(dsn))
			// "sslmode= password=x" gives sslmode the value "password=x"
			// in libpq: almost surely a typo, and one that would show the
			// password as another setting's value.
			if start > afterEq && strings.IndexByte(dsn[start:pos], '=') >= 0 {
				return dsnLayout{}, errors.New("a keyword with nothing after '=' is followed by another setting (write key='' for an empty value)")
			}
		}
		if secretKeys[key] {
			l.secrets = append(l.secrets, span{start, pos})
			l.hasPassword = l.hasPassword || key == "password"
		}
	}
	return l, nil
}

// quoteKeywordValue quotes s for a keyword/value connection string.
func quoteKeywordValue(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// percentEncode escapes every byte of s except RFC 3986 unreserved ones,
// which libpq decodes back to s in any URL component.
func percentEncode(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}
