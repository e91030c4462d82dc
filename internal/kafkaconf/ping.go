package kafkaconf

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Ping checks, within ctx, that cl (built from c.Opts) reaches a broker and
// is accepted by it: TLS handshake, SASL authentication and one metadata
// request. Call it at start-up with a timeout so that wrong credentials or
// certificates stop the process with a clear error instead of leaving the
// client retrying in the background. The error names the brokers, the TLS
// setting, the mechanism and the user, never a secret.
func (c Config) Ping(ctx context.Context, cl *kgo.Client) error {
	err := cl.Ping(ctx)
	if err == nil {
		return nil
	}
	what := fmt.Sprintf("reaching kafka brokers %s (tls %t, sasl %s", strings.Join(c.Brokers, ","), c.TLSEnabled,
		normalizeMechanism(c.SASLMechanism))
	if c.SASLUsername != "" {
		what += fmt.Sprintf(" as %q", c.SASLUsername)
	}
	what += ")"
	// A broker drops the connection, rather than answering, when SASL
	// credentials are rejected (some brokers) or when it speaks TLS and
	// the client does not.
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%s: the broker closed the connection; check the credentials and that MDS_KAFKA_TLS_ENABLED matches the listener: %w", what, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}
