//go:build integration

package integration

import (
	"context"
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/market-data-store/mds/internal/consume"
)

// TestGroupTimings measures, on each group protocol, what a user of the
// group waits for, with processor processes while ticks flow: a group of
// one growing to three, three shrinking to one (graceful stops), the
// restart of a static member (classic only: no rebalance), and the SIGKILL
// of a dynamic member (its partitions wait for the session timeout). It
// asserts that each change completes, and logs the times (the README's
// Performance section quotes them); it asserts no time.
func TestGroupTimings(t *testing.T) {
	bin := buildProcessor(t)
	for _, protocol := range groupProtocols() {
		t.Run(protocol, func(t *testing.T) { runGroupTimings(t, bin, protocol) })
	}
}

func runGroupTimings(t *testing.T, bin, protocol string) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := newChaos(ctx, t, bin, protocol)
	f := c.f
	db := f.connect(ctx)
	stop := make(chan struct{})
	l := newLedger()
	produced := make(chan error, 1)
	go func() {
		produced <- f.produce(ctx, batchSpec{From: 1, To: 1 << 40, Rate: 2000, Until: stop}, l)
	}()
	c.ready(ctx, c.launch(ctx, "p1"))

	// owns waits until the named members hold all 12 partitions, each at
	// least one, and logs how long that took.
	owns := func(what string, names ...string) {
		t.Helper()
		start := time.Now()
		if err := c.holdAll(ctx, 20*time.Millisecond, names...); err != nil {
			t.Fatalf("%s: %v never held all 12 partitions", what, names)
		}
		c.logf("TIMING %s (%s protocol): %s until %v held all 12 partitions", what, protocol, time.Since(start).Round(10*time.Millisecond), names)
	}

	// Dynamic members first: a static one (p2) that stops keeps its
	// partitions until its session times out, by design.
	c.launch(ctx, "p3")
	c.launch(ctx, "p4")
	owns("1→3 members (two processes start)", "p1", "p3", "p4")
	var wg sync.WaitGroup
	wg.Go(func() { c.signal("p3", syscall.SIGTERM, true) })
	wg.Go(func() { c.signal("p4", syscall.SIGTERM, true) })
	wg.Wait()
	owns("3→1 members (two leave gracefully, SIGTERM)", "p1")

	c.ready(ctx, c.launch(ctx, "p2"))
	c.ready(ctx, c.launch(ctx, "p3"))
	owns("1→3 members again", "p1", "p2", "p3")
	if protocol == consume.ProtocolClassic {
		before := c.rebalances("p1", "p3")
		start := time.Now()
		c.signal("p2", syscall.SIGKILL, true)
		c.ready(ctx, c.launch(ctx, "p2"))
		owns("static member restart (SIGKILL, start again)", "p1", "p2", "p3")
		c.logf("TIMING static member p2 back %s after its SIGKILL; p1 and p3 saw %v assignment changes before, %v after", time.Since(start).Round(10*time.Millisecond), before, c.rebalances("p1", "p3"))
	}
	c.signal("p3", syscall.SIGKILL, true)
	owns(fmt.Sprintf("SIGKILL of dynamic member p3 (session timeout %s)", svc.sessionTimeout), "p1", "p2")

	close(stop)
	if err := <-produced; err != nil {
		t.Fatal(err)
	}
	if err := f.waitIngested(ctx, db, time.Minute); err != nil {
		t.Fatal(err)
	}
	c.stopAll()
	f.assertExactlyOnce(ctx, db, l)
}
