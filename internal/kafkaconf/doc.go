// Package kafkaconf turns the MDS_KAFKA_* connection settings into franz-go
// client options, so that every Kafka client of the project (the consumer,
// the feedback producer, tickgen) reaches the cluster the same way: seed
// brokers, client id, TLS and SASL.
//
// [Config] is a plain settings struct with env and help tags;
// [DefaultConfig] gives a local plaintext broker without authentication.
// [Config.Validate] reports every missing or inconsistent setting by its
// variable name: a SASL mechanism without its credentials, credentials of a
// mechanism not selected, TLS files without MDS_KAFKA_TLS_ENABLED, a client
// certificate without its key, and CA, certificate and key files that
// cannot be read or parsed. [Config.Opts] validates and returns
// kgo.SeedBrokers, kgo.ClientID, and kgo.DialTLSConfig and kgo.SASL when
// enabled; the caller adds its own options (group, topics, producer
// settings) and owns the client.
//
// TLS: version 1.2 or later; the CA file replaces the system roots; the
// client certificate and key enable mutual TLS; the server name, when set,
// is verified instead of each broker's host name. Certificates are loaded
// once, by Opts: rotating them needs a restart.
//
// SASL: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER (a bearer token
// obtained elsewhere) and AWS_MSK_IAM (static keys from the standard AWS_*
// variables; MSK serves IAM on TLS only, so TLS is required). A password or
// token given as a *_FILE is read again at every authentication, so a
// rotated secret file, or a token file kept fresh by a sidecar, takes effect
// on the next connection or re-authentication.
//
// Secrets are [secret.Secret] values: printing, logging or marshalling a
// Config shows "[redacted]". Opts logs one info line describing the
// connection (brokers, TLS on or off, mechanism, user) and warns when
// certificate verification is disabled or when PLAIN or OAUTHBEARER
// credentials would cross the network unencrypted.
//
// franz-go keeps retrying a connection that is refused, so a wrong password
// or certificate would otherwise only show as a client that never makes
// progress. [Config.Ping] checks a client at start-up within the caller's
// deadline and returns an error naming the brokers, TLS setting, mechanism
// and user (never a secret).
//
// The package starts no goroutines and exports no metrics.
package kafkaconf
