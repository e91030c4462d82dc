package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRunProducesAndReports(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "market.feedback"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{
		"--brokers", strings.Join(c.ListenAddrs(), ","),
		"--count", "300", "--rate", "1000", "--partitions", "2", "--report-interval", "100ms",
	}, &out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	s := out.String()
	if !strings.Contains(s, "done: ") || !strings.Contains(s, "acked=300 ") || !strings.Contains(s, "level=ok") {
		t.Errorf("output:\n%s", s)
	}
	if n := strings.Count(s, "rate="); n < 2 {
		t.Errorf("%d progress lines, want a few:\n%s", n, s)
	}
}

func TestRunRejectsBadFlags(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"--rate", "0"}, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "MDS_TICKGEN_RATE") {
		t.Errorf("exit %d, stderr %q", code, errOut.String())
	}
	out.Reset()
	if code := run(context.Background(), []string{"--help"}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "obey-feedback") || !strings.Contains(out.String(), "market.ticks") {
		t.Errorf("--help: exit %d\n%s", code, out.String())
	}
}
