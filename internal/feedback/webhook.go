package feedback

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/market-data-store/mds/backpressure"
	"github.com/market-data-store/mds/internal/retry"
	"github.com/market-data-store/mds/internal/secret"
)

// SignatureHeader carries "sha256=" and the hex HMAC-SHA256 of the body,
// keyed with MDS_FB_HTTP_HMAC_SECRET. The body holds the event time (ts), so
// a receiver can also refuse old replays.
const SignatureHeader = "X-MDS-Signature"

// maxResponseBody is how much of a response is read (and discarded) so the
// connection can be reused.
const maxResponseBody = 64 << 10

// Webhook POSTs feedback events to an HTTP endpoint: each event it is
// notified of, and the current state every heartbeat interval (reason
// "heartbeat"), all from the goroutine running Run, so that they arrive in
// order and a receiver that missed an event learns the level within one
// interval. One delivery makes the first attempt and up to MaxRetries
// retries, each bounded by Timeout, waiting an exponentially growing,
// jittered backoff between them; 2xx is success; other 4xx responses
// (except 408 and 429) and redirects, which are not followed, are not
// retried. A newer event cuts the backoff short: the superseded event is
// given up and the newer one sent.
type Webhook struct {
	endpoint *url.URL
	timeout  time.Duration
	retries  int
	backoff  time.Duration
	interval time.Duration
	token    secret.Secret
	hmacKey  secret.Secret
	client   *http.Client
	src      Source
	box      *mailbox
	m        *metrics
	log      *zap.Logger
	episodes *episodes

	// sleep waits between attempts; tests replace it.
	sleep func(ctx context.Context, d time.Duration, newer <-chan struct{}) error
}

// errSuperseded ends a delivery whose event was replaced by a newer one.
var errSuperseded = errors.New("superseded by a newer event")

// NewWebhook returns a webhook for an enabled configuration, reading the
// token and HMAC key files if set. It re-sends src's current state every
// interval (MDS_FB_HEARTBEAT_INTERVAL). Run it, and Close it after Run has
// returned to release its connections.
func NewWebhook(cfg WebhookConfig, src Source, interval time.Duration, log *zap.Logger, reg prometheus.Registerer) (*Webhook, error) {
	if !cfg.Enabled {
		return nil, errors.New("webhook is disabled (MDS_FB_ENABLE_HTTP_BROADCAST is false)")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if interval <= 0 {
		return nil, errors.New("MDS_FB_HEARTBEAT_INTERVAL must be > 0")
	}
	u, err := url.Parse(cfg.Endpoint)
	if err != nil { // checked by Validate; never quote the URL
		return nil, errors.New("MDS_FB_HTTP_ENDPOINT is not a URL")
	}
	token, err := secretSetting(cfg.Token, cfg.TokenFile, "MDS_FB_HTTP_TOKEN_FILE")
	if err != nil {
		return nil, err
	}
	key, err := secretSetting(cfg.HMACSecret, cfg.HMACSecretFile, "MDS_FB_HTTP_HMAC_SECRET_FILE")
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("registering feedback metrics: %w", err)
	}
	log = log.Named("feedback_webhook").With(zap.String("endpoint", u.Scheme+"://"+u.Host+u.Path)) // no user info, no query
	transport := http.DefaultTransport.(*http.Transport).Clone()
	return &Webhook{
		endpoint: u,
		timeout:  cfg.Timeout,
		retries:  cfg.MaxRetries,
		backoff:  cfg.Backoff,
		interval: interval,
		token:    token,
		hmacKey:  key,
		client: &http.Client{
			Transport: transport,
			// A redirect could carry the token elsewhere; it counts as a
			// failure instead.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		src:      src,
		box:      newMailbox(),
		m:        m,
		log:      log,
		episodes: &episodes{log: log},
		sleep:    sleep,
	}, nil
}

func secretSetting(v secret.Secret, file, fileVar string) (secret.Secret, error) {
	if file == "" {
		return v, nil
	}
	s, err := secret.FromFile(file)
	if err != nil {
		return secret.Secret{}, fmt.Errorf("%s: %w", fileVar, err)
	}
	return s, nil
}

// Close releases idle connections.
func (w *Webhook) Close() { w.client.CloseIdleConnections() }

// Notify hands e to Run for delivery, replacing an event Run has not taken
// yet. It returns at once and always nil: the outcome is counted and logged
// by the webhook.
func (w *Webhook) Notify(_ context.Context, e backpressure.Event) error {
	w.box.put(e)
	return nil
}

// Run delivers the current state at once and every heartbeat interval, and
// each event the webhook is notified of, until ctx is done; it returns nil.
// A failed delivery is logged once per episode of failures and made good by
// the next one.
func (w *Webhook) Run(ctx context.Context) error {
	heartbeat(ctx, w.interval, w.src, w.box, func(e backpressure.Event, newer <-chan struct{}) {
		switch err := w.deliver(ctx, e, newer); {
		case err == nil:
			w.episodes.succeeded()
		case ctx.Err() == nil && !errors.Is(err, errSuperseded):
			w.episodes.failed(err)
		}
	})
	return nil
}

// deliver posts e and returns nil once an attempt succeeded, or the last
// attempt's error. It returns early with an error when ctx is done or, while
// waiting to retry, when newer is closed.
func (w *Webhook) deliver(ctx context.Context, e backpressure.Event, newer <-chan struct{}) error {
	err := w.attempt(ctx, e, newer)
	outcome := outcomeOK
	if err != nil {
		outcome = outcomeError
	}
	w.m.published.WithLabelValues(sinkWebhook, outcome).Inc()
	return err
}

func (w *Webhook) attempt(ctx context.Context, e backpressure.Event, newer <-chan struct{}) error {
	body, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("encoding feedback event: %w", err)
	}
	waits := w.retryPolicy().Backoff()
	for attempt := 0; ; attempt++ {
		err := w.post(ctx, body)
		switch {
		case err == nil:
			w.m.attempts.WithLabelValues(attemptSuccess).Inc()
			return nil
		case attempt == w.retries || !retryable(err) || ctx.Err() != nil:
			w.m.attempts.WithLabelValues(attemptFailure).Inc()
			return fmt.Errorf("posting feedback webhook (attempt %d): %w", attempt+1, err)
		}
		w.m.attempts.WithLabelValues(attemptRetry).Inc()
		d := waits.NextBackOff()
		w.log.Debug("webhook attempt failed; retrying", zap.Int("attempt", attempt+1), zap.Duration("backoff", d), zap.Error(err))
		if err := w.sleep(ctx, d, newer); err != nil {
			return fmt.Errorf("posting feedback webhook: gave up waiting to retry: %w", err)
		}
	}
}

// retryPolicy is the wait between webhook attempts: the service's one
// retry policy, from Backoff doubling to MaxBackoff, each wait jittered
// within ±50 %.
func (w *Webhook) retryPolicy() retry.Policy {
	return retry.Policy{Initial: w.backoff, Max: MaxBackoff, Multiplier: 2, Jitter: true}
}

// post makes one attempt.
func (w *Webhook) post(ctx context.Context, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, w.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.endpoint.String(), bytes.NewReader(body))
	if err != nil {
		return errors.New("building webhook request") // the error would quote the URL
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-MDS-Schema", Schema)
	if !w.token.IsZero() {
		req.Header.Set("Authorization", "Bearer "+w.token.Reveal())
	}
	if !w.hmacKey.IsZero() {
		mac := hmac.New(sha256.New, []byte(w.hmacKey.Reveal()))
		mac.Write(body)
		req.Header.Set(SignatureHeader, "sha256="+hex.EncodeToString(mac.Sum(nil)))
	}
	resp, err := w.client.Do(req)
	if err != nil {
		// *url.Error quotes the URL, which may hold credentials: keep
		// only the cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponseBody))
	resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	return &StatusError{Code: resp.StatusCode}
}

// StatusError is a webhook response outside 2xx.
type StatusError struct {
	Code int
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("webhook answered %d %s", e.Code, http.StatusText(e.Code))
}

// Temporary reports whether a retry may succeed: server errors, 408 and 429.
func (e *StatusError) Temporary() bool {
	return e.Code >= 500 || e.Code == http.StatusRequestTimeout || e.Code == http.StatusTooManyRequests
}

// retryable: transport errors and timeouts are, statuses say themselves.
func retryable(err error) bool {
	var se *StatusError
	if errors.As(err, &se) {
		return se.Temporary()
	}
	return true
}

// sleep waits d, and returns early with an error when ctx is done or newer
// is closed.
func sleep(ctx context.Context, d time.Duration, newer <-chan struct{}) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-newer:
		return errSuperseded
	case <-ctx.Done():
		return ctx.Err()
	}
}
