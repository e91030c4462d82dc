package main

import (
	"bytes"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/market-data-store/mds/internal/app"
	"github.com/market-data-store/mds/internal/config"
)

// The README's settings table is generated; this keeps it from drifting, and
// makes sure the README names no variable the service does not read.
func TestREADMESettingsAreCurrent(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	settings := config.Settings(app.DefaultSettings())
	if err := config.WriteMarkdown(&want, settings); err != nil {
		t.Fatal(err)
	}
	begin := bytes.Index(readme, []byte("<!-- settings:begin"))
	end := bytes.Index(readme, []byte("<!-- settings:end -->"))
	if begin < 0 || end < begin {
		t.Fatal("README has no settings block")
	}
	block := readme[begin:end]
	block = block[bytes.IndexByte(block, '\n')+1:]
	if !bytes.Equal(block, want.Bytes()) {
		t.Fatalf("README settings table is stale: regenerate it with `go run ./cmd/processor settings --format markdown`")
	}

	known := map[string]bool{}
	for _, s := range settings {
		known[s.Key] = true
	}
	// Variables of the tools around the service, not of the service.
	other := regexp.MustCompile(`^MDS_(TEST_|IT_|PG_BINDIR|PG_NO_TIMESCALE|TICKGEN_|BENCH_)`)
	for _, v := range regexp.MustCompile(`MDS_[A-Z0-9_]*[A-Z0-9](_\*)?`).FindAllString(string(readme), -1) {
		if !known[v] && !other.MatchString(v) && !strings.HasSuffix(v, "_*") {
			t.Errorf("README mentions %s, which is no setting", v)
		}
	}
}
