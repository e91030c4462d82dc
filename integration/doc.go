//go:build integration

// Package integration holds the end-to-end suites of market-data-store. They
// run the real application (package app in-process, or cmd/processor as
// separate processes) against a Kafka broker and a PostgreSQL or
// TimescaleDB database, and assert what a user of the service relies on:
// every tick in the database exactly once, bad records dead-lettered
// exactly once, offsets stored with the data, backpressure leaving the
// process and coming back.
//
// The files carry the build tag integration; make test-integration runs
// them:
//
//	go run ./internal/tools/withpg -- go test -tags integration -count=1 -timeout 20m -v ./integration/...
//
// # Where the services come from
//
// The suite picks its services once, in TestMain, and logs which mode runs:
//
//   - broker (the default, what CI runs): Apache Kafka 4.4 itself, one
//     KRaft broker from Maven Central started by package kafkatest
//     (integration/kafka) on 127.0.0.1 for the whole run, with
//     SCRAM-SHA-512, TLS and mutual-TLS listeners and the
//     StandardAuthorizer, auto topic creation off; the tests that need
//     three brokers start their own cluster. Java 17 and Maven must be on
//     PATH (the jars are cached under the user's cache directory). The
//     throwaway PostgreSQL server of MDS_TEST_DATABASE_URL (withpg starts
//     one), or one started by package pgtest.
//   - docker: when MDS_IT_DOCKER=1, or when a Docker engine answers a
//     cheap probe (DOCKER_HOST, else /var/run/docker.sock) and
//     MDS_IT_DOCKER is not 0, testcontainers-go starts Redpanda
//     (MDS_IT_REDPANDA_IMAGE) and TimescaleDB (MDS_IT_TIMESCALE_IMAGE) for
//     the run, and the TimescaleDB assertions (hypertable, bars_1m) are
//     required.
//   - env: MDS_IT_KAFKA_BROKERS (comma separated) names an existing broker
//     and/or MDS_IT_DATABASE_URL an existing server, whose role may create
//     databases; a service not named falls back to the local one.
//     MDS_IT_SESSION_TIMEOUT sets the group session timeout the tests use
//     (default 6s, the broker minimum of Apache Kafka and Redpanda).
//   - local: MDS_IT_KAFKA=kfake runs an in-process kfake cluster per test
//     on 127.0.0.1 instead of Apache Kafka.
//
// Tests that need the broker mode's listeners, its authorizer or a
// three-broker cluster skip in the other modes, saying so.
//
// Every test gets a fresh database and its own topics and group, so the
// tests are independent in every mode. On plain PostgreSQL the TimescaleDB
// assertions are skipped with a message saying so.
//
// # Tests
//
// TestChaosExactlyOnce is the proof of the exactly-once promise: three
// processor processes in one group ingest 300,000 ticks plus poisoned
// records while the test SIGKILLs and restarts members (one static, one
// dynamic), adds and removes members, stalls one past its session timeout
// (SIGSTOP, the zombie) and terminates the database sessions; it prints a
// timeline of what it did and what it found. TestBackpressureEndToEnd stalls the
// database under a running tick generator and follows the level on the
// feedback topic, the paused partitions in /metrics and the generator's
// rate, down and back up. TestUpstreamLevelEndToEnd proves that the level
// published to producers tells catching up from overload: a backlog of
// 1,000,000 ticks (MDS_IT_UPSTREAM_BACKLOG) replayed while a generator
// produces live at half the store's measured rate stays OK while the queue
// pauses the partitions inside the process; a live demand above the
// store's rate, and a 10 s table lock, go HARD and back; it prints the
// timeline of the published levels. TestIngest, TestRestart and TestRebalance cover
// the everyday paths of the application.
//
// On Apache Kafka only: TestChaosExactlyOnce and TestGroupTimings run on
// both group protocols and assert that the zombie's held write is fenced
// and that a static member's restart (classic) rebalances nobody;
// TestBrokerFailures SIGKILLs the leader of half the partitions of a
// three-broker cluster and restarts it, then restarts every broker in
// turn, and prints the stall of each; TestSCRAM and TestTLS ingest over the
// secured listeners (SCRAM with least-privilege ACLs, TLS, mutual TLS);
// TestMissingTopic and TestDeniedACL expect a /readyz reason; and
// TestFeedbackCompacted reads the compacted feedback topic back after a
// processor restart. TestChurn restarts members every 0.7-2 s for 20 s and
// expects the group to form again.
package integration
