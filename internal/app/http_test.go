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

type fakeMember struct {
	ready   bool
	problem error
}

func (m fakeMember) Ready() bool    { return m.ready }
func (m fakeMember) Problem() error { return m.problem }

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
	missing := func(context.Context) error { return errors.New("topic ticks does not exist") }
	ready, joining := fakeMember{ready: true}, fakeMember{}
	denied := fakeMember{problem: errors.New("group g: GROUP_AUTHORIZATION_FAILED")}
	for _, tc := range []struct {
		name   string
		member fakeMember
		kafka  brokers
		topics topicCheck
		db     error
		stall  *coordinator.Stall
		code   int
		check  string
	}{
		{"all well", ready, up, up, nil, nil, 200, `"kafka":"ok"`},
		{"not joined yet", joining, up, up, nil, nil, 503, "not yet a group member"},
		{"group denied", denied, up, up, nil, nil, 503, `"kafka":"cannot consume: group g: GROUP_AUTHORIZATION_FAILED"`},
		{"topic missing", joining, up, missing, nil, nil, 503, `"kafka":"cannot consume: topic ticks does not exist"`},
		{"brokers gone", ready, down, up, nil, nil, 503, "connection refused"},
		{"database down", ready, up, up, errors.New("connection refused"), nil, 503, `"database":"unreachable`},
		{"writing stalled", ready, up, up, nil, &coordinator.Stall{Cause: "42501", Error: "permission denied for table ticks", Batches: 1}, 503,
			`"writer":"stalled (cause 42501): permission denied for table ticks"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHealthServer("", false, prometheus.NewRegistry(), tc.member, tc.kafka, tc.topics, fakeDB{tc.db}, fakeLevel{tc.stall}, zap.NewNop())
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
		ok := func(context.Context) error { return nil }
		h := newHealthServer("", on, prometheus.NewRegistry(), fakeMember{ready: true}, ok, ok, fakeDB{}, fakeLevel{}, zap.NewNop())
		rec := httptest.NewRecorder()
		h.mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/debug/pprof/", nil))
		if (rec.Code == 200) != on {
			t.Fatalf("pprof on=%v: status %d", on, rec.Code)
		}
	}
}
