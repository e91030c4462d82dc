package app_test

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/market-data-store/mds/internal/app"
)

// fuzzSecret is planted in every secret input of FuzzLoadSettings. The
// fuzzer does not guess strings from comparisons, so it will not produce it
// on its own; the check is skipped when it does.
const fuzzSecret = "Fz-Pl4nted/s3cret@Q7:x"

// FuzzLoadSettings feeds LoadSettings random values for settings of every
// kind (durations in both units, whole numbers, booleans, lists, times, the
// SASL mechanism, the connection string and the database password file).
// It must never panic; every line of an error must name the variable it is
// about; no error, and no printing or encoding of settings it accepts,
// shows the planted secret.
//
// Files are chosen by index among prepared ones (the fuzzed text becomes
// the content of one), so that the fuzzer never opens devices or FIFOs.
func FuzzLoadSettings(f *testing.F) {
	f.Add("250ms", "50", "10000", "true", "localhost:9092,b:9093", "postgres://u@h:5432/db?sslmode=disable", "scram-sha-256", "1990-01-01T00:00:00Z", uint8(0), uint8(6))
	f.Add("2s", "100", "8", "false", "http://h:1/x", "h:5432/db", "SCRAM_SHA_512", "2000-01-01T00:00:00+02:00", uint8(1), uint8(6))
	f.Add("0.5", "20", "4", "off", "b:9092", "host=h user=u dbname=db", "", "1995-06-01T00:00:00Z", uint8(0), uint8(0))
	f.Add("6", "1e309", "-1", "yes", ",,", "host=h user=u", "plain", "2100-01-01T00:00:00Z", uint8(1), uint8(1))
	f.Add("", "", "", "", "", "", "", "", uint8(2), uint8(2))
	f.Add("-5s", "NaN", "9223372036854775808", "maybe", " , a", "postgres://u:p@h/db", "oauthbearer", "yesterday", uint8(3), uint8(3))
	f.Add("1e-9", "0.0001", "0x10", "ON", "a:1", "postgres://u@[::1/db?x", "AWS_MSK_IAM", "2026-13-01T00:00:00Z", uint8(4), uint8(4))
	f.Add("9999999999h", "-1", "1_000", "0", "x", "host='unterminated", "none", "0001-01-01T00:00:00Z", uint8(5), uint8(5))
	// The fixed files are written once; inputs run one at a time in each
	// process, so the fuzzed one can be rewritten in place.
	dir := f.TempDir()
	files := []string{
		write(f, filepath.Join(dir, "secret"), fuzzSecret+"\n"),
		filepath.Join(dir, "fuzzed"),
		write(f, filepath.Join(dir, "empty"), "\r\n"),
		write(f, filepath.Join(dir, "big"), strings.Repeat(fuzzSecret, 3000)),
		dir,
		filepath.Join(dir, "missing"),
	}
	f.Fuzz(func(t *testing.T, dur, ms, num, boolean, list, dsn, mechanism, when string, dsnMode, fileMode uint8) {
		env := map[string]string{
			"MDS_COORDINATOR_FLUSH_INTERVAL": dur,
			"MDS_FB_HEARTBEAT_INTERVAL":      dur,
			"MDS_TS_COMPRESS_AFTER":          dur,
			"MDS_RETRY_INITIAL_BACKOFF_MS":   ms,
			"MDS_RETRY_MAX_BACKOFF_MS":       ms,
			"MDS_COORDINATOR_WORKERS":        num,
			"MDS_DB_MAX_CONNS":               num,
			"MDS_FB_HTTP_MAX_RETRIES":        num,
			"MDS_TICK_MAX_ABS_PRICE":         num,
			"MDS_RETRY_JITTER":               boolean,
			"MDS_KAFKA_TLS_ENABLED":          boolean,
			"MDS_FB_ENABLE_HTTP_BROADCAST":   boolean,
			"MDS_KAFKA_BROKERS":              list,
			"MDS_KAFKA_TOPICS":               list,
			"MDS_KAFKA_SASL_MECHANISM":       mechanism,
			"AWS_ACCESS_KEY_ID":              "AKIA",
			"AWS_SECRET_ACCESS_KEY":          fuzzSecret,
			"MDS_FB_HTTP_TOKEN":              fuzzSecret,
			"MDS_FB_HTTP_HMAC_SECRET":        fuzzSecret,
			"MDS_FB_HTTP_ENDPOINT":           list,
			"MDS_TICK_MIN_TIME":              when,
		}
		// The SASL secrets, where the mechanism uses them (elsewhere they
		// are an error, and would hide every other outcome).
		switch strings.ToLower(strings.ReplaceAll(strings.TrimSpace(mechanism), "_", "-")) {
		case "plain", "scram-sha-256", "scram-sha-512":
			env["MDS_KAFKA_SASL_USERNAME"] = "user"
			env["MDS_KAFKA_SASL_PASSWORD"] = fuzzSecret
		case "oauthbearer":
			env["MDS_KAFKA_SASL_OAUTH_TOKEN"] = fuzzSecret
		}
		// The connection string, with or without the planted password, in
		// either variable.
		withPassword := "postgres://" + url.UserPassword("u", fuzzSecret).String() + "@" + dsn
		switch dsnMode % 6 {
		case 0:
			env["MDS_DATABASE_URL"] = dsn
		case 1:
			env["MDS_DATABASE_URL"] = withPassword
		case 2:
			env["DATABASE_URL"] = withPassword
		case 3:
			env["MDS_DATABASE_URL"] = dsn + " password='" + fuzzSecret + "'"
		case 4:
			env["DATABASE_URL"] = dsn
		case 5:
			env["MDS_DATABASE_URL"] = "postgres://u:" + fuzzSecret + "@" + dsn // unencoded: malformed
		}
		// The password file: the planted secret, the secret and fuzzed
		// text, nothing, too much, a directory, missing, or not set.
		if i := int(fileMode) % (len(files) + 1); i < len(files) {
			if i == 1 {
				write(t, files[1], fuzzSecret+when)
			}
			env["MDS_DATABASE_PASSWORD_FILE"] = files[i]
		}

		s, err := app.LoadSettings(env)

		// Only secret inputs hold the planted value, unless the fuzzer made
		// it up.
		checkSecret := true
		for _, v := range []string{dur, ms, num, boolean, list, dsn, mechanism, when} {
			if strings.Contains(v, "Pl4nted") || strings.Contains(v, "s3cret") {
				checkSecret = false
			}
		}
		leaks := func(what, text string) {
			t.Helper()
			if !checkSecret {
				return
			}
			for _, form := range []string{fuzzSecret, url.QueryEscape(fuzzSecret), url.PathEscape(fuzzSecret),
				"Pl4nted", "s3cret"} {
				if strings.Contains(text, form) {
					t.Fatalf("%s shows the planted secret (%q): %s", what, form, text)
				}
			}
		}
		if err != nil {
			msg := err.Error()
			leaks("the error", msg)
			for _, line := range strings.Split(msg, "\n") {
				if !namesVariable(line) {
					t.Fatalf("error line %q names no variable; whole error:\n%s", line, msg)
				}
			}
			return
		}
		// Accepted settings print and encode without the secret.
		b, jerr := json.Marshal(s)
		if jerr != nil {
			t.Fatalf("encoding accepted settings: %v", jerr)
		}
		leaks("json of the settings", string(b))
		leaks("%+v of the settings", fmt.Sprintf("%+v", s))
		leaks("%#v of the settings", fmt.Sprintf("%#v", s))
		if verr := s.Validate(); verr != nil {
			t.Fatalf("LoadSettings accepted settings that do not validate: %v", verr)
		}
	})
}

// namesVariable reports whether an error line names a setting.
func namesVariable(line string) bool {
	for _, p := range []string{"MDS_", "DATABASE_URL", "AWS_"} {
		if strings.Contains(line, p) {
			return true
		}
	}
	return false
}

// write writes content to path and returns path.
func write(t testing.TB, path, content string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
