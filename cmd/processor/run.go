package main

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/market-data-store/mds/internal/app"
	"github.com/market-data-store/mds/internal/store"
)

type runCmd struct{}

func (runCmd) Run(g *globals) error {
	s, err := app.LoadSettings(g.env)
	if err != nil {
		return err
	}
	log, err := app.NewLogger(s.Log)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	return app.Run(g.ctx, s, log, app.NewRegistry())
}

type migrateCmd struct {
	DryRun bool `help:"List the migrations and TimescaleDB statements that would run, and change nothing."`
}

func (m migrateCmd) Run(g *globals) error {
	s, err := app.LoadSettings(g.env)
	if err != nil {
		return err
	}
	log, err := app.NewLogger(s.Log)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	ctx, cancel := context.WithTimeout(g.ctx, 10*time.Minute)
	defer cancel()
	cfg := s.Store
	cfg.AutoMigrate = false
	st, err := store.Open(ctx, cfg, log.Named("store"), prometheus.NewRegistry())
	if err != nil {
		return err
	}
	defer st.Close()
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
