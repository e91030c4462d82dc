package kafkaconf

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/aws"
	"github.com/twmb/franz-go/pkg/sasl/oauth"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
	"go.uber.org/zap"

	"github.com/market-data-store/mds/internal/secret"
)

// SASL mechanisms, as MDS_KAFKA_SASL_MECHANISM spells them. Upper case and
// Kafka's underscores (SCRAM-SHA-512, AWS_MSK_IAM) are accepted too.
const (
	MechanismNone        = "none"
	MechanismPlain       = "plain"
	MechanismScramSHA256 = "scram-sha-256"
	MechanismScramSHA512 = "scram-sha-512"
	MechanismOAuthBearer = "oauthbearer"
	MechanismAWSMSKIAM   = "aws-msk-iam"
)

var mechanisms = []string{MechanismNone, MechanismPlain, MechanismScramSHA256, MechanismScramSHA512, MechanismOAuthBearer, MechanismAWSMSKIAM}

// Config holds how every Kafka client of the process reaches the cluster:
// the consumer, the feedback producer and tickgen share it.
//
// Secrets are [secret.Secret], so printing or logging a Config never shows
// them. A password or token may instead come from a file (the *_FILE
// variables); such a file is read again at every authentication, so a
// rotated Kubernetes secret takes effect on the next connection without a
// restart.
//
// AWS MSK IAM uses the standard AWS variables for static credentials
// (an IAM user's keys, or temporary keys with a session token). Instance
// profiles, IRSA and other AWS credential chains are not read: run a
// credential helper that exports the variables, or use SCRAM or OAUTHBEARER.
type Config struct {
	Brokers  []string `env:"MDS_KAFKA_BROKERS" envSeparator:"," help:"seed brokers, comma-separated host:port (port 9092 if omitted)"`
	ClientID string   `env:"MDS_KAFKA_CLIENT_ID" help:"client id the brokers see in logs, quotas and ACLs"`

	SASLMechanism      string        `env:"MDS_KAFKA_SASL_MECHANISM" help:"none, plain, scram-sha-256, scram-sha-512, oauthbearer or aws-msk-iam"`
	SASLUsername       string        `env:"MDS_KAFKA_SASL_USERNAME" help:"SASL user for plain and scram-*"`
	SASLPassword       secret.Secret `env:"MDS_KAFKA_SASL_PASSWORD" help:"SASL password for plain and scram-* (or use MDS_KAFKA_SASL_PASSWORD_FILE)"`
	SASLPasswordFile   string        `env:"MDS_KAFKA_SASL_PASSWORD_FILE" help:"file holding the SASL password, re-read at each authentication"`
	SASLOAuthToken     secret.Secret `env:"MDS_KAFKA_SASL_OAUTH_TOKEN" help:"bearer token for oauthbearer (or use MDS_KAFKA_SASL_OAUTH_TOKEN_FILE)"`
	SASLOAuthTokenFile string        `env:"MDS_KAFKA_SASL_OAUTH_TOKEN_FILE" help:"file holding the oauthbearer token, re-read at each authentication so a sidecar can refresh it"`
	AWSAccessKeyID     string        `env:"AWS_ACCESS_KEY_ID" help:"AWS access key id for aws-msk-iam"`
	AWSSecretAccessKey secret.Secret `env:"AWS_SECRET_ACCESS_KEY" help:"AWS secret access key for aws-msk-iam"`
	AWSSessionToken    secret.Secret `env:"AWS_SESSION_TOKEN" help:"AWS session token for aws-msk-iam with temporary credentials"`

	TLSEnabled            bool   `env:"MDS_KAFKA_TLS_ENABLED" help:"connect to the brokers over TLS (1.2 or later)"`
	TLSCAFile             string `env:"MDS_KAFKA_TLS_CA_FILE" help:"PEM file of CA certificates to trust instead of the system ones"`
	TLSCertFile           string `env:"MDS_KAFKA_TLS_CERT_FILE" help:"PEM client certificate for mutual TLS (with MDS_KAFKA_TLS_KEY_FILE)"`
	TLSKeyFile            string `env:"MDS_KAFKA_TLS_KEY_FILE" help:"PEM private key of the client certificate"`
	TLSServerName         string `env:"MDS_KAFKA_TLS_SERVER_NAME" help:"name to verify in broker certificates instead of each broker's host"`
	TLSInsecureSkipVerify bool   `env:"MDS_KAFKA_TLS_INSECURE_SKIP_VERIFY" help:"DEVELOPMENT ONLY: accept any broker certificate"`
}

// DefaultConfig returns the documented defaults: a local plaintext broker,
// no authentication.
func DefaultConfig() Config {
	return Config{
		Brokers:       []string{"localhost:9092"},
		ClientID:      "mds",
		SASLMechanism: MechanismNone,
	}
}

// Validate reports every setting that is missing, inconsistent or points to
// a file that cannot be read or parsed, naming its variable. It never
// quotes a secret.
func (c Config) Validate() error {
	_, err := c.build()
	return err
}

// Opts returns the franz-go options that connect a client as configured:
// SeedBrokers, ClientID, and DialTLSConfig and SASL when enabled. It
// validates c first. It logs a warning when certificate verification is
// off and when credentials would cross the network in clear text.
func (c Config) Opts(log *zap.Logger) ([]kgo.Opt, error) {
	b, err := c.build()
	if err != nil {
		return nil, err
	}
	opts := []kgo.Opt{kgo.SeedBrokers(b.brokers...), kgo.ClientID(c.ClientID)}
	if b.tls != nil {
		opts = append(opts, kgo.DialTLSConfig(b.tls))
	}
	if b.mechanism != nil {
		opts = append(opts, kgo.SASL(b.mechanism))
	}
	log.Info("kafka connection",
		zap.Strings("brokers", b.brokers),
		zap.Bool("tls", c.TLSEnabled),
		zap.String("sasl_mechanism", b.name),
		zap.String("sasl_username", c.SASLUsername))
	if c.TLSInsecureSkipVerify {
		log.Warn("kafka broker certificates are NOT verified (MDS_KAFKA_TLS_INSECURE_SKIP_VERIFY=true): " +
			"anyone on the network path can impersonate the brokers and read the credentials; never use this outside development")
	}
	if !c.TLSEnabled && (b.name == MechanismPlain || b.name == MechanismOAuthBearer) {
		log.Warn("kafka sasl credentials are sent in clear text: set MDS_KAFKA_TLS_ENABLED=true",
			zap.String("sasl_mechanism", b.name))
	}
	return opts, nil
}

// built is a checked Config turned into what franz-go takes.
type built struct {
	brokers   []string
	tls       *tls.Config
	name      string // the normalised mechanism
	mechanism sasl.Mechanism
}

func (c Config) build() (built, error) {
	var errs []error
	b := built{name: normalizeMechanism(c.SASLMechanism)}
	for _, br := range c.Brokers {
		if br = strings.TrimSpace(br); br != "" {
			b.brokers = append(b.brokers, br)
		}
	}
	if len(b.brokers) == 0 || len(b.brokers) != len(c.Brokers) {
		errs = append(errs, errors.New("MDS_KAFKA_BROKERS must list host:port entries, comma separated, none empty"))
	}
	if strings.TrimSpace(c.ClientID) == "" {
		errs = append(errs, errors.New("MDS_KAFKA_CLIENT_ID must not be empty"))
	}
	var err error
	if b.tls, err = c.tlsConfig(); err != nil {
		errs = append(errs, err)
	}
	if b.mechanism, err = c.saslMechanism(b.name); err != nil {
		errs = append(errs, err)
	}
	return b, errors.Join(errs...)
}

func normalizeMechanism(m string) string {
	m = strings.ToLower(strings.ReplaceAll(strings.TrimSpace(m), "_", "-"))
	if m == "" {
		return MechanismNone
	}
	return m
}

// tlsConfig returns nil when TLS is off. Files are read once, here.
func (c Config) tlsConfig() (*tls.Config, error) {
	if !c.TLSEnabled {
		for _, s := range []struct {
			set  bool
			name string
		}{
			{c.TLSCAFile != "", "MDS_KAFKA_TLS_CA_FILE"},
			{c.TLSCertFile != "", "MDS_KAFKA_TLS_CERT_FILE"},
			{c.TLSKeyFile != "", "MDS_KAFKA_TLS_KEY_FILE"},
			{c.TLSServerName != "", "MDS_KAFKA_TLS_SERVER_NAME"},
			{c.TLSInsecureSkipVerify, "MDS_KAFKA_TLS_INSECURE_SKIP_VERIFY"},
		} {
			if s.set {
				return nil, fmt.Errorf("%s is set but MDS_KAFKA_TLS_ENABLED is false", s.name)
			}
		}
		return nil, nil
	}
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         c.TLSServerName,
		InsecureSkipVerify: c.TLSInsecureSkipVerify, //nolint:gosec // opt-in, logged as a warning
	}
	var errs []error
	if c.TLSCAFile != "" {
		pem, err := os.ReadFile(c.TLSCAFile)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("MDS_KAFKA_TLS_CA_FILE: %w", err))
		default:
			cfg.RootCAs = x509.NewCertPool()
			if !cfg.RootCAs.AppendCertsFromPEM(pem) {
				errs = append(errs, fmt.Errorf("MDS_KAFKA_TLS_CA_FILE: no PEM certificate in %s", c.TLSCAFile))
			}
		}
	}
	switch {
	case c.TLSCertFile != "" && c.TLSKeyFile == "":
		errs = append(errs, errors.New("MDS_KAFKA_TLS_CERT_FILE is set without MDS_KAFKA_TLS_KEY_FILE"))
	case c.TLSCertFile == "" && c.TLSKeyFile != "":
		errs = append(errs, errors.New("MDS_KAFKA_TLS_KEY_FILE is set without MDS_KAFKA_TLS_CERT_FILE"))
	case c.TLSCertFile != "":
		cert, err := tls.LoadX509KeyPair(c.TLSCertFile, c.TLSKeyFile)
		if err != nil {
			errs = append(errs, fmt.Errorf("MDS_KAFKA_TLS_CERT_FILE and MDS_KAFKA_TLS_KEY_FILE: %w", err))
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, errors.Join(errs...)
}

// credential is a secret read when an authentication needs it.
type credential func() (secret.Secret, error)

// credentialFrom takes a secret from its variable or, when the *_FILE
// variable is set, from that file, read at each call. Exactly one must be
// set; the file is checked now.
func credentialFrom(name string, value secret.Secret, file, mechanism string) (credential, error) {
	switch {
	case !value.IsZero() && file != "":
		return nil, fmt.Errorf("set only one of %s and %s_FILE", name, name)
	case file != "":
		if _, err := secret.FromFile(file); err != nil {
			return nil, fmt.Errorf("%s_FILE: %w", name, err)
		}
		return func() (secret.Secret, error) { return secret.FromFile(file) }, nil
	case !value.IsZero():
		return func() (secret.Secret, error) { return value, nil }, nil
	}
	return nil, fmt.Errorf("%s or %s_FILE is required for MDS_KAFKA_SASL_MECHANISM=%s", name, name, mechanism)
}

// saslMechanism returns nil for none. Settings of another mechanism are
// errors: they usually mean the mechanism itself was forgotten.
func (c Config) saslMechanism(name string) (sasl.Mechanism, error) {
	if !slices.Contains(mechanisms, name) {
		return nil, fmt.Errorf("MDS_KAFKA_SASL_MECHANISM must be one of %s, not %q",
			strings.Join(mechanisms, ", "), c.SASLMechanism)
	}
	usesPassword := name == MechanismPlain || name == MechanismScramSHA256 || name == MechanismScramSHA512
	var errs []error
	for _, s := range []struct {
		set, used bool
		name      string
	}{
		{c.SASLUsername != "", usesPassword, "MDS_KAFKA_SASL_USERNAME"},
		{!c.SASLPassword.IsZero(), usesPassword, "MDS_KAFKA_SASL_PASSWORD"},
		{c.SASLPasswordFile != "", usesPassword, "MDS_KAFKA_SASL_PASSWORD_FILE"},
		{!c.SASLOAuthToken.IsZero(), name == MechanismOAuthBearer, "MDS_KAFKA_SASL_OAUTH_TOKEN"},
		{c.SASLOAuthTokenFile != "", name == MechanismOAuthBearer, "MDS_KAFKA_SASL_OAUTH_TOKEN_FILE"},
	} {
		if s.set && !s.used {
			errs = append(errs, fmt.Errorf("%s is set but not used with MDS_KAFKA_SASL_MECHANISM=%s", s.name, name))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}

	switch name {
	case MechanismPlain, MechanismScramSHA256, MechanismScramSHA512:
		if c.SASLUsername == "" {
			errs = append(errs, fmt.Errorf("MDS_KAFKA_SASL_USERNAME is required for MDS_KAFKA_SASL_MECHANISM=%s", name))
		}
		password, err := credentialFrom("MDS_KAFKA_SASL_PASSWORD", c.SASLPassword, c.SASLPasswordFile, name)
		if err != nil {
			errs = append(errs, err)
		}
		if len(errs) > 0 {
			return nil, errors.Join(errs...)
		}
		user := c.SASLUsername
		if name == MechanismPlain {
			return plain.Plain(func(context.Context) (plain.Auth, error) {
				pw, err := password()
				return plain.Auth{User: user, Pass: pw.Reveal()}, err
			}), nil
		}
		auth := func(context.Context) (scram.Auth, error) {
			pw, err := password()
			return scram.Auth{User: user, Pass: pw.Reveal()}, err
		}
		if name == MechanismScramSHA256 {
			return scram.Sha256(auth), nil
		}
		return scram.Sha512(auth), nil

	case MechanismOAuthBearer:
		token, err := credentialFrom("MDS_KAFKA_SASL_OAUTH_TOKEN", c.SASLOAuthToken, c.SASLOAuthTokenFile, name)
		if err != nil {
			return nil, err
		}
		return oauth.Oauth(func(context.Context) (oauth.Auth, error) {
			t, err := token()
			return oauth.Auth{Token: t.Reveal()}, err
		}), nil

	case MechanismAWSMSKIAM:
		if c.AWSAccessKeyID == "" {
			errs = append(errs, errors.New("AWS_ACCESS_KEY_ID is required for MDS_KAFKA_SASL_MECHANISM=aws-msk-iam"))
		}
		if c.AWSSecretAccessKey.IsZero() {
			errs = append(errs, errors.New("AWS_SECRET_ACCESS_KEY is required for MDS_KAFKA_SASL_MECHANISM=aws-msk-iam"))
		}
		if !c.TLSEnabled {
			errs = append(errs, errors.New("MDS_KAFKA_SASL_MECHANISM=aws-msk-iam requires MDS_KAFKA_TLS_ENABLED=true (MSK serves IAM on TLS only)"))
		}
		if len(errs) > 0 {
			return nil, errors.Join(errs...)
		}
		return aws.Auth{
			AccessKey:    c.AWSAccessKeyID,
			SecretKey:    c.AWSSecretAccessKey.Reveal(),
			SessionToken: c.AWSSessionToken.Reveal(),
		}.AsManagedStreamingIAMMechanism(), nil
	}
	return nil, nil
}
