// Package app assembles the processor: settings from the environment, the fx
// graph binding every package's interfaces, the HTTP server, and Run. It is
// the only place, with internal/lifecycle, that imports fx.
//
// # Settings
//
// LoadSettings starts from every package's DefaultConfig, reads the MDS_*
// variables over them (internal/config), falls back to DATABASE_URL, puts
// the password of MDS_DATABASE_PASSWORD_FILE into the database URL, fills
// the settings one package takes from another (the consumer group and the
// worker count for the store), and validates everything at once, each
// problem naming its variable.
//
// # Start and stop
//
// Module builds, in order: the Kafka client options (brokers, TLS, SASL),
// the store (which migrates unless MDS_DB_AUTO_MIGRATE=false), the feedback
// meter in front of it, the coordinator and the consumer. On start it
// checks that the brokers accept the connection, then starts the HTTP
// server, the coordinator's workers, the feedback monitor and publisher
// (and webhook) and the consumer. Stop runs in reverse: the consumer stops
// polling, drains the queue into the database, commits and leaves the
// group; then the feedback publisher flushes, the workers stop, and the
// HTTP server, the pool and the Kafka client close. A component whose Run
// returns unexpectedly shuts the application down with exit code 1.
//
// # HTTP
//
// /metrics serves the registry given to Module (Go runtime and process
// collectors plus every package's metrics); /healthz answers while the
// process runs; /readyz answers 200 when the brokers answer, the member has
// joined its group and polled, the database answers and writing is not
// stalled (coordinator.Stalled: an error no retry fixes, such as a missing
// table or privilege or a trigger refusing every row), and 503 otherwise.
// A member that cannot consume says why: a missing or denied topic, a
// denied group, failed authentication (the reason is logged once). The
// JSON body has each check (the "writer" check names the stall's SQLSTATE
// and error), the stall, the schema version and TimescaleDB state (or the
// warning naming what is missing), and the backpressure level and queue
// size. A database outage or a stall makes every pod NotReady at once;
// nothing routes traffic to this service, so readiness only informs
// rollouts and operators, and the PodDisruptionBudget evicts NotReady pods
// anyway (unhealthyPodEvictionPolicy: AlwaysAllow), so that node drains are
// not blocked while the database is down. /healthz never depends on the
// database: a restart fixes none of these. With MDS_HTTP_PPROF=true it also
// serves /debug/pprof/.
package app
