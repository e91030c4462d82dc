//go:build integration

package integration

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/modules/postgres"
	"github.com/testcontainers/testcontainers-go/modules/redpanda"
)

// Images of docker mode, overridable for mirrors and upgrades.
const (
	envRedpandaImage  = "MDS_IT_REDPANDA_IMAGE"
	envTimescaleImage = "MDS_IT_TIMESCALE_IMAGE"

	defaultRedpandaImage  = "docker.redpanda.com/redpandadata/redpanda:v25.2.4"
	defaultTimescaleImage = "timescale/timescaledb:2.17.2-pg16"
)

// startContainers starts Redpanda and TimescaleDB with testcontainers-go,
// for the whole run. Redpanda is told to accept the short session timeouts
// the failover tests use.
func startContainers() (_ services, _ func(), err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	rpImage, tsImage := imageFrom(envRedpandaImage, defaultRedpandaImage), imageFrom(envTimescaleImage, defaultTimescaleImage)

	var stops []func()
	stop := func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}
	// testcontainers-go panics when it finds no Docker host.
	defer func() {
		if r := recover(); r != nil {
			stop()
			err = fmt.Errorf("testcontainers-go found no usable Docker engine (%v); unset %s to use kfake and the throwaway PostgreSQL", r, envDocker)
		}
	}()
	terminate := func(c testcontainers.Container) func() {
		return func() {
			if err := testcontainers.TerminateContainer(c); err != nil {
				fmt.Fprintln(os.Stderr, "integration: terminating container:", err)
			}
		}
	}

	rp, err := redpanda.Run(ctx, rpImage,
		redpanda.WithAutoCreateTopics(),
		redpanda.WithBootstrapConfig("group_min_session_timeout_ms", 1000),
	)
	if rp != nil {
		stops = append(stops, terminate(rp))
	}
	if err != nil {
		stop()
		return services{}, nil, fmt.Errorf("starting Redpanda (%s): %w", rpImage, err)
	}
	broker, err := rp.KafkaSeedBroker(ctx)
	if err != nil {
		stop()
		return services{}, nil, fmt.Errorf("reading the Redpanda seed broker: %w", err)
	}

	pg, err := postgres.Run(ctx, tsImage,
		postgres.WithDatabase("postgres"),
		postgres.WithUsername("postgres"),
		postgres.WithPassword("postgres"),
		postgres.BasicWaitStrategies(),
	)
	if pg != nil {
		stops = append(stops, terminate(pg))
	}
	if err != nil {
		stop()
		return services{}, nil, fmt.Errorf("starting TimescaleDB (%s): %w", tsImage, err)
	}
	url, err := pg.ConnectionString(ctx, "sslmode=disable")
	if err != nil {
		stop()
		return services{}, nil, fmt.Errorf("reading the TimescaleDB connection string: %w", err)
	}
	return services{
		mode:             "docker",
		brokers:          []string{broker},
		dbServer:         url,
		requireTimescale: true,
		sessionTimeout:   1500 * time.Millisecond,
		describe:         fmt.Sprintf("testcontainers-go: Redpanda %s at %s, TimescaleDB %s (a database per test)", rpImage, broker, tsImage),
	}, stop, nil
}

func imageFrom(env, def string) string {
	if v := os.Getenv(env); v != "" {
		return v
	}
	return def
}
