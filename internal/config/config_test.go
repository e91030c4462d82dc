package config_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/market-data-store/mds/internal/config"
)

type secret string

func (s secret) Reveal() string { return string(s) }

type inner struct {
	Capacity int           `env:"MDS_CAPACITY" help:"queue capacity"`
	Flush    time.Duration `env:"MDS_FLUSH" help:"flush interval"`
	Backoff  time.Duration `env:"MDS_BACKOFF_MS" help:"initial backoff"`
	Compress time.Duration `env:"MDS_COMPRESS_AFTER" help:"empty disables"`
}

type settings struct {
	Inner   inner
	Jitter  bool     `env:"MDS_JITTER" help:"add jitter"`
	Topics  []string `env:"MDS_TOPICS" help:"topics"`
	Ratio   float64  `env:"MDS_RATIO"`
	Token   secret   `env:"MDS_TOKEN"`
	Ignored string
}

func defaults() settings {
	return settings{
		Inner:  inner{Capacity: 10000, Flush: 250 * time.Millisecond, Backoff: 50 * time.Millisecond, Compress: 7 * 24 * time.Hour},
		Jitter: true, Topics: []string{"market.ticks"}, Ratio: 2,
	}
}

func TestLoad(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		want func(*settings)
	}{
		{"nothing set keeps defaults", nil, func(*settings) {}},
		{"go durations", map[string]string{"MDS_FLUSH": "1.5s", "MDS_BACKOFF_MS": "75ms"},
			func(s *settings) { s.Inner.Flush = 1500 * time.Millisecond; s.Inner.Backoff = 75 * time.Millisecond }},
		{"original units: seconds and _MS", map[string]string{"MDS_FLUSH": "0.25", "MDS_BACKOFF_MS": "50"},
			func(s *settings) { s.Inner.Flush = 250 * time.Millisecond; s.Inner.Backoff = 50 * time.Millisecond }},
		{"empty duration disables", map[string]string{"MDS_COMPRESS_AFTER": ""},
			func(s *settings) { s.Inner.Compress = 0 }},
		{"empty int is unset", map[string]string{"MDS_CAPACITY": " "}, func(*settings) {}},
		{"python booleans", map[string]string{"MDS_JITTER": "False"}, func(s *settings) { s.Jitter = false }},
		{"yes/no booleans", map[string]string{"MDS_JITTER": "no"}, func(s *settings) { s.Jitter = false }},
		{"lists", map[string]string{"MDS_TOPICS": "a,b"}, func(s *settings) { s.Topics = []string{"a", "b"} }},
		{"ints and floats", map[string]string{"MDS_CAPACITY": "42", "MDS_RATIO": "1.5"},
			func(s *settings) { s.Inner.Capacity = 42; s.Ratio = 1.5 }},
		{"unrelated variables ignored", map[string]string{"PATH": "/bin", "MDS_UNKNOWN": "x"}, func(*settings) {}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, want := defaults(), defaults()
			tc.want(&want)
			if err := config.Load(&got, tc.env); err != nil {
				t.Fatal(err)
			}
			if !equal(got, want) {
				t.Fatalf("got %+v\nwant %+v", got, want)
			}
		})
	}
}

func equal(a, b settings) bool {
	return a.Inner == b.Inner && a.Jitter == b.Jitter && strings.Join(a.Topics, ",") == strings.Join(b.Topics, ",") &&
		a.Ratio == b.Ratio && a.Token == b.Token
}

func TestLoadErrorsNameTheVariable(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want []string
	}{
		{map[string]string{"MDS_CAPACITY": "ten"}, []string{"MDS_CAPACITY", `"ten" is not a valid whole number`}},
		{map[string]string{"MDS_FLUSH": "soon"}, []string{"MDS_FLUSH", "not a duration"}},
		{map[string]string{"MDS_FLUSH": "-1s"}, []string{"MDS_FLUSH", "negative"}},
		{map[string]string{"MDS_FLUSH": "NaN"}, []string{"MDS_FLUSH", `"NaN"`}},
		{map[string]string{"MDS_BACKOFF_MS": "NaN"}, []string{"MDS_BACKOFF_MS", `"NaN" is out of range`}},
		{map[string]string{"MDS_BACKOFF_MS": "-Inf"}, []string{"MDS_BACKOFF_MS", `"-Inf"`}},
		{map[string]string{"MDS_JITTER": "maybe"}, []string{"MDS_JITTER", "not a boolean"}},
		{map[string]string{"MDS_CAPACITY": "x", "MDS_RATIO": "y"}, []string{"MDS_CAPACITY", "MDS_RATIO"}},
	} {
		s := defaults()
		err := config.Load(&s, tc.env)
		if err == nil {
			t.Fatalf("%v: no error", tc.env)
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%v: error %q does not mention %q", tc.env, err, w)
			}
		}
	}
}

func TestHelpListsEverySettingWithDefaultAndHidesSecrets(t *testing.T) {
	s := defaults()
	s.Token = "hunter2-planted"
	var buf bytes.Buffer
	if err := config.WriteHelp(&buf, config.Settings(&s)); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, w := range []string{"MDS_CAPACITY", "10000", "MDS_FLUSH", "250ms", "MDS_BACKOFF_MS", "50ms", "MDS_JITTER", "true",
		"MDS_TOPICS", "market.ticks", "MDS_TOKEN", "(secret)", "queue capacity"} {
		if !strings.Contains(out, w) {
			t.Errorf("help lacks %q:\n%s", w, out)
		}
	}
	if strings.Contains(out, "hunter2") {
		t.Fatalf("help shows the secret:\n%s", out)
	}
}

func TestSecretValueNeverEchoedInErrors(t *testing.T) {
	type withSecretInt struct {
		N int `env:"MDS_N" secret:"true"`
	}
	var s withSecretInt
	err := config.Load(&s, map[string]string{"MDS_N": "hunter2-planted"})
	if err == nil || strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), "MDS_N") {
		t.Fatalf("error %v", err)
	}
}

func FuzzLoad(f *testing.F) {
	f.Add("MDS_CAPACITY", "10")
	f.Add("MDS_FLUSH", "0.25")
	f.Add("MDS_BACKOFF_MS", "1e309")
	f.Add("MDS_TOPICS", ",,")
	f.Add("MDS_JITTER", "")
	f.Fuzz(func(t *testing.T, key, value string) {
		s := defaults()
		err := config.Load(&s, map[string]string{key: value, "MDS_FLUSH": value, "MDS_CAPACITY": value, "MDS_BACKOFF_MS": value})
		if err != nil && !strings.Contains(err.Error(), "MDS_") {
			t.Fatalf("error does not name a variable: %v", err)
		}
	})
}

func TestUnknownNamesMisspelledVariables(t *testing.T) {
	env := map[string]string{"MDS_CAPACITY": "1", "MDS_CAPACTIY": "2", "MDS_TEST_X": "", "MDS_PG_BINDIR": "/x", "PATH": "/bin"}
	got := config.Unknown(env, config.Settings(defaults()), "MDS_", "MDS_TEST_", "MDS_PG_BINDIR")
	if strings.Join(got, ",") != "MDS_CAPACTIY" {
		t.Fatalf("unknown = %v, want [MDS_CAPACTIY]", got)
	}
}
