package secret_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/market-data-store/mds/internal/secret"
)

func TestRedactDSN(t *testing.T) {
	const bad = "[redacted: unparseable connection string]"
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"postgres://mds@db:5432/mds?sslmode=verify-full", "postgres://mds@db:5432/mds?sslmode=verify-full"},
		{"postgres://mds:pl4nted@db:5432/mds?sslmode=require", "postgres://mds:[redacted]@db:5432/mds?sslmode=require"},
		{"postgresql://mds:p%40ss%2Fw@h1:5432,h2:5433/mds", "postgresql://mds:[redacted]@h1:5432,h2:5433/mds"},
		{"postgres://mds:a?b:c@db/mds", "postgres://mds:[redacted]@db/mds"},
		{"postgres://[::1]:5432/mds?user=u&password=pl4nted&sslpassword=k3y&sslmode=verify-ca",
			"postgres://[::1]:5432/mds?user=u&password=[redacted]&sslpassword=[redacted]&sslmode=verify-ca"},
		{"postgres://db/mds?pass%77ord=pl4nted", "postgres://db/mds?pass%77ord=[redacted]"},
		{"postgres://db/mds?application_name=a@b", "postgres://db/mds?application_name=a@b"},
		{"host=db user=mds password=pl4nted sslmode=require", "host=db user=mds password=[redacted] sslmode=require"},
		{"host=db password = 'pl 4n\\'ted' dbname=mds", "host=db password = [redacted] dbname=mds"},
		{"password=pl\\ 4nted host=db", "password=[redacted] host=db"},
		{"sslkey=/k sslpassword='k3y'", "sslkey=/k sslpassword=[redacted]"},
		{"host=db password=", "host=db password=[redacted]"},
		// Malformed: the password's end is unknown, so all of it goes.
		{"postgres://mds:pl/4nted@db/mds", bad},
		{"postgres://mds:pl@4nted@db/mds", bad},
		{"host=db password='pl4nted", bad},
		{"host=db password=pl4nted and more", bad},
		{"mysql://u:pl4nted@db", bad},
		{"postgres://db/mds?password", bad},
	} {
		if got := secret.RedactDSN(tc.in); got != tc.want {
			t.Errorf("RedactDSN(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestWithPassword checks the injected password against pgx's own parser,
// the consumer of the result.
func TestWithPassword(t *testing.T) {
	passwords := []string{"simple", `q'uo"te\back`, "sp ace\ttab", "p@ss/w:rd?#&=%41", "ünïcødé", " lead-trail "}
	dsns := []string{
		"postgres://mds@db:5432/mds?sslmode=disable",
		"postgresql://db/mds?sslmode=disable&user=mds",
		"postgres://mds@h1:5432,h2:5433/mds?sslmode=disable",
		"host=db user=mds dbname=mds sslmode=disable",
		"host=db user=mds sslmode=disable  ",
		"host=db dbname=\\ ",
		"host=db dbname=",
		"",
	}
	for _, dsn := range dsns {
		for _, pw := range passwords {
			out, err := secret.WithPassword(dsn, secret.New(pw))
			if err != nil {
				t.Errorf("WithPassword(%q): %v", dsn, err)
				continue
			}
			cfg, err := pgconn.ParseConfig(out)
			if err != nil {
				t.Errorf("pgx cannot parse %q: %v", out, err)
				continue
			}
			if cfg.Password != pw {
				t.Errorf("WithPassword(%q, %q) = %q: pgx reads password %q", dsn, pw, out, cfg.Password)
			}
			sameSettings(t, dsn, out)
			if red := secret.RedactDSN(out); strings.Contains(red, pw) {
				t.Errorf("RedactDSN(%q) = %q still holds the password", out, red)
			}
		}
	}
}

func TestWithPasswordRefuses(t *testing.T) {
	for _, dsn := range []string{
		"postgres://mds:old@db/mds",
		"postgres://db/mds?password=old",
		"host=db password=old",
		"host=db password='unterminated",
	} {
		out, err := secret.WithPassword(dsn, secret.New(planted))
		if err == nil {
			t.Errorf("WithPassword(%q) = %q, want an error", dsn, out)
		} else if strings.Contains(err.Error(), "old") || strings.Contains(err.Error(), planted) {
			t.Errorf("error %q quotes a secret", err)
		}
	}
	if _, err := secret.WithPassword("host=db", secret.Secret{}); err == nil {
		t.Error("empty password accepted")
	}
}

// FuzzDSN checks, for any connection string pgx accepts without a
// password, that an injected password reaches pgx intact and that
// RedactDSN hides it again.
func FuzzDSN(f *testing.F) {
	f.Add("postgres://mds@db/mds?sslmode=disable", "pw")
	f.Add("host=db sslmode=disable", "a b'c")
	f.Add("postgres://[::1]:5432,h:1/d?sslmode=disable&application_name=x", "%zz@/")
	f.Fuzz(func(t *testing.T, dsn, pw string) {
		red := secret.RedactDSN(dsn)
		// A password that also stands elsewhere in the string (inside
		// "postgres", say) or in the redaction marker proves nothing by
		// showing up: only one that stands once is checked.
		if cfg, err := pgconn.ParseConfig(dsn); err == nil && len(cfg.Password) >= 4 &&
			strings.Count(dsn, cfg.Password) <= 1 && !strings.Contains(secret.Redacted, cfg.Password) &&
			strings.Contains(red, cfg.Password) {
			t.Fatalf("RedactDSN(%q) = %q reveals %q", dsn, red, cfg.Password)
		}
		// The marker makes the password findable in the output, whatever
		// the fuzzer puts around it.
		const marker = "Zq9X"
		pw = marker + pw
		if strings.Contains(dsn, marker) || strings.ContainsRune(pw, 0) {
			return
		}
		out, err := secret.WithPassword(dsn, secret.New(pw))
		if err != nil {
			return
		}
		cfg, err := pgconn.ParseConfig(out)
		if err != nil {
			if _, err0 := pgconn.ParseConfig(dsn); err0 == nil {
				t.Fatalf("pgx accepts %q but not %q: %v", dsn, out, err)
			}
			return
		}
		if cfg.Password != pw {
			t.Fatalf("WithPassword(%q, %q) = %q: pgx reads %q", dsn, pw, out, cfg.Password)
		}
		sameSettings(t, dsn, out)
		if red := secret.RedactDSN(out); strings.Contains(red, marker) {
			t.Fatalf("RedactDSN(%q) = %q", out, red)
		}
	})
}

// sameSettings fails t when pgx reads anything but the password differently
// from dsn and out.
func sameSettings(t *testing.T, dsn, out string) {
	t.Helper()
	a, errA := pgconn.ParseConfig(dsn)
	b, errB := pgconn.ParseConfig(out)
	if errA != nil || errB != nil {
		t.Fatalf("parsing %q: %v; %q: %v", dsn, errA, out, errB)
	}
	if a.Host != b.Host || a.Port != b.Port || a.Database != b.Database || a.User != b.User ||
		len(a.Fallbacks) != len(b.Fallbacks) || fmt.Sprint(a.RuntimeParams) != fmt.Sprint(b.RuntimeParams) {
		t.Fatalf("pgx reads %q and %q differently beyond the password", dsn, out)
	}
}

func TestCheckDSN(t *testing.T) {
	for _, dsn := range []string{
		"postgres://u:pw@h:5432/db?sslmode=disable",
		"postgres://u:p%40w%2F@h/db",
		"host=h user=u password='p w' dbname=db",
		"host = h  user= u",
		"",
	} {
		if err := secret.CheckDSN(dsn); err != nil {
			t.Errorf("CheckDSN(%q): %v", dsn, err)
		}
	}
	const pw = "s3cr@t/part"
	for _, dsn := range []string{
		"postgres://u:" + pw + "@h/db",
		"postgres://u:pw@h/db?password",
		"host=h password='" + pw,
		"host=h pass\x00word=" + pw,
		"host=h sslmode= password=" + pw, // sslmode would hold "password=…"
	} {
		err := secret.CheckDSN(dsn)
		if err == nil {
			t.Errorf("CheckDSN accepted %q", dsn)
		} else if strings.Contains(err.Error(), "part") || strings.Contains(err.Error(), "s3cr") {
			t.Errorf("CheckDSN error quotes the password: %v", err)
		}
	}
}
