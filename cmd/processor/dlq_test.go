package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/market-data-store/mds/internal/app"
	"github.com/market-data-store/mds/internal/pgtest"
	"github.com/market-data-store/mds/internal/store"
	"github.com/market-data-store/mds/internal/tick"
)

// runCLI runs the processor command line in-process.
func runCLI(t *testing.T, env map[string]string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	code = run(ctx, args, env, &out, &errOut)
	return out.String(), errOut.String(), code
}

func TestDLQListAndReplay(t *testing.T) {
	kf, err := kfake.NewCluster(kfake.SeedTopics(1, "market.ticks", "fixed"))
	if err != nil {
		t.Fatal(err)
	}
	defer kf.Close()
	env := map[string]string{
		"MDS_DATABASE_URL":  pgtest.NewDatabase(t),
		"MDS_KAFKA_BROKERS": kf.ListenAddrs()[0],
		"MDS_LOG_LEVEL":     "warn",
	}
	if _, errOut, code := runCLI(t, env, "migrate"); code != 0 {
		t.Fatalf("migrate: %d %s", code, errOut)
	}

	// Three dead letters of partition 0, stored as the processor stores them.
	s, err := storeSettings(env)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	st, err := store.Open(ctx, s, zap.NewNop(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	tp := tick.TopicPartition{Topic: "market.ticks", Partition: 0}
	ch := &tick.Chunk{TopicPartition: tp, From: -1, Next: 3}
	for i, v := range []string{`{"symbol":"A"`, `{"ts":1,"symbol":"B","price":1}`, `not json`} {
		reason := tick.ReasonDecode
		if i == 1 {
			reason = tick.ReasonInvalid
		}
		ch.Dead = append(ch.Dead, tick.DeadLetter{TopicPartition: tp, Offset: int64(i), Key: []byte("k"), Value: []byte(v), Reason: reason, Err: "bad " + v})
	}
	if err := st.Write(ctx, &tick.Batch{Chunks: []*tick.Chunk{ch}}); err != nil {
		t.Fatal(err)
	}
	st.Close()

	out, _, code := runCLI(t, env, "dlq", "list")
	if code != 0 || strings.Count(out, "market.ticks/0@") != 3 || !strings.Contains(out, "not json") {
		t.Fatalf("dlq list (%d):\n%s", code, out)
	}
	out, _, _ = runCLI(t, env, "dlq", "list", "--reason", "invalid", "--json")
	var row struct {
		ID     int64  `json:"id"`
		Offset int64  `json:"offset"`
		Reason string `json:"reason"`
		Value  string `json:"value"`
	}
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &row); err != nil || row.Offset != 1 || row.Reason != "invalid" {
		t.Fatalf("dlq list --json: %v %q", err, out)
	}

	if _, errOut, code := runCLI(t, env, "dlq", "replay"); code == 0 || !strings.Contains(errOut, "choose what to replay") {
		t.Fatalf("replay without a selection: %d %s", code, errOut)
	}
	out, _, _ = runCLI(t, env, "dlq", "replay", "--reason", "decode", "--dry-run")
	if strings.Count(out, "would replay") != 2 {
		t.Fatalf("dry run:\n%s", out)
	}
	// Page by page: the second run replays what the first left, not the
	// first page again.
	if out, errOut, code := runCLI(t, env, "dlq", "replay", "--reason", "decode", "--to-topic", "fixed", "--limit", "1"); code != 0 ||
		!strings.Contains(out, "replayed 1") || !strings.Contains(out, "run again") {
		t.Fatalf("replay, first page: %d %s %s", code, out, errOut)
	}
	if out, errOut, code := runCLI(t, env, "dlq", "replay", "--reason", "decode", "--to-topic", "fixed", "--limit", "1"); code != 0 || !strings.Contains(out, "replayed 1") {
		t.Fatalf("replay, second page: %d %s %s", code, out, errOut)
	}
	out, _, _ = runCLI(t, env, "dlq", "list", "--pending")
	if strings.Count(out, "market.ticks/0@") != 1 {
		t.Fatalf("after replay, pending:\n%s", out)
	}
	if out, _, _ := runCLI(t, env, "dlq", "replay", "--reason", "decode", "--to-topic", "fixed"); !strings.Contains(out, "nothing to replay") {
		t.Fatalf("second replay re-published: %s", out)
	}

	// What reached the topic: the raw records, with where they came from.
	cl, err := kgo.NewClient(kgo.SeedBrokers(kf.ListenAddrs()...), kgo.ConsumeTopics("fixed"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var got []*kgo.Record
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for len(got) < 2 && pctx.Err() == nil {
		got = append(got, cl.PollFetches(pctx).Records()...)
	}
	if len(got) != 2 || string(got[0].Value) != `{"symbol":"A"` || string(got[1].Value) != "not json" ||
		len(got[0].Headers) != 1 || got[0].Headers[0].Key != "mds-replayed-from" || !strings.HasPrefix(string(got[0].Headers[0].Value), "market.ticks/0@0#") {
		t.Fatalf("replayed records: %d %v", len(got), got)
	}
}

// storeSettings is the store configuration the command line would use.
func storeSettings(env map[string]string) (store.Config, error) {
	s, err := app.LoadSettings(env)
	s.Store.AutoMigrate = false
	return s.Store, err
}

func TestClipEscapesWhatATerminalWouldRun(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"plain", 40, "plain"},
		{"a\x1b[31mred\r\tz", 40, `a\x1b[31mred\r\tz`},
		{"bad\xffutf8", 40, "bad\uFFFDutf8"},
		{"line\nbreak", 40, `line\nbreak`},
		{"ΑΒΓ", 40, "ΑΒΓ"},
		{"0123456789abcdefghij", 10, "0123456789…"},
		{"ΑΒΓΔ", 3, "Α…"}, // cut on a rune boundary
	} {
		if got := clip(tc.in, tc.n); got != tc.want {
			t.Errorf("clip(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}

func TestGapsList(t *testing.T) {
	env := map[string]string{
		"MDS_DATABASE_URL":  pgtest.NewDatabase(t),
		"MDS_KAFKA_BROKERS": "127.0.0.1:1",
		"MDS_LOG_LEVEL":     "warn",
	}
	if _, errOut, code := runCLI(t, env, "migrate"); code != 0 {
		t.Fatalf("migrate: %d %s", code, errOut)
	}
	if out, errOut, code := runCLI(t, env, "gaps"); code != 0 || !strings.Contains(errOut, "0 gap(s)") || strings.Count(out, "\n") != 1 {
		t.Fatalf("gaps of an empty table: %d\n%s\n%s", code, out, errOut)
	}
	s, err := storeSettings(env)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	st, err := store.Open(ctx, s, zap.NewNop(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	tp := tick.TopicPartition{Topic: "market.ticks", Partition: 2}
	ch := &tick.Chunk{TopicPartition: tp, From: -1, Next: 51, Gaps: []tick.Gap{{From: 0, To: 50, Lost: 50, Reason: tick.GapLogStart, Detail: "gone\x1b[31m"}}}
	ch.Dead = []tick.DeadLetter{{TopicPartition: tp, Offset: 50, Value: []byte("x"), Reason: tick.ReasonDecode, Err: "bad"}}
	if err := st.Write(ctx, &tick.Batch{Chunks: []*tick.Chunk{ch}}); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := runCLI(t, env, "gaps")
	if code != 0 || !strings.Contains(out, "market.ticks/2") || !strings.Contains(out, "log_start") || !strings.Contains(errOut, "1 gap(s)") {
		t.Fatalf("gaps: %d\n%s\n%s", code, out, errOut)
	}
	if strings.Contains(out, "\x1b") {
		t.Fatalf("gaps printed a terminal escape from the detail: %q", out)
	}
	out, _, code = runCLI(t, env, "gaps", "--json")
	var row map[string]any
	if err := json.Unmarshal([]byte(out), &row); code != 0 || err != nil {
		t.Fatalf("gaps --json: %d %v\n%s", code, err, out)
	}
	if row["from_offset"] != float64(0) || row["to_offset"] != float64(50) || row["lost_records"] != float64(50) || row["reason"] != "log_start" || row["group"] != "mds-processor" {
		t.Fatalf("gaps --json = %v", row)
	}
}
