// Command processor ingests market ticks from Kafka into TimescaleDB (or
// plain PostgreSQL) exactly once, and publishes backpressure feedback so
// producers slow down before it falls behind.
//
//	processor              run as a consumer group member (settings from MDS_* variables)
//	processor migrate      apply the database schema (--dry-run lists what would run)
//	processor dev          everything on embedded defaults: Kafka, PostgreSQL, synthetic ticks
//	processor dlq list     show dead letters
//	processor dlq replay   re-publish chosen dead letters to a topic
//	processor gaps         list ranges skipped because Kafka no longer had them
//	processor version
//
// `processor --help` lists every setting with its default.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/alecthomas/kong"

	"github.com/market-data-store/mds/internal/app"
	"github.com/market-data-store/mds/internal/config"
	"github.com/market-data-store/mds/internal/version"
)

type cli struct {
	Run      runCmd      `cmd:"" default:"1" help:"Consume ticks into the database (the default command)."`
	Migrate  migrateCmd  `cmd:"" help:"Apply the database schema and TimescaleDB settings, then exit."`
	Dev      devCmd      `cmd:"" help:"Run on embedded defaults: Kafka on 127.0.0.1:9092, a throwaway PostgreSQL, synthetic ticks."`
	DLQ      dlqCmd      `cmd:"" name:"dlq" help:"Inspect and replay dead letters."`
	Gaps     gapsCmd     `cmd:"" help:"List the ranges of partitions moved past without their records because Kafka no longer had them (mds_offset_gaps)."`
	Settings settingsCmd `cmd:"" help:"Print every setting with its default (as a table, Markdown or an env file)."`
	Version  versionCmd  `cmd:"" help:"Print the version."`
}

type settingsCmd struct {
	Format string `default:"table" enum:"table,markdown,env" help:"Output format: table, markdown or env."`
}

func (c settingsCmd) Run(g *globals) error {
	s := config.Settings(app.DefaultSettings())
	switch c.Format {
	case "markdown":
		return config.WriteMarkdown(g.stdout, s)
	case "env":
		return config.WriteEnvFile(g.stdout, s)
	}
	return config.WriteHelp(g.stdout, s)
}

type versionCmd struct{}

func (versionCmd) Run(g *globals) error {
	fmt.Fprintln(g.stdout, "processor", version.String())
	return nil
}

// globals is what every command gets.
type globals struct {
	ctx    context.Context
	env    map[string]string
	stdout io.Writer
	stderr io.Writer
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], config.Environ(os.Environ()), os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is main without the process: testable.
func run(ctx context.Context, args []string, env map[string]string, stdout, stderr io.Writer) int {
	exit := -1
	parser, err := kong.New(&cli{},
		kong.Name("processor"),
		kong.Description("Ingest market ticks from Kafka into TimescaleDB exactly once, with backpressure feedback."),
		kong.Writers(stdout, stderr),
		kong.Exit(func(code int) { exit = code }),
		kong.Help(helpWithSettings),
		kong.UsageOnError(),
	)
	if err != nil {
		fmt.Fprintln(stderr, "processor:", err)
		return 2
	}
	kctx, err := parser.Parse(args)
	if exit >= 0 {
		return exit
	}
	if err != nil {
		fmt.Fprintln(stderr, "processor:", err)
		return 2
	}
	g := &globals{ctx: ctx, env: env, stdout: stdout, stderr: stderr}
	if err := kctx.Run(g); err != nil {
		fmt.Fprintln(stderr, "processor:", err)
		return 1
	}
	return 0
}

// helpWithSettings prints kong's help, then, for the top level and the
// commands that use them, every setting with its default.
func helpWithSettings(opts kong.HelpOptions, ctx *kong.Context) error {
	if err := kong.DefaultHelpPrinter(opts, ctx); err != nil {
		return err
	}
	w := ctx.Stdout
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Settings (environment variables; durations accept 250ms, 6s, or a bare number of")
	fmt.Fprintln(w, "seconds, and milliseconds for names ending in _MS):")
	fmt.Fprintln(w)
	return config.WriteHelp(w, config.Settings(app.DefaultSettings()))
}
