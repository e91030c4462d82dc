package kafkaconf_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caarlos0/env/v11"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/market-data-store/mds/internal/kafkaconf"
	"github.com/market-data-store/mds/internal/secret"
)

func TestDefaultConfig(t *testing.T) {
	c := kafkaconf.DefaultConfig()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(c.Brokers) != "[localhost:9092]" || c.ClientID != "mds" || c.SASLMechanism != "none" || c.TLSEnabled {
		t.Errorf("defaults = %+v", c)
	}
}

func TestLoadFromEnv(t *testing.T) {
	t.Setenv("MDS_KAFKA_BROKERS", "b1:9092,b2:9092")
	t.Setenv("MDS_KAFKA_SASL_MECHANISM", "scram-sha-512")
	t.Setenv("MDS_KAFKA_SASL_USERNAME", user)
	t.Setenv("MDS_KAFKA_SASL_PASSWORD", password)
	t.Setenv("MDS_KAFKA_TLS_ENABLED", "true")
	c := kafkaconf.DefaultConfig()
	if err := env.Parse(&c); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if len(c.Brokers) != 2 || c.SASLPassword.Reveal() != password || !c.TLSEnabled || c.ClientID != "mds" {
		t.Errorf("loaded %+v", c)
	}
}

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	p := newPKI(t)
	pwFile := write("password", password+"\n")
	emptyFile := write("empty", "")
	notPEM := write("not-pem", "hello")
	missing := filepath.Join(dir, "missing")

	scram := func(c *kafkaconf.Config) {
		c.SASLMechanism, c.SASLUsername, c.SASLPassword = "scram-sha-256", user, secret.New(password)
	}
	tlsOn := func(c *kafkaconf.Config) { c.TLSEnabled = true }
	for _, tc := range []struct {
		name   string
		modify func(*kafkaconf.Config)
		want   []string // substrings of the error; none means valid
	}{
		{"defaults", func(*kafkaconf.Config) {}, nil},
		{"no brokers", func(c *kafkaconf.Config) { c.Brokers = nil }, []string{"MDS_KAFKA_BROKERS"}},
		{"empty broker", func(c *kafkaconf.Config) { c.Brokers = []string{"a:1", " "} }, []string{"MDS_KAFKA_BROKERS"}},
		{"no client id", func(c *kafkaconf.Config) { c.ClientID = "" }, []string{"MDS_KAFKA_CLIENT_ID"}},
		{"unknown mechanism", func(c *kafkaconf.Config) { c.SASLMechanism = "gssapi" },
			[]string{"MDS_KAFKA_SASL_MECHANISM must be one of none, plain, scram-sha-256, scram-sha-512, oauthbearer, aws-msk-iam"}},
		{"empty mechanism is none", func(c *kafkaconf.Config) { c.SASLMechanism = "" }, nil},
		{"scram", scram, nil},
		{"kafka spelling", func(c *kafkaconf.Config) { scram(c); c.SASLMechanism = "SCRAM-SHA-256" }, nil},
		{"scram without password", func(c *kafkaconf.Config) { scram(c); c.SASLPassword = secret.Secret{} },
			[]string{"MDS_KAFKA_SASL_PASSWORD or MDS_KAFKA_SASL_PASSWORD_FILE is required for MDS_KAFKA_SASL_MECHANISM=scram-sha-256"}},
		{"plain without anything", func(c *kafkaconf.Config) { c.SASLMechanism = "plain" },
			[]string{"MDS_KAFKA_SASL_USERNAME is required", "MDS_KAFKA_SASL_PASSWORD or MDS_KAFKA_SASL_PASSWORD_FILE is required"}},
		{"password file", func(c *kafkaconf.Config) { scram(c); c.SASLPassword, c.SASLPasswordFile = secret.Secret{}, pwFile }, nil},
		{"password and file", func(c *kafkaconf.Config) { scram(c); c.SASLPasswordFile = pwFile },
			[]string{"set only one of MDS_KAFKA_SASL_PASSWORD and MDS_KAFKA_SASL_PASSWORD_FILE"}},
		{"missing password file", func(c *kafkaconf.Config) { scram(c); c.SASLPassword, c.SASLPasswordFile = secret.Secret{}, missing },
			[]string{"MDS_KAFKA_SASL_PASSWORD_FILE", "no such file"}},
		{"empty password file", func(c *kafkaconf.Config) { scram(c); c.SASLPassword, c.SASLPasswordFile = secret.Secret{}, emptyFile },
			[]string{"MDS_KAFKA_SASL_PASSWORD_FILE", "is empty"}},
		{"credentials without mechanism", func(c *kafkaconf.Config) { c.SASLUsername, c.SASLPassword = user, secret.New(password) },
			[]string{"MDS_KAFKA_SASL_USERNAME is set but not used with MDS_KAFKA_SASL_MECHANISM=none",
				"MDS_KAFKA_SASL_PASSWORD is set but not used"}},
		{"oauthbearer", func(c *kafkaconf.Config) { c.SASLMechanism, c.SASLOAuthToken = "oauthbearer", secret.New(password) }, nil},
		{"oauthbearer token file", func(c *kafkaconf.Config) { c.SASLMechanism, c.SASLOAuthTokenFile = "oauthbearer", pwFile }, nil},
		{"oauthbearer without token", func(c *kafkaconf.Config) { c.SASLMechanism = "oauthbearer" },
			[]string{"MDS_KAFKA_SASL_OAUTH_TOKEN or MDS_KAFKA_SASL_OAUTH_TOKEN_FILE is required for MDS_KAFKA_SASL_MECHANISM=oauthbearer"}},
		{"oauthbearer with password", func(c *kafkaconf.Config) {
			scram(c)
			c.SASLMechanism, c.SASLOAuthToken = "oauthbearer", secret.New("t")
		},
			[]string{"MDS_KAFKA_SASL_USERNAME is set but not used", "MDS_KAFKA_SASL_PASSWORD is set but not used"}},
		{"token with scram", func(c *kafkaconf.Config) { scram(c); c.SASLOAuthTokenFile = pwFile },
			[]string{"MDS_KAFKA_SASL_OAUTH_TOKEN_FILE is set but not used with MDS_KAFKA_SASL_MECHANISM=scram-sha-256"}},
		{"aws", func(c *kafkaconf.Config) {
			tlsOn(c)
			c.SASLMechanism, c.AWSAccessKeyID, c.AWSSecretAccessKey = "AWS_MSK_IAM", "AKIAEXAMPLE", secret.New(password)
		}, nil},
		{"aws without credentials or tls", func(c *kafkaconf.Config) { c.SASLMechanism = "aws-msk-iam" },
			[]string{"AWS_ACCESS_KEY_ID is required", "AWS_SECRET_ACCESS_KEY is required", "requires MDS_KAFKA_TLS_ENABLED=true"}},
		{"aws keys ignored by other mechanisms", func(c *kafkaconf.Config) { c.AWSAccessKeyID = "AKIAEXAMPLE" }, nil},
		{"tls with system roots", tlsOn, nil},
		{"tls files", func(c *kafkaconf.Config) {
			tlsOn(c)
			c.TLSCAFile, c.TLSCertFile, c.TLSKeyFile, c.TLSServerName = p.caFile, p.certFile, p.keyFile, serverName
		}, nil},
		{"tls settings without tls", func(c *kafkaconf.Config) {
			c.TLSCAFile, c.TLSServerName, c.TLSInsecureSkipVerify = p.caFile, serverName, true
		}, []string{"MDS_KAFKA_TLS_CA_FILE is set but MDS_KAFKA_TLS_ENABLED is false"}},
		{"skip verify without tls", func(c *kafkaconf.Config) { c.TLSInsecureSkipVerify = true },
			[]string{"MDS_KAFKA_TLS_INSECURE_SKIP_VERIFY is set but MDS_KAFKA_TLS_ENABLED is false"}},
		{"cert without key", func(c *kafkaconf.Config) { tlsOn(c); c.TLSCertFile = p.certFile },
			[]string{"MDS_KAFKA_TLS_CERT_FILE is set without MDS_KAFKA_TLS_KEY_FILE"}},
		{"key without cert", func(c *kafkaconf.Config) { tlsOn(c); c.TLSKeyFile = p.keyFile },
			[]string{"MDS_KAFKA_TLS_KEY_FILE is set without MDS_KAFKA_TLS_CERT_FILE"}},
		{"key does not match cert", func(c *kafkaconf.Config) { tlsOn(c); c.TLSCertFile, c.TLSKeyFile = p.certFile, p.caFile },
			[]string{"MDS_KAFKA_TLS_CERT_FILE and MDS_KAFKA_TLS_KEY_FILE"}},
		{"missing CA file", func(c *kafkaconf.Config) { tlsOn(c); c.TLSCAFile = missing },
			[]string{"MDS_KAFKA_TLS_CA_FILE", "no such file"}},
		{"CA file without PEM", func(c *kafkaconf.Config) { tlsOn(c); c.TLSCAFile = notPEM },
			[]string{"MDS_KAFKA_TLS_CA_FILE: no PEM certificate"}},
		{"every problem reported", func(c *kafkaconf.Config) { c.Brokers, c.ClientID, c.SASLMechanism = nil, "", "plain" },
			[]string{"MDS_KAFKA_BROKERS", "MDS_KAFKA_CLIENT_ID", "MDS_KAFKA_SASL_USERNAME", "MDS_KAFKA_SASL_PASSWORD"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := kafkaconf.DefaultConfig()
			tc.modify(&c)
			err := c.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if strings.Contains(err.Error(), password) {
				t.Errorf("error reveals the password: %v", err)
			}
			if _, optsErr := c.Opts(zap.NewNop()); optsErr == nil || optsErr.Error() != err.Error() {
				t.Errorf("Opts error %v differs from Validate's", optsErr)
			}
		})
	}
}

// mechanismOf builds a client from c (no connection is made) and returns
// its SASL mechanism.
func mechanismOf(t *testing.T, c kafkaconf.Config) sasl.Mechanism {
	t.Helper()
	opts, err := c.Opts(zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	ms, _ := cl.OptValue(kgo.SASL).([]sasl.Mechanism)
	if len(ms) != 1 {
		t.Fatalf("mechanisms %v", ms)
	}
	return ms[0]
}

// kfake speaks neither OAUTHBEARER nor AWS_MSK_IAM: check the first client
// message of each instead.
func TestOAuthBearerAndMSKIAM(t *testing.T) {
	ctx := context.Background()
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("token-one\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := kafkaconf.DefaultConfig()
	c.SASLMechanism, c.SASLOAuthTokenFile = "oauthbearer", tokenFile
	m := mechanismOf(t, c)
	for _, want := range []string{"token-one", "token-two"} {
		if err := os.WriteFile(tokenFile, []byte(want+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		_, msg, err := m.Authenticate(ctx, "broker:9092")
		if err != nil || m.Name() != "OAUTHBEARER" || !bytes.Contains(msg, []byte("auth=Bearer "+want+"\x01")) {
			t.Errorf("%s: first message %q, %v", m.Name(), msg, err)
		}
	}

	c = kafkaconf.DefaultConfig()
	c.TLSEnabled = true
	c.SASLMechanism, c.AWSAccessKeyID, c.AWSSecretAccessKey = "aws-msk-iam", "AKIAEXAMPLE", secret.New(password)
	c.AWSSessionToken = secret.New("session-token")
	m = mechanismOf(t, c)
	_, msg, err := m.Authenticate(ctx, "b-1.demo.abc123.c2.kafka.us-east-1.amazonaws.com:9098")
	if err != nil || m.Name() != "AWS_MSK_IAM" || !bytes.Contains(msg, []byte("AKIAEXAMPLE")) ||
		!bytes.Contains(msg, []byte("session-token")) || bytes.Contains(msg, []byte(password)) {
		t.Errorf("%s: first message %q, %v", m.Name(), msg, err)
	}
}

// TestConfigNeverShowsSecrets is the secret scan for this package: every
// way a Config is printed or logged hides the planted secrets.
func TestConfigNeverShowsSecrets(t *testing.T) {
	c := kafkaconf.DefaultConfig()
	c.TLSEnabled = true
	c.SASLMechanism, c.SASLUsername, c.SASLPassword = "plain", user, secret.New(password)
	c.SASLOAuthToken = secret.New(password + "-token")
	c.AWSSecretAccessKey = secret.New(password + "-aws")
	c.AWSSessionToken = secret.New(password + "-session")

	var buf bytes.Buffer
	log := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(&buf), zap.DebugLevel))
	log.Info("config", zap.Any("kafka", c), zap.Reflect("reflected", &c), zap.Error(c.Validate()))
	_, err := c.Opts(log)
	js, jerr := json.Marshal(c)
	outputs := map[string]string{"zap": buf.String(), "json": string(js) + fmt.Sprint(jerr), "error": fmt.Sprint(err)}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x"} {
		outputs[verb] = fmt.Sprintf(verb, c)
	}
	for name, out := range outputs {
		if strings.Contains(out, password) || strings.Contains(out, fmt.Sprintf("%x", password)) {
			t.Errorf("%s reveals a secret: %s", name, out)
		}
	}
	if !strings.Contains(outputs["%+v"], "SASLPassword:[redacted]") || !strings.Contains(outputs["json"], `"SASLPassword":"[redacted]"`) {
		t.Errorf("redacted forms missing: %s / %s", outputs["%+v"], outputs["json"])
	}
}
