//go:build integration

package integration

import (
	"context"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"
)

// TestChurn is issue #14's churn: a three-member group whose members are
// SIGKILLed or SIGTERMed and started again every 0.7-2 s for 20 s while
// ticks flow. On kfake such a group never formed again once the churn
// stopped. Here, after the churn, the three members must hold all 12
// partitions again within a minute, and every tick must land exactly
// once. It runs on both group protocols.
func TestChurn(t *testing.T) {
	if svc.mode != "broker" {
		t.Skipf("the churn is a test of the real broker's group coordinator (mode %s)", svc.mode)
	}
	bin := buildProcessor(t)
	for _, protocol := range groupProtocols() {
		t.Run(protocol, func(t *testing.T) { runChurn(t, bin, protocol) })
	}
}

func runChurn(t *testing.T, bin, protocol string) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := newChaos(ctx, t, bin, protocol)
	f := c.f
	db := f.connect(ctx)
	names := []string{"p1", "p3", "p4"} // dynamic members (p2 would be static)
	for _, n := range names {
		c.launch(ctx, n)
	}
	for _, n := range names {
		c.ready(ctx, c.members[n])
	}
	stop := make(chan struct{})
	l := newLedger()
	produced := make(chan error, 1)
	go func() {
		produced <- f.produce(ctx, batchSpec{From: 1, To: 1 << 40, Rate: 3000, Until: stop}, l)
	}()

	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 14))
	churned := 0
	for end := time.Now().Add(20 * time.Second); time.Now().Before(end); churned++ {
		n := names[rng.IntN(len(names))]
		sig := syscall.SIGKILL
		if rng.IntN(2) == 0 {
			sig = syscall.SIGTERM
		}
		c.signal(n, sig, true)
		c.launch(ctx, n)
		c.sleep(ctx, 700*time.Millisecond+time.Duration(rng.Int64N(int64(1300*time.Millisecond))))
	}
	c.logf("churn over: %d members killed or stopped and started again", churned)
	start := time.Now()
	if err := c.holdAll(ctx, 50*time.Millisecond, names...); err != nil {
		c.dumpLogs()
		t.Fatalf("%s protocol: the group did not form again within a minute of the churn", protocol)
	}
	c.logf("TIMING the group formed again %s after the churn stopped (%s protocol): three members hold all 12 partitions", time.Since(start).Round(10*time.Millisecond), protocol)
	close(stop)
	if err := <-produced; err != nil {
		t.Fatal(err)
	}
	if err := f.waitIngested(ctx, db, time.Minute); err != nil {
		t.Fatal(err)
	}
	c.stopAll()
	fd := f.assertExactlyOnce(ctx, db, l)
	t.Logf("found:\n%s", fd)
	if unexpected := c.unexpectedExits(); len(unexpected) > 0 {
		t.Errorf("members exited on their own: %v", unexpected)
	}
}
