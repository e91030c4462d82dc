package main

import (
	"context"
	"fmt"
	"go.uber.org/zap"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/market-data-store/mds/internal/app"
	"github.com/market-data-store/mds/internal/store"
)

type runCmd struct{}

func (runCmd) Run(g *globals) error {
	s, log, err := g.load()
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	return app.Run(g.ctx, s, log, app.NewRegistry())
}

// load reads and checks the settings and builds the logger.
func (g *globals) load() (app.Settings, *zap.Logger, error) {
	s, err := app.LoadSettings(g.env)
	if err != nil {
		return s, nil, err
	}
	log, err := app.NewLogger(s.Log)
	return s, log, err
}

// openStore opens the database of the settings without migrating; the
// commands that are not the service use it.
func (g *globals) openStore() (*store.Store, app.Settings, *zap.Logger, error) {
	s, log, err := g.load()
	if err != nil {
		return nil, s, nil, err
	}
	cfg := s.Store
	cfg.AutoMigrate = false
	ctx, cancel := context.WithTimeout(g.ctx, time.Minute)
	defer cancel()
	st, err := store.Open(ctx, cfg, log, prometheus.NewRegistry())
	return st, s, log, err
}

type migrateCmd struct {
	DryRun bool `help:"List the migrations and TimescaleDB statements that would run, and change nothing."`
}

func (m migrateCmd) Run(g *globals) error {
	st, _, log, err := g.openStore()
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	defer st.Close()
	ctx, cancel := context.WithTimeout(g.ctx, 10*time.Minute)
	defer cancel()
	if m.DryRun {
		plan, err := st.PlanMigrations(ctx)
		if err != nil {
			return err
		}
		if len(plan) == 0 {
			fmt.Fprintln(g.stdout, "nothing to do: the schema is up to date")
		}
		for _, p := range plan {
			fmt.Fprintln(g.stdout, p)
		}
		return nil
	}
	if err := st.Migrate(ctx); err != nil {
		return err
	}
	status := st.Status(ctx)
	fmt.Fprintf(g.stdout, "schema at version %d\n", status.SchemaVersion)
	if status.Warning != "" {
		fmt.Fprintln(g.stdout, "warning:", status.Warning)
	}
	return nil
}
