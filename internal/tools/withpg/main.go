// Command withpg runs a command with a throwaway PostgreSQL cluster:
//
//	go run ./internal/tools/withpg -- go test ./...
//
// It starts the cluster (package pgtemp), exports MDS_TEST_DATABASE_URL to
// the command, waits for it, then stops the cluster and removes its files.
// When MDS_TEST_DATABASE_URL is already set, it just runs the command.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	"github.com/market-data-store/mds/internal/pgtemp"
	"github.com/market-data-store/mds/internal/pgtest"
)

func main() {
	args := os.Args[1:]
	if len(args) > 0 && args[0] == "--" {
		args = args[1:]
	}
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "usage: withpg -- command [args...]")
		os.Exit(2)
	}
	os.Exit(run(args))
}

func run(args []string) int {
	if os.Getenv(pgtest.EnvURL) != "" {
		return runCmd(args)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	c, err := pgtemp.Start(ctx, pgtemp.Options{})
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "withpg:", err)
		return 1
	}
	defer c.Stop()
	fmt.Fprintf(os.Stderr, "withpg: throwaway PostgreSQL on 127.0.0.1:%d\n", c.Port)
	os.Setenv(pgtest.EnvURL, c.URL)
	return runCmd(args)
}

func runCmd(args []string) int {
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sig)
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "withpg:", err)
		return 1
	}
	go func() {
		for s := range sig {
			_ = cmd.Process.Signal(s)
		}
	}()
	err := cmd.Wait()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "withpg:", err)
		return 1
	}
	return 0
}
