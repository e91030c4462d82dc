// Package lifecycle adapts long-running components, which expose
// Run(ctx) error, to fx start and stop hooks. It is the only place besides
// cmd/processor that imports fx.
//
// On start, Run is called in a goroutine. On stop, a component that also has
// Stop(ctx) error is asked to stop gracefully first (drain, final commits),
// bounded by fx's stop timeout; then Run's context is cancelled and stop
// waits for Run to return. If
// Run returns before stop was asked for — an error or not — the application
// is shut down with exit code 1, so a failing part never leaves a process
// that only looks alive.
package lifecycle
