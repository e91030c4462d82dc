package config

import (
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/caarlos0/env/v11"
)

// Setting describes one environment variable of a settings struct.
type Setting struct {
	Key     string // MDS_...
	Default string // the value the struct held before loading, formatted
	Help    string
	Secret  bool // never show its value
	kind    reflect.Type
}

var durationType = reflect.TypeOf(time.Duration(0))

// Load overrides the fields of *dst (a pointer to a settings struct) with
// the variables set in environ.
func Load(dst any, environ map[string]string) error {
	settings := Settings(dst)
	env2 := normalize(environ, settings)
	opts := env.Options{Environment: env2, FuncMap: parsers()}
	err := env.ParseWithOptions(dst, opts)
	if err == nil {
		return nil
	}
	// The library names struct fields, not variables: find which variables
	// fail by parsing them one at a time into a scratch copy.
	var bad []string
	for _, s := range settings {
		v, ok := env2[s.Key]
		if !ok {
			continue
		}
		scratch := reflect.New(reflect.TypeOf(dst).Elem()).Interface()
		one := env.Options{Environment: map[string]string{s.Key: v}, FuncMap: parsers()}
		if e := env.ParseWithOptions(scratch, one); e != nil {
			bad = append(bad, fmt.Sprintf("%s: %s", s.Key, cause(e, s.Secret)))
		}
	}
	if len(bad) == 0 {
		return fmt.Errorf("parsing environment: %w", err)
	}
	return errors.New("invalid setting " + strings.Join(bad, "; "))
}

// cause extracts the parse failure without echoing a secret value.
func cause(err error, secret bool) string {
	if secret {
		return "invalid value"
	}
	var pe env.ParseError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	var ne *strconv.NumError
	if errors.As(err, &ne) {
		return fmt.Sprintf("%q is not a valid %s", ne.Num, kindName(pe.Type))
	}
	return err.Error()
}

func kindName(t reflect.Type) string {
	switch {
	case t == nil:
		return "value"
	case t == durationType:
		return "duration"
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int32, reflect.Int64, reflect.Uint, reflect.Uint32, reflect.Uint64:
		return "whole number"
	case reflect.Float32, reflect.Float64:
		return "number"
	case reflect.Bool:
		return "boolean"
	}
	return t.String()
}

// normalize applies the original units and the empty-means-unset rule.
func normalize(environ map[string]string, settings []Setting) map[string]string {
	out := make(map[string]string, len(settings))
	for _, s := range settings {
		v, ok := environ[s.Key]
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		if v == "" {
			if s.kind != durationType {
				continue
			}
			v = "0" // the library skips empty values; for a duration empty means zero
		}
		if s.kind == durationType && strings.HasSuffix(s.Key, "_MS") && isNumber(v) {
			v += "ms"
		}
		out[s.Key] = v
	}
	return out
}

// isNumber reports whether s is a finite decimal number (not NaN or Inf).
func isNumber(s string) bool {
	f, err := strconv.ParseFloat(s, 64)
	return err == nil && !math.IsNaN(f) && !math.IsInf(f, 0)
}

func parsers() map[reflect.Type]env.ParserFunc {
	return map[reflect.Type]env.ParserFunc{
		durationType:          parseDuration,
		reflect.TypeOf(false): parseBool,
	}
}

// ParseDuration parses a Go duration or a bare number of seconds; empty is 0.
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, nil
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		if !(f >= 0 && f <= float64(1<<62)/float64(time.Second)) { // also NaN
			return 0, fmt.Errorf("%q is out of range", s)
		}
		return time.Duration(f * float64(time.Second)), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration (like 250ms, 6s, or a number of seconds)", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("%q is negative", s)
	}
	return d, nil
}

func parseDuration(s string) (any, error) { return ParseDuration(s) }

func parseBool(s string) (any, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "1", "t", "true", "yes", "y", "on":
		return true, nil
	case "0", "f", "false", "no", "n", "off":
		return false, nil
	}
	return nil, fmt.Errorf("%q is not a boolean (true/false)", s)
}

// Settings lists the variables of a settings struct (or a pointer to one),
// with the values it holds as defaults, sorted by name.
func Settings(v any) []Setting {
	var out []Setting
	walk(reflect.Indirect(reflect.ValueOf(v)), &out)
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

var secretType = reflect.TypeOf((*interface{ Reveal() string })(nil)).Elem()

func walk(v reflect.Value, out *[]Setting) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f, fv := t.Field(i), v.Field(i)
		if !f.IsExported() {
			continue
		}
		key, _, _ := strings.Cut(f.Tag.Get("env"), ",")
		if key == "" {
			if fv.Kind() == reflect.Struct {
				walk(fv, out)
			}
			continue
		}
		s := Setting{Key: key, Help: f.Tag.Get("help"), kind: f.Type,
			Secret: f.Type.Implements(secretType) || f.Tag.Get("secret") == "true"}
		switch d, ok := f.Tag.Lookup("docdefault"); {
		case s.Secret:
		case ok: // a default computed at run time, such as the host name
			s.Default = "(" + d + ")"
		default:
			s.Default = format(fv)
		}
		*out = append(*out, s)
	}
}

func format(v reflect.Value) string {
	if v.Type() == durationType {
		d := time.Duration(v.Int())
		if d == 0 {
			return ""
		}
		return d.String()
	}
	switch x := v.Interface().(type) {
	case time.Time:
		if x.IsZero() {
			return ""
		}
		return x.Format(time.RFC3339)
	case []string:
		return strings.Join(x, ",")
	case fmt.Stringer:
		return x.String()
	}
	if v.Kind() == reflect.String {
		return v.String()
	}
	return fmt.Sprint(v.Interface())
}

// WriteHelp prints the settings as an aligned table.
func WriteHelp(w io.Writer, settings []Setting) error {
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "  VARIABLE\tDEFAULT\tMEANING")
	for _, s := range settings {
		d := s.Default
		switch {
		case s.Secret:
			d = "(secret)"
		case d == "":
			d = "-"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", s.Key, d, s.Help)
	}
	return tw.Flush()
}

// WriteMarkdown prints the settings as a Markdown table.
func WriteMarkdown(w io.Writer, settings []Setting) error {
	if _, err := fmt.Fprintln(w, "| Variable | Default | Meaning |\n|---|---|---|"); err != nil {
		return err
	}
	for _, s := range settings {
		d := "`" + s.Default + "`"
		switch {
		case s.Secret:
			d = "(secret)"
		case s.Default == "":
			d = "–"
		}
		if _, err := fmt.Fprintf(w, "| `%s` | %s | %s |\n", s.Key, d, strings.ReplaceAll(s.Help, "|", "\\|")); err != nil {
			return err
		}
	}
	return nil
}

// WriteEnvFile prints the settings as an env file: each variable commented
// out with its default and meaning, secrets without a value.
func WriteEnvFile(w io.Writer, settings []Setting) error {
	for _, s := range settings {
		if _, err := fmt.Fprintf(w, "# %s\n# %s=%s\n", s.Help, s.Key, s.Default); err != nil {
			return err
		}
	}
	return nil
}

// Unknown lists the variables of environ that start with prefix but are no
// setting of settings and match none of the other patterns (names of other
// tools' variables, or prefixes ending in "_"): most likely misspelled.
func Unknown(environ map[string]string, settings []Setting, prefix string, other ...string) []string {
	known := make(map[string]bool, len(settings))
	for _, s := range settings {
		known[s.Key] = true
	}
	var out []string
	for k := range environ {
		if !strings.HasPrefix(k, prefix) || known[k] {
			continue
		}
		if !slices.ContainsFunc(other, func(o string) bool {
			return k == o || (strings.HasSuffix(o, "_") && strings.HasPrefix(k, o))
		}) {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// Environ turns os.Environ() into a map.
func Environ(kv []string) map[string]string {
	m := make(map[string]string, len(kv))
	for _, e := range kv {
		k, v, _ := strings.Cut(e, "=")
		m[k] = v
	}
	return m
}
