package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/market-data-store/mds/backpressure"
	"github.com/market-data-store/mds/internal/coordinator"
	"github.com/market-data-store/mds/internal/store"
)

// Readiness sources, declared here where they are used.
type (
	groupMember interface {
		Ready() bool
		// Problem says why the member cannot consume, when a fetch
		// or group error told it (a denied ACL, say).
		Problem() error
	}
	// brokers answers whether the Kafka cluster takes our connection now.
	brokers func(ctx context.Context) error
	// topicCheck reports the consumed topics that are missing or denied.
	topicCheck func(ctx context.Context) error
	database   interface {
		Ping(ctx context.Context) error
		Status(ctx context.Context) store.Status
	}
	// writer is the coordinator: its level, and whether writing stalled.
	writer interface {
		Current() backpressure.Event
		Stalled() (coordinator.Stall, bool)
	}
)

// readyReport is the /readyz body.
type readyReport struct {
	Ready    bool              `json:"ready"`
	Checks   map[string]string `json:"checks"`
	Database store.Status      `json:"database"`
	Level    string            `json:"level"`
	Queue    int               `json:"queue_size"`
	// Stall is why writing stalled, when it did (see Coordinator.Stalled).
	Stall *coordinator.Stall `json:"stall,omitempty"`
}

// healthServer serves /metrics, /healthz and /readyz.
type healthServer struct {
	addr   string
	mux    *http.ServeMux
	log    *zap.Logger
	listen func(network, addr string) (net.Listener, error)
}

func newHealthServer(addr string, pprofOn bool, g prometheus.Gatherer, member groupMember, kafka brokers, topics topicCheck, db database, lv writer, log *zap.Logger) *healthServer {
	var reasonMu sync.Mutex
	var lastReason string
	// notReady logs why the member is not ready when the reason changes,
	// so that a member that cannot consume says so once in the log too.
	notReady := func(reason string) {
		reasonMu.Lock()
		defer reasonMu.Unlock()
		if reason != lastReason {
			lastReason = reason
			log.Warn("not ready", zap.String("kafka", reason))
		}
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{ErrorLog: zap.NewStdLog(log)}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		rep := readyReport{Ready: true, Checks: map[string]string{}}
		switch err := kafka(ctx); {
		case err != nil:
			rep.Ready, rep.Checks["kafka"] = false, "unreachable: "+err.Error()
		case !member.Ready():
			// A member that cannot consume says why, instead of
			// waiting without partitions in silence.
			reason := "not yet a group member that has polled"
			if err := member.Problem(); err != nil {
				reason = "cannot consume: " + err.Error()
			} else if err := topics(ctx); err != nil {
				reason = "cannot consume: " + err.Error()
			}
			if reason != "not yet a group member that has polled" {
				notReady(reason)
			}
			rep.Ready, rep.Checks["kafka"] = false, reason
		default:
			rep.Checks["kafka"] = "ok"
		}
		if err := db.Ping(ctx); err != nil {
			// The error of a ping names no secret: pgx errors carry host
			// and user at most, never the password.
			rep.Ready, rep.Checks["database"] = false, "unreachable: "+err.Error()
		} else {
			rep.Checks["database"] = "ok"
		}
		rep.Database = db.Status(ctx)
		if st, ok := lv.Stalled(); ok {
			rep.Ready, rep.Checks["writer"] = false, fmt.Sprintf("stalled (cause %s): %s", st.Cause, st.Error)
			rep.Stall = &st
		} else {
			rep.Checks["writer"] = "ok"
		}
		ev := lv.Current()
		rep.Level, rep.Queue = ev.Level.String(), ev.QueueSize
		w.Header().Set("Content-Type", "application/json")
		if !rep.Ready {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(rep)
	})
	if pprofOn {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	return &healthServer{addr: addr, mux: mux, log: log, listen: net.Listen}
}

// Run serves until ctx is done, then shuts down gracefully.
func (h *healthServer) Run(ctx context.Context) error {
	l, err := h.listen("tcp", h.addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: h.mux, ReadHeaderTimeout: 5 * time.Second}
	h.log.Info("serving metrics and health", zap.String("addr", l.Addr().String()))
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return err
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
