// Package pgtemp starts a throwaway PostgreSQL cluster from the locally
// installed server binaries: initdb into a temporary directory, a postgres
// process listening on 127.0.0.1 only, and removal of everything on Stop.
//
// It serves `processor dev`, the tests (through package pgtest and the
// withpg tool) and the benchmark. PostgreSQL refuses to run as root, so when
// the caller is root the cluster runs as the unprivileged user "postgres"
// (or "nobody" when that user does not exist).
//
// The server binaries are found in MDS_PG_BINDIR, else in the directory
// printed by `pg_config --bindir`, else in the newest
// /usr/lib/postgresql/*/bin.
//
// Where the TimescaleDB library is installed for that server (timescaledb.so
// in its library directory), the cluster preloads it
// (shared_preload_libraries=timescaledb, telemetry off) and Cluster.Timescale
// is true, so dev mode and the tests run the hypertable path wherever
// TimescaleDB exists and the plain path where it does not. Setting
// MDS_PG_NO_TIMESCALE=1 skips the preload, to run the plain path on a machine
// that has TimescaleDB: the library is then installed but not preloaded, the
// state the store reports as "must be preloaded".
package pgtemp
