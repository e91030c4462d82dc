package secret_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caarlos0/env/v11"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/market-data-store/mds/internal/secret"
)

const planted = "pl4nted-S3cret-value"

type exported struct {
	Name     string
	Password secret.Secret
	Ptr      *secret.Secret
}

type unexported struct {
	name     string
	password secret.Secret
}

type nested struct {
	Inner  exported
	inner  unexported
	Slice  []secret.Secret
	Map    map[string]secret.Secret
	Iface  any
	Stored fmt.Stringer
}

func TestFormatNeverRevealsValue(t *testing.T) {
	s := secret.New(planted)
	values := map[string]any{
		"value":              s,
		"pointer":            &s,
		"exported":           exported{Name: "n", Password: s, Ptr: &s},
		"unexported":         unexported{name: "n", password: s},
		"unexported pointer": &unexported{name: "n", password: s},
		"nested": nested{
			Inner: exported{Password: s}, inner: unexported{password: s},
			Slice: []secret.Secret{s}, Map: map[string]secret.Secret{"k": s}, Iface: s, Stored: s,
		},
		"error": fmt.Errorf("connecting as %v: %w", s, errors.New("refused")),
	}
	verbs := []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%10s", "%-12v", "%p", "%t", "%T"}
	for name, v := range values {
		for _, verb := range verbs {
			out := fmt.Sprintf(verb, v)
			if strings.Contains(out, planted) || strings.Contains(out, fmt.Sprintf("%x", planted)) ||
				strings.Contains(out, fmt.Sprintf("%X", planted)) {
				t.Errorf("%s with %s reveals the secret: %s", name, verb, out)
			}
		}
		if out := fmt.Sprint(v) + fmt.Sprintln(v); strings.Contains(out, planted) {
			t.Errorf("%s with Sprint reveals the secret: %s", name, out)
		}
	}
}

func TestRenderedForms(t *testing.T) {
	s := secret.New(planted)
	for _, tc := range []struct {
		name, got, want string
	}{
		{"String", s.String(), "[redacted]"},
		{"GoString", s.GoString(), `"[redacted]"`},
		{"%v", fmt.Sprintf("%v", s), "[redacted]"},
		{"%q", fmt.Sprintf("%q", s), `"[redacted]"`},
		{"%#v", fmt.Sprintf("%#v", s), `"[redacted]"`},
		{"%+v struct", fmt.Sprintf("%+v", exported{Name: "u", Password: s}), "{Name:u Password:[redacted] Ptr:<nil>}"},
		{"empty %v", fmt.Sprintf("%v", secret.Secret{}), ""},
		{"empty %q", fmt.Sprintf("%q", secret.New("")), `""`},
		{"Reveal", s.Reveal(), planted},
		{"empty Reveal", secret.Secret{}.Reveal(), ""},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %q, want %q", tc.name, tc.got, tc.want)
		}
	}
}

func TestJSON(t *testing.T) {
	b, err := json.Marshal(map[string]any{
		"struct": exported{Name: "u", Password: secret.New(planted)},
		"empty":  exported{Name: "u"},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"empty":{"Name":"u","Password":"","Ptr":null},"struct":{"Name":"u","Password":"[redacted]","Ptr":null}}`
	if string(b) != want {
		t.Errorf("json = %s, want %s", b, want)
	}
}

func TestZap(t *testing.T) {
	var buf bytes.Buffer
	core := zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(&buf), zap.DebugLevel)
	log := zap.New(core)
	s := secret.New(planted)
	log.Info("config",
		zap.Any("secret", s),
		zap.Any("pointer", &s),
		zap.Stringer("stringer", s),
		zap.Any("struct", exported{Name: "u", Password: s, Ptr: &s}),
		zap.Reflect("reflect", nested{Inner: exported{Password: s}, Slice: []secret.Secret{s}}),
		zap.Error(fmt.Errorf("auth as %v failed", s)),
	)
	if err := log.Sync(); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if strings.Contains(out, planted) {
		t.Fatalf("zap output reveals the secret: %s", out)
	}
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	if m["secret"] != "[redacted]" || m["struct"].(map[string]any)["Password"] != "[redacted]" {
		t.Errorf("zap output lacks the redacted form: %s", out)
	}
}

func TestLoadFromEnv(t *testing.T) {
	t.Setenv("MDS_TEST_SECRET", planted)
	type cfg struct {
		Password secret.Secret `env:"MDS_TEST_SECRET"`
		Unset    secret.Secret `env:"MDS_TEST_SECRET_UNSET"`
	}
	c, err := env.ParseAs[cfg]()
	if err != nil {
		t.Fatal(err)
	}
	if c.Password.Reveal() != planted || !c.Unset.IsZero() {
		t.Errorf("loaded %q and %q", c.Password.Reveal(), c.Unset.Reveal())
	}
}

func TestFromFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name, content, want string
	}{
		{"plain", planted, planted},
		{"newline", planted + "\n", planted},
		{"crlf", planted + "\r\n", planted},
		{"inner blanks kept", " a b\tc \n", " a b\tc "},
	} {
		s, err := secret.FromFile(write(tc.name, tc.content))
		if err != nil || s.Reveal() != tc.want {
			t.Errorf("%s: got %q, %v; want %q", tc.name, s.Reveal(), err, tc.want)
		}
	}
	for _, tc := range []struct{ name, path string }{
		{"missing", filepath.Join(dir, "missing")},
		{"empty", write("empty", "\n")},
		{"too large", write("large", planted+strings.Repeat("x", 64<<10))},
	} {
		_, err := secret.FromFile(tc.path)
		if err == nil {
			t.Errorf("%s: no error", tc.name)
		} else if strings.Contains(err.Error(), planted) || !strings.Contains(err.Error(), tc.path) {
			t.Errorf("%s: error %q should name the path and not the content", tc.name, err)
		}
	}
}
