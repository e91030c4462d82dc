package secret

import (
	"fmt"
	"io"
	"os"
	"strings"
)

// Redacted is what every rendering of a non-empty Secret prints.
const Redacted = "[redacted]"

// maxFileSize bounds FromFile: a password, a key passphrase or a bearer
// token fits easily, a mistaken path such as /dev/zero does not.
const maxFileSize = 64 << 10

// Secret holds a sensitive string. Every way of rendering it (fmt verbs,
// String, GoString, text, JSON and zap encoding) prints [Redacted]; only
// Reveal returns the value. An empty Secret renders as "" so that "not set"
// stays visible in configuration dumps.
//
// The value sits behind a pointer on purpose: fmt cannot call methods on
// unexported struct fields and prints them by reflection, and for a pointer
// nested in a struct it prints the address, never the pointee. So a Secret
// stays hidden even inside an unexported field of a struct printed with %+v.
//
// The zero value is an empty Secret. Secrets compare equal with == only when
// they are copies of one another; compare Reveal() results instead.
type Secret struct {
	v *string
}

// New wraps s. An empty s gives an empty Secret.
func New(s string) Secret {
	if s == "" {
		return Secret{}
	}
	return Secret{v: &s}
}

// FromFile reads a secret from the file at path, as mounted by Kubernetes
// or Docker secrets, trimming trailing line breaks. An empty file (after
// trimming) or one larger than 64 KiB is an error; errors name the path but
// never the content.
func FromFile(path string) (Secret, error) {
	f, err := os.Open(path)
	if err != nil {
		return Secret{}, fmt.Errorf("reading secret file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return Secret{}, fmt.Errorf("reading secret file: %w", err)
	}
	if len(b) > maxFileSize {
		return Secret{}, fmt.Errorf("secret file %s is larger than %d bytes", path, maxFileSize)
	}
	s := strings.TrimRight(string(b), "\r\n")
	if s == "" {
		return Secret{}, fmt.Errorf("secret file %s is empty", path)
	}
	return New(s), nil
}

// Reveal returns the secret value. Call it only where the value leaves the
// process for its intended recipient (an authentication exchange, a
// connection string handed to a driver), never for logging.
func (s Secret) Reveal() string {
	if s.v == nil {
		return ""
	}
	return *s.v
}

// IsZero reports whether the Secret is empty.
func (s Secret) IsZero() bool { return s.v == nil || *s.v == "" }

func (s Secret) render() string {
	if s.IsZero() {
		return ""
	}
	return Redacted
}

// String returns [Redacted], or "" for an empty Secret.
func (s Secret) String() string { return s.render() }

// GoString is used by %#v; it returns the quoted redacted form.
func (s Secret) GoString() string { return fmt.Sprintf("%q", s.render()) }

// Format makes every fmt verb (%v, %+v, %#v, %s, %q, %x, %d, ...) print the
// redacted form, so no verb can reach the underlying value.
func (s Secret) Format(f fmt.State, verb rune) {
	switch {
	case verb == 'q', verb == 'v' && f.Flag('#'):
		fmt.Fprintf(f, "%q", s.render())
	default:
		io.WriteString(f, s.render())
	}
}

// MarshalText returns the redacted form; encoding/json, zap's reflection
// encoder and other text encoders use it, so structs holding a Secret can be
// serialised safely.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.render()), nil }

// UnmarshalText sets the Secret from text, which makes it loadable by
// caarlos0/env and other decoders of environment or configuration.
func (s *Secret) UnmarshalText(text []byte) error {
	*s = New(string(text))
	return nil
}
