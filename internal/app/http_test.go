package app

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/market-data-store/mds/backpressure"
	"github.com/market-data-store/mds/internal/coordinator"
	"github.com/market-data-store/mds/internal/store"
)

type fakeMember bool

func (m fakeMember) Ready() bool { return bool(m) }

type fakeDB struct{ err error }

func (d fakeDB) Ping(context.Context) error { return d.err }
func (d fakeDB) Status(context.Context) store.Status {
	return store.Status{SchemaVersion: 1, SchemaLatest: 1, Warning: "no timescaledb"}
}

type fakeLevel struct{ stall *coordinator.Stall }

func (fakeLevel) Current() backpressure.Event {
	return backpressure.Event{Level: backpressure.Soft, QueueSize: 6000}
}

func (f fakeLevel) Stalled() (coordinator.Stall, bool) {
	if f.stall == nil {
		return coordinator.Stall{}, false
	}
	return *f.stall, true
}

func TestReadyz(t *testing.T) {
	down := func(context.Context) error { return errors.New("dial tcp: connection refused") }
	up := func(context.Context) error { return nil }
	for _, tc := range []struct {
		name   string
		member fakeMember
		kafka  brokers
		db     error
		stall  *coordinator.Stall
		code   int
		check  string
	}{
		{"all well", true, up, nil, nil, 200, `"writer":"ok"`},
		{"not joined yet", false, up, nil, nil, 503, "not yet a group member"},
		{"brokers gone", true, down, nil, nil, 503, "connection refused"},
		{"database down", true, up, errors.New("connection refused"), nil, 503, `"database":"unreachable`},
		{"writing stalled", true, up, nil, &coordinator.Stall{Cause: "42501", Error: "permission denied for table ticks", Batches: 1}, 503,
			`"writer":"stalled (cause 42501): permission denied for table ticks"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHealthServer("", false, prometheus.NewRegistry(), tc.member, tc.kafka, fakeDB{tc.db}, fakeLevel{tc.stall}, zap.NewNop())
			rec := httptest.NewRecorder()
			h.mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
			body := rec.Body.String()
			if rec.Code != tc.code || !strings.Contains(body, tc.check) {
				t.Fatalf("got %d %s; want %d with %s", rec.Code, body, tc.code, tc.check)
			}
			var rep readyReport
			if err := json.Unmarshal(rec.Body.Bytes(), &rep); err != nil {
				t.Fatal(err)
			}
			if rep.Level != "soft" || rep.Queue != 6000 || rep.Database.SchemaVersion != 1 || rep.Database.Warning == "" {
				t.Fatalf("detail missing: %+v", rep)
			}
		})
	}
}

func TestPprofOnlyWhenAsked(t *testing.T) {
	for _, on := range []bool{false, true} {
		h := newHealthServer("", on, prometheus.NewRegistry(), fakeMember(true), func(context.Context) error { return nil }, fakeDB{}, fakeLevel{}, zap.NewNop())
		rec := httptest.NewRecorder()
		h.mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/debug/pprof/", nil))
		if (rec.Code == 200) != on {
			t.Fatalf("pprof on=%v: status %d", on, rec.Code)
		}
	}
}
