package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"go.uber.org/fx"
	"go.uber.org/zap"
)

// Runner is a long-running component.
type Runner interface {
	Run(ctx context.Context) error
}

// Stopper is a Runner with a graceful stop, called before Run's context is
// cancelled.
type Stopper interface {
	Stop(ctx context.Context) error
}

// RunnerFunc adapts a function to Runner.
type RunnerFunc func(ctx context.Context) error

// Run implements Runner.
func (f RunnerFunc) Run(ctx context.Context) error { return f(ctx) }

// Hook registers r with the lifecycle under name.
func Hook(lc fx.Lifecycle, sd fx.Shutdowner, log *zap.Logger, name string, r Runner) {
	var (
		cancel   context.CancelFunc
		done     chan struct{}
		stopping atomic.Bool // set before a graceful Stop, which may end Run
	)
	lc.Append(fx.Hook{
		OnStart: func(context.Context) error {
			ctx, c := context.WithCancel(context.Background())
			cancel, done = c, make(chan struct{})
			go func() {
				defer close(done)
				err := r.Run(ctx)
				if ctx.Err() != nil || stopping.Load() {
					if err != nil && !errors.Is(err, context.Canceled) {
						log.Warn("component stopped with an error", zap.String("component", name), zap.Error(err))
					}
					return
				}
				if err == nil {
					err = errors.New("returned without being asked to stop")
				}
				log.Error("component failed; shutting down", zap.String("component", name), zap.Error(err))
				_ = sd.Shutdown(fx.ExitCode(1))
			}()
			return nil
		},
		OnStop: func(ctx context.Context) error {
			var stopErr error
			stopping.Store(true)
			if s, ok := r.(Stopper); ok {
				if err := s.Stop(ctx); err != nil {
					stopErr = fmt.Errorf("stopping %s: %w", name, err)
				}
			}
			cancel()
			select {
			case <-done:
				return stopErr
			case <-ctx.Done():
				return errors.Join(stopErr, fmt.Errorf("%s did not stop in time: %w", name, ctx.Err()))
			}
		},
	})
}
