package backpressure_test

import (
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/market-data-store/mds/backpressure"
)

func TestParseLevel(t *testing.T) {
	tests := []struct {
		in      string
		want    backpressure.Level
		wantErr bool
	}{
		{in: "ok", want: backpressure.OK},
		{in: "OK", want: backpressure.OK},
		{in: "oK", want: backpressure.OK},
		{in: "soft", want: backpressure.Soft},
		{in: "sOfT", want: backpressure.Soft},
		{in: "hard", want: backpressure.Hard},
		{in: "hARD", want: backpressure.Hard},
		{in: "", wantErr: true},
		{in: "warn", wantErr: true},
		{in: " ok", wantErr: true},
		{in: "hardd", wantErr: true},
		{in: "ſoft", wantErr: true},    // U+017F folds to s in Unicode, not in ASCII
		{in: "o\u212a", wantErr: true}, // Kelvin sign
	}
	for _, tt := range tests {
		got, err := backpressure.ParseLevel(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseLevel(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

// The event JSON is a contract with producers (DESIGN.md).
func TestEventJSON(t *testing.T) {
	const wire = `{"coordinator_id":"mds-1","queue_size":8123,"capacity":10000,"utilization":0.8123,"level":"hard","reason":"high_watermark","source":"store","ts":1760540000.123}`
	var e backpressure.Event
	if err := json.Unmarshal([]byte(wire), &e); err != nil {
		t.Fatal(err)
	}
	want := backpressure.Event{CoordinatorID: "mds-1", QueueSize: 8123, Capacity: 10000, Utilization: 0.8123,
		Level: backpressure.Hard, Reason: backpressure.ReasonHighWatermark, Source: backpressure.SourceStore, TS: 1760540000.123}
	if e != want {
		t.Fatalf("decoded %+v, want %+v", e, want)
	}
	out, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != wire {
		t.Fatalf("encoded\n%s\nwant\n%s", out, wire)
	}
	if got := e.Time(); got.Sub(time.Unix(1760540000, 123e6)).Abs() > time.Microsecond {
		t.Errorf("Time() = %v", got)
	}
	if err := json.Unmarshal([]byte(`{"level":"critical"}`), &e); err == nil {
		t.Error("unknown level decoded without error")
	}
	if _, err := json.Marshal(backpressure.Event{Level: 7}); err == nil {
		t.Error("out-of-range level encoded without error")
	}
}

// TestSchemaMatchesEvent keeps docs/feedback-event.schema.json in step with
// the Event type.
func TestSchemaMatchesEvent(t *testing.T) {
	raw, err := os.ReadFile("../docs/feedback-event.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	var schema struct {
		Required   []string `json:"required"`
		Properties map[string]struct {
			Type string   `json:"type"`
			Enum []string `json:"enum"`
		} `json:"properties"`
		AdditionalProperties *bool `json:"additionalProperties"`
	}
	if err := json.Unmarshal(raw, &schema); err != nil {
		t.Fatalf("schema is not JSON: %v", err)
	}
	var fields, always []string
	typ := reflect.TypeFor[backpressure.Event]()
	for i := range typ.NumField() {
		name, opts, _ := strings.Cut(typ.Field(i).Tag.Get("json"), ",")
		fields = append(fields, name)
		if opts != "omitempty" {
			always = append(always, name)
		}
		if _, ok := schema.Properties[name]; !ok {
			t.Errorf("schema lacks property %q", name)
		}
	}
	for name := range schema.Properties {
		if !slices.Contains(fields, name) {
			t.Errorf("schema property %q is not an Event field", name)
		}
	}
	slices.Sort(always)
	req := slices.Sorted(slices.Values(schema.Required))
	if !slices.Equal(always, req) {
		t.Errorf("schema requires %v, Event always writes %v", req, always)
	}
	levels := schema.Properties["level"].Enum
	if !slices.Equal(levels, []string{"ok", "soft", "hard"}) {
		t.Errorf("level enum = %v", levels)
	}
}

func ExampleParseLevel() {
	l, err := backpressure.ParseLevel("HARD")
	fmt.Println(l, err)
	_, err = backpressure.ParseLevel("stop")
	fmt.Println(err)
	// Output:
	// hard <nil>
	// unknown level "stop" (want ok, soft or hard)
}
