package feedback

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/market-data-store/mds/backpressure"
	"github.com/market-data-store/mds/internal/secret"
)

const (
	plantedToken = "tok-PLANTED-7f3a"
	plantedKey   = "key-PLANTED-91bc"
)

var event = backpressure.Event{CoordinatorID: "mds-1", QueueSize: 8123, Capacity: 10000, Utilization: 0.8123,
	Level: backpressure.Hard, Reason: backpressure.ReasonHighWatermark, Source: backpressure.SourceStore, TS: 1760540000.123}

// receiver is a webhook endpoint answering with the given statuses in turn
// (the last one repeats); a status of 0 hangs until the request is
// abandoned. It checks the token and signature of every request.
type receiver struct {
	t        *testing.T
	token    string
	key      string
	statuses []int

	mu     sync.Mutex
	calls  int
	bodies [][]byte
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		rc.t.Errorf("reading body: %v", err)
	}
	rc.mu.Lock()
	status := rc.statuses[min(rc.calls, len(rc.statuses)-1)]
	rc.calls++
	rc.mu.Unlock()
	if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" || r.Header.Get("X-MDS-Schema") != Schema {
		rc.t.Errorf("request %s with headers %v", r.Method, r.Header)
	}
	if rc.token != "" && r.Header.Get("Authorization") != "Bearer "+rc.token {
		rc.t.Errorf("Authorization = %q", r.Header.Get("Authorization"))
		status = http.StatusUnauthorized
	}
	if rc.key != "" {
		mac := hmac.New(sha256.New, []byte(rc.key))
		mac.Write(body)
		got, ok := strings.CutPrefix(r.Header.Get(SignatureHeader), "sha256=")
		sig, err := hex.DecodeString(got)
		if !ok || err != nil || !hmac.Equal(sig, mac.Sum(nil)) {
			rc.t.Errorf("%s = %q does not sign the body", SignatureHeader, r.Header.Get(SignatureHeader))
			status = http.StatusUnauthorized
		}
	}
	if status == 0 {
		<-r.Context().Done()
		return
	}
	if status/100 == 2 {
		rc.mu.Lock()
		rc.bodies = append(rc.bodies, body)
		rc.mu.Unlock()
	}
	w.WriteHeader(status)
}

func (rc *receiver) stats() (calls int, delivered [][]byte) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.calls, rc.bodies
}

func serve(t *testing.T, rc *receiver) string {
	t.Helper()
	rc.t = t
	srv := httptest.NewServer(rc)
	t.Cleanup(srv.Close)
	return srv.URL
}

func webhookConfig(endpoint string) WebhookConfig {
	c := DefaultConfig().Webhook
	c.Enabled = true
	c.Endpoint = endpoint
	c.Timeout = 2 * time.Second
	c.Backoff = 40 * time.Millisecond
	return c
}

func newTestWebhook(t *testing.T, cfg WebhookConfig, log *zap.Logger) (*Webhook, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	w, err := NewWebhook(cfg, &state{e: event}, time.Minute, log, reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	return w, reg
}

// recordSleeps makes w record its backoffs instead of sleeping.
func recordSleeps(w *Webhook) *[]time.Duration {
	var slept []time.Duration
	w.sleep = func(_ context.Context, d time.Duration, _ <-chan struct{}) error {
		slept = append(slept, d)
		return nil
	}
	return &slept
}

func attempts(w *Webhook, outcome string) float64 {
	return testutil.ToFloat64(w.m.attempts.WithLabelValues(outcome))
}

func published(m *metrics, sink, outcome string) float64 {
	return testutil.ToFloat64(m.published.WithLabelValues(sink, outcome))
}

func TestWebhookRetriesThenDeliversOnce(t *testing.T) {
	rc := &receiver{token: plantedToken, key: plantedKey, statuses: []int{503, 502, 204}}
	cfg := webhookConfig(serve(t, rc))
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(plantedToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.TokenFile = tokenFile
	cfg.HMACSecret = secret.New(plantedKey)
	w, _ := newTestWebhook(t, cfg, zap.NewNop())
	slept := recordSleeps(w)

	if err := w.deliver(context.Background(), event, nil); err != nil {
		t.Fatal(err)
	}
	calls, delivered := rc.stats()
	if calls != 3 || len(delivered) != 1 {
		t.Fatalf("%d calls, %d delivered; want 3 calls, 1 delivered", calls, len(delivered))
	}
	var got backpressure.Event
	if err := json.Unmarshal(delivered[0], &got); err != nil || got != event {
		t.Fatalf("delivered %s (%v), want %+v", delivered[0], err, event)
	}
	if s, r, f := attempts(w, attemptSuccess), attempts(w, attemptRetry), attempts(w, attemptFailure); s != 1 || r != 2 || f != 0 {
		t.Errorf("attempts success=%v retry=%v failure=%v, want 1 2 0", s, r, f)
	}
	if ok, bad := published(w.m, sinkWebhook, outcomeOK), published(w.m, sinkWebhook, outcomeError); ok != 1 || bad != 0 {
		t.Errorf("published ok=%v error=%v", ok, bad)
	}
	// Exponential with jitter: retry n waits B·2^(n-1) within ±50 %.
	b := cfg.Backoff
	if len(*slept) != 2 {
		t.Fatalf("slept %v", *slept)
	}
	d0, d1 := (*slept)[0], (*slept)[1]
	if d0 < b/2 || d0 > b*3/2 || d1 < b || d1 > 3*b {
		t.Errorf("backoffs %v, %v; want within [%v,%v] then [%v,%v]", d0, d1, b/2, b*3/2, b, 3*b)
	}
}

func TestWebhookBackoffIsCappedAndJittered(t *testing.T) {
	w := &Webhook{backoff: 10 * time.Second}
	seen := map[time.Duration]bool{}
	for range 50 {
		waits := w.retryPolicy().Backoff()
		var d time.Duration
		for range 10 {
			d = waits.NextBackOff()
		}
		if d < MaxBackoff/2 || d > MaxBackoff*3/2 {
			t.Fatalf("tenth wait = %v, want within [%v, %v] (MaxBackoff ±50%%)", d, MaxBackoff/2, MaxBackoff*3/2)
		}
		seen[d] = true
	}
	if len(seen) < 10 {
		t.Errorf("only %d distinct waits in 50: no jitter?", len(seen))
	}
}

func TestWebhookGivesUp(t *testing.T) {
	tests := []struct {
		name     string
		statuses []int
		retries  int
		calls    int
		retried  float64
	}{
		{"server errors until the last retry", []int{500}, 2, 3, 2},
		{"client error is not retried", []int{400, 204}, 3, 1, 0},
		{"redirect is not followed", []int{302, 204}, 3, 1, 0},
		{"no retries configured", []int{503, 204}, 0, 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := &receiver{statuses: tt.statuses}
			cfg := webhookConfig(serve(t, rc))
			cfg.MaxRetries = tt.retries
			w, _ := newTestWebhook(t, cfg, zap.NewNop())
			recordSleeps(w)
			err := w.deliver(context.Background(), event, nil)
			var se *StatusError
			if !errors.As(err, &se) || se.Code != tt.statuses[0] {
				t.Fatalf("deliver = %v, want status %d", err, tt.statuses[0])
			}
			if calls, _ := rc.stats(); calls != tt.calls {
				t.Errorf("%d calls, want %d", calls, tt.calls)
			}
			if r, f := attempts(w, attemptRetry), attempts(w, attemptFailure); r != tt.retried || f != 1 {
				t.Errorf("attempts retry=%v failure=%v, want %v 1", r, f, tt.retried)
			}
			if bad := published(w.m, sinkWebhook, outcomeError); bad != 1 {
				t.Errorf("published error=%v, want 1", bad)
			}
		})
	}
}

// A hanging endpoint costs one timeout per attempt, then real backoff, then
// the retry succeeds.
func TestWebhookAttemptTimeout(t *testing.T) {
	rc := &receiver{statuses: []int{0, 200}}
	cfg := webhookConfig(serve(t, rc))
	cfg.Timeout = 200 * time.Millisecond
	cfg.Backoff = 10 * time.Millisecond
	w, _ := newTestWebhook(t, cfg, zap.NewNop())
	start := time.Now()
	if err := w.deliver(context.Background(), event, nil); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < cfg.Timeout || took > 5*time.Second {
		t.Errorf("took %v, want at least the %v timeout and far less than 5s", took, cfg.Timeout)
	}
	if calls, delivered := rc.stats(); calls != 2 || len(delivered) != 1 {
		t.Errorf("%d calls, %d delivered", calls, len(delivered))
	}
}

func TestWebhookDeliveryStopsWithContext(t *testing.T) {
	rc := &receiver{statuses: []int{0}}
	cfg := webhookConfig(serve(t, rc))
	cfg.Timeout = time.Minute
	w, _ := newTestWebhook(t, cfg, zap.NewNop())
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- w.deliver(ctx, event, nil) }()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("deliver = %v, want the context's error", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("deliver ignored its context")
	}
}

// Secrets planted in the settings never show in fmt or JSON renderings of
// the configuration, in errors, or in logs.
func TestWebhookSecretsStayHidden(t *testing.T) {
	// A port nothing listens on, so every attempt fails.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	planted := []string{plantedToken, plantedKey, "pw-PLANTED-55", "q-PLANTED-66"}

	cfg := DefaultConfig()
	cfg.Webhook = webhookConfig("http://user:pw-PLANTED-55@" + addr + "/hook?sig=q-PLANTED-66")
	cfg.Webhook.Token = secret.New(plantedToken)
	cfg.Webhook.HMACSecret = secret.New(plantedKey)
	cfg.Webhook.MaxRetries = 1
	core, logs := observer.New(zapcore.DebugLevel)
	w, _ := newTestWebhook(t, cfg.Webhook, zap.New(core))
	recordSleeps(w)
	notifyErr := w.deliver(context.Background(), event, nil)
	if notifyErr == nil {
		t.Fatal("delivery to a closed port succeeded")
	}
	js, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	shown := []string{
		fmt.Sprintf("%v", cfg), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", cfg), fmt.Sprintf("%v", &cfg),
		fmt.Sprintf("%q %x %d", cfg.Webhook.Token, cfg.Webhook.HMACSecret, cfg.Webhook.Token),
		string(js), notifyErr.Error(),
	}
	if logs.Len() == 0 {
		t.Fatal("no retry logged at debug level")
	}
	for _, e := range logs.All() {
		enc, err := zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()).EncodeEntry(e.Entry, e.Context)
		if err != nil {
			t.Fatal(err)
		}
		shown = append(shown, enc.String())
	}
	for _, s := range shown {
		for _, p := range planted[:2] {
			if strings.Contains(s, p) {
				t.Errorf("secret %q shown in %s", p, s)
			}
		}
	}
	// The endpoint's password and query are hidden where we render it
	// ourselves: errors and logs.
	for _, s := range shown[len(shown)-logs.Len()-1:] {
		for _, p := range planted[2:] {
			if strings.Contains(s, p) {
				t.Errorf("endpoint credential %q shown in %s", p, s)
			}
		}
	}
}

func TestWebhookConfigValidate(t *testing.T) {
	ok := webhookConfig("https://hooks.example.com/mds")
	tests := []struct {
		name string
		edit func(*WebhookConfig)
		want string // in the error; "" for none
	}{
		{"valid", func(*WebhookConfig) {}, ""},
		{"disabled is not checked", func(c *WebhookConfig) { *c = WebhookConfig{} }, ""},
		{"enabled without endpoint", func(c *WebhookConfig) { c.Endpoint = "" }, "MDS_FB_HTTP_ENDPOINT must be set"},
		{"not http", func(c *WebhookConfig) { c.Endpoint = "ftp://x/y" }, "MDS_FB_HTTP_ENDPOINT must be an http"},
		{"no host", func(c *WebhookConfig) { c.Endpoint = "http:///x" }, "MDS_FB_HTTP_ENDPOINT"},
		{"zero timeout", func(c *WebhookConfig) { c.Timeout = 0 }, "MDS_FB_HTTP_TIMEOUT"},
		{"negative retries", func(c *WebhookConfig) { c.MaxRetries = -1 }, "MDS_FB_HTTP_MAX_RETRIES"},
		{"too many retries", func(c *WebhookConfig) { c.MaxRetries = 11 }, "MDS_FB_HTTP_MAX_RETRIES"},
		{"zero backoff", func(c *WebhookConfig) { c.Backoff = 0 }, "MDS_FB_HTTP_BACKOFF"},
		{"token twice", func(c *WebhookConfig) { c.Token = secret.New("a"); c.TokenFile = "/f" }, "MDS_FB_HTTP_TOKEN_FILE"},
		{"key twice", func(c *WebhookConfig) { c.HMACSecret = secret.New("a"); c.HMACSecretFile = "/f" }, "MDS_FB_HTTP_HMAC_SECRET_FILE"},
	}
	for _, tt := range tests {
		c := ok
		tt.edit(&c)
		err := c.Validate()
		if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("%s: Validate() = %v, want %q", tt.name, err, tt.want)
		}
	}
	if _, err := NewWebhook(WebhookConfig{}, &state{}, time.Second, zap.NewNop(), prometheus.NewRegistry()); err == nil {
		t.Error("NewWebhook accepted a disabled configuration")
	}
	missing := ok
	missing.HMACSecretFile = filepath.Join(t.TempDir(), "absent")
	if _, err := NewWebhook(missing, &state{}, time.Second, zap.NewNop(), prometheus.NewRegistry()); err == nil || !strings.Contains(err.Error(), "MDS_FB_HTTP_HMAC_SECRET_FILE") {
		t.Errorf("NewWebhook with a missing key file: %v", err)
	}
}

func TestConfigDefaults(t *testing.T) {
	c := DefaultConfig()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	w := c.Webhook
	if c.Topic != "market.feedback" || c.HeartbeatInterval != 5*time.Second || w.Enabled ||
		w.Timeout != 2500*time.Millisecond || w.MaxRetries != 3 || w.Backoff != 500*time.Millisecond {
		t.Errorf("defaults %+v", c)
	}
	c.Topic, c.HeartbeatInterval = "", 0
	err := c.Validate()
	if err == nil || !strings.Contains(err.Error(), "MDS_FEEDBACK_TOPIC") || !strings.Contains(err.Error(), "MDS_FB_HEARTBEAT_INTERVAL") {
		t.Errorf("Validate() = %v", err)
	}
}

// levelReceiver is a webhook endpoint that records the events it is sent
// and fails every attempt while failing is set.
type levelReceiver struct {
	mu        sync.Mutex
	failing   bool
	attempts  []backpressure.Event
	delivered []backpressure.Event
}

func (rc *levelReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var e backpressure.Event
	if err := json.NewDecoder(r.Body).Decode(&e); err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.attempts = append(rc.attempts, e)
	if rc.failing {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	rc.delivered = append(rc.delivered, e)
	w.WriteHeader(http.StatusNoContent)
}

func (rc *levelReceiver) setFailing(v bool) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.failing = v
}

// count returns how many attempts and deliveries of level there were.
func (rc *levelReceiver) count(level backpressure.Level) (attempts, delivered int, last backpressure.Event) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for _, e := range rc.attempts {
		if e.Level == level {
			attempts++
		}
	}
	for _, e := range rc.delivered {
		if e.Level == level {
			delivered++
			last = e
		}
	}
	return attempts, delivered, last
}

// runWebhook runs w until the test ends.
func runWebhook(t *testing.T, w *Webhook) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

// A receiver that missed the OK after a HARD (every attempt failed) learns
// it from the next heartbeat once it recovers, instead of staying stopped.
func TestWebhookHeartbeatMakesGoodAMissedEvent(t *testing.T) {
	const interval = 400 * time.Millisecond
	rc := &levelReceiver{}
	srv := httptest.NewServer(rc)
	t.Cleanup(srv.Close)
	cfg := webhookConfig(srv.URL)
	cfg.MaxRetries = 1
	cfg.Backoff = 10 * time.Millisecond
	src := &state{e: event} // hard
	core, logs := observer.New(zapcore.InfoLevel)
	w, err := NewWebhook(cfg, src, interval, zap.New(core), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	runWebhook(t, w)

	// The first heartbeat goes out at once.
	waitFor(t, func() bool { _, n, _ := rc.count(backpressure.Hard); return n >= 1 })
	_, _, hb := rc.count(backpressure.Hard)
	if hb.Reason != backpressure.ReasonHeartbeat || hb.HeartbeatInterval != interval.Seconds() {
		t.Errorf("first delivery %+v, want a heartbeat carrying the interval", hb)
	}

	rc.setFailing(true)
	ok := event
	ok.Level, ok.Reason, ok.QueueSize = backpressure.OK, backpressure.ReasonLowWatermark, 10
	src.set(backpressure.OK)
	if err := w.Notify(context.Background(), ok); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { n, _, _ := rc.count(backpressure.OK); return n >= 1+cfg.MaxRetries })
	recovered := time.Now()
	rc.setFailing(false)
	waitFor(t, func() bool { _, n, _ := rc.count(backpressure.OK); return n >= 1 })
	if took := time.Since(recovered); took > interval+200*time.Millisecond {
		t.Errorf("receiver learned ok %v after it recovered, want within one heartbeat interval (%v)", took, interval)
	}
	if _, _, got := rc.count(backpressure.OK); got.Reason != backpressure.ReasonHeartbeat {
		t.Errorf("ok delivered as %+v, want a heartbeat", got)
	}
	if n := logs.FilterMessageSnippet("publishing feedback failed").Len(); n != 1 {
		t.Errorf("failure logged %d times, want once", n)
	}
	waitFor(t, func() bool { return logs.FilterMessageSnippet("publishing feedback recovered").Len() == 1 })
}

// A newer event cuts the retries of an older one short.
func TestWebhookNewerEventSupersedesRetries(t *testing.T) {
	rc := &levelReceiver{failing: true}
	srv := httptest.NewServer(rc)
	t.Cleanup(srv.Close)
	cfg := webhookConfig(srv.URL)
	cfg.MaxRetries = 10
	cfg.Backoff = time.Hour / 2 // only a newer event ends the wait
	src := &state{e: event}
	w, err := NewWebhook(cfg, src, time.Hour, zap.NewNop(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	runWebhook(t, w)
	waitFor(t, func() bool { n, _, _ := rc.count(backpressure.Hard); return n == 1 }) // waiting to retry
	rc.setFailing(false)
	ok := event
	ok.Level, ok.Reason = backpressure.OK, backpressure.ReasonLowWatermark
	if err := w.Notify(context.Background(), ok); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { _, n, _ := rc.count(backpressure.OK); return n == 1 })
	if n, _, _ := rc.count(backpressure.Hard); n != 1 {
		t.Errorf("the superseded event was tried %d times, want 1", n)
	}
}
