package lifecycle_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"
	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/market-data-store/mds/internal/lifecycle"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestStopCancelsAndWaits(t *testing.T) {
	stopped := make(chan struct{})
	app := fxtest.New(t, fx.Invoke(func(lc fx.Lifecycle, sd fx.Shutdowner) {
		lifecycle.Hook(lc, sd, zap.NewNop(), "worker", lifecycle.RunnerFunc(func(ctx context.Context) error {
			<-ctx.Done()
			time.Sleep(20 * time.Millisecond) // a drain
			close(stopped)
			return nil
		}))
	}))
	app.RequireStart()
	app.RequireStop()
	select {
	case <-stopped:
	default:
		t.Fatal("stop returned before Run finished")
	}
}

func TestUnexpectedReturnShutsDown(t *testing.T) {
	app := fxtest.New(t, fx.Invoke(func(lc fx.Lifecycle, sd fx.Shutdowner) {
		lifecycle.Hook(lc, sd, zap.NewNop(), "broken", lifecycle.RunnerFunc(func(context.Context) error {
			return errors.New("database gone")
		}))
	}))
	app.RequireStart()
	select {
	case sig := <-app.Wait():
		if sig.ExitCode != 1 {
			t.Fatalf("exit code %d, want 1", sig.ExitCode)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("app was not shut down")
	}
	app.RequireStop()
}

type graceful struct {
	runCtx            chan context.Context
	stoppedGracefully bool
	ctxCancelledFirst bool
}

func (g *graceful) Run(ctx context.Context) error {
	g.runCtx <- ctx
	<-ctx.Done()
	return nil
}

func (g *graceful) Stop(context.Context) error {
	ctx := <-g.runCtx
	g.ctxCancelledFirst = ctx.Err() != nil
	g.stoppedGracefully = true
	return nil
}

func TestGracefulStopComesBeforeCancel(t *testing.T) {
	g := &graceful{runCtx: make(chan context.Context, 1)}
	app := fxtest.New(t, fx.Invoke(func(lc fx.Lifecycle, sd fx.Shutdowner) {
		lifecycle.Hook(lc, sd, zap.NewNop(), "consumer", g)
	}))
	app.RequireStart()
	app.RequireStop()
	if !g.stoppedGracefully || g.ctxCancelledFirst {
		t.Fatalf("stopped gracefully %v, context cancelled before Stop %v", g.stoppedGracefully, g.ctxCancelledFirst)
	}
}

// stopsRun ends Run from Stop, as the consumer does after draining.
// Like the consumer, Stop waits for Run to have returned.
type stopsRun struct{ stop, returned chan struct{} }

func (s stopsRun) Run(context.Context) error {
	<-s.stop
	close(s.returned)
	return nil
}

func (s stopsRun) Stop(context.Context) error {
	close(s.stop)
	<-s.returned
	time.Sleep(20 * time.Millisecond) // the hook sees Run's return before its context is cancelled
	return nil
}

func TestRunEndedByGracefulStopIsNoFailure(t *testing.T) {
	var shutdowns int
	app := fxtest.New(t, fx.Invoke(func(lc fx.Lifecycle, sd fx.Shutdowner) {
		lifecycle.Hook(lc, sd, zap.NewNop(), "consumer", stopsRun{stop: make(chan struct{}), returned: make(chan struct{})})
	}))
	wait := app.Wait()
	app.RequireStart()
	app.RequireStop()
	select {
	case <-wait:
		shutdowns++
	default:
	}
	if shutdowns != 0 {
		t.Fatal("a Run ended by Stop was taken for a failure")
	}
}
