// Package secret keeps credentials out of logs, errors, help output, health
// detail and panics.
//
// A [Secret] holds a password, token or key passphrase. fmt (every verb,
// including %+v and %#v on structs that hold one, exported field or not),
// String, GoString, encoding/json and zap all render it as [Redacted]
// ("[redacted]"); an empty Secret renders as "" so that "not set" stays
// visible. [Secret.Reveal] is the one way to the value and belongs only at
// the point where the value is handed to its recipient. Secret implements
// encoding.TextUnmarshaler, so caarlos0/env fills it from an environment
// variable; [FromFile] reads one from a mounted file (Kubernetes or Docker
// secrets), so it need not sit in the environment at all.
//
// For PostgreSQL connection strings, in URL or keyword/value form,
// [RedactDSN] hides the password and sslpassword values for display, and
// [WithPassword] adds a password read from a file (MDS_DATABASE_PASSWORD_FILE)
// to a connection string that has none, and [CheckDSN] refuses a string
// whose password cannot be located. All three locate the password with the
// rules libpq and pgx use to parse it; a string whose structure is unclear
// is redacted whole rather than guessed at.
//
// The package does no I/O except in FromFile, starts no goroutines and
// exports no metrics.
package secret
