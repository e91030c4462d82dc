// Package kafkatest runs Apache Kafka brokers, the real thing from Maven
// Central, as local processes for the integration suite and the benchmark.
//
// [Classpath] resolves org.apache.kafka:kafka_2.13 [Version] (the
// checked-in pom.xml, embedded) with `mvn dependency:copy-dependencies`
// into a cache under the user's cache directory
// (~/.cache/mds-kafka/<version>/libs, or $MDS_IT_KAFKA_CACHE_DIR/<version>),
// once; later runs reuse it. Without java or mvn on PATH it returns one
// line saying what to install ([ErrNoJava]).
//
// [Start] formats KRaft storage (kafka.tools.StorageTool) and starts
// Options.Brokers combined broker/controller nodes (kafka.Kafka) on
// 127.0.0.1, on free ports, in a temporary directory, and waits (bounded by
// Options.StartTimeout) until every broker is registered. Each broker is a
// JVM in its own process group that also dies with the Go process
// (Pdeathsig); its log4j2 log is broker-N/server.log. [StartT] ties a
// cluster to a test: stopped in t.Cleanup (so also after a failure or a
// panic in the test), its files removed after a pass and kept, and named,
// after a failure.
//
// The brokers are configured as an operator would for production, with
// short timings for tests: auto.create.topics.enable=false; with three
// brokers, replication factor 3 and min.insync.replicas=2 for every topic,
// including the internal ones; group.initial.rebalance.delay.ms=0,
// group.min.session.timeout.ms=500, and for KIP-848 (consumer protocol)
// groups, whose timings the broker decides, a session of
// Options.ConsumerGroupSessionTimeout and a heartbeat of
// Options.ConsumerGroupHeartbeat; broker.session.timeout.ms of
// Options.BrokerSessionTimeout (how long a dead broker keeps its
// leaderships). Optional listeners: SASL_PLAINTEXT with SCRAM-SHA-512
// (users created when the storage is formatted), TLS, and MTLS (client
// certificate required), with certificates generated in Go as PEM files
// ([Certs]); and the KRaft StandardAuthorizer, which User:ANONYMOUS on the
// PLAINTEXT listener bypasses as a super user, so that tests manage ACLs
// with kadm over [Cluster.Addrs].
//
// [Cluster.Kill] SIGKILLs one broker and [Cluster.Restart] starts it again
// on the same ports and storage, for broker-failure tests.
package kafkatest
