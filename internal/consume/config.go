package consume

import (
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Group protocols, as MDS_KAFKA_GROUP_PROTOCOL spells them.
const (
	// ProtocolClassic is the classic group protocol: JoinGroup and
	// SyncGroup, the group leader (a member) assigns partitions
	// (cooperative-sticky), and the member's SessionTimeout,
	// HeartbeatInterval and RebalanceTimeout apply.
	ProtocolClassic = "classic"
	// ProtocolConsumer is KIP-848 (Kafka 4.0+; franz-go recommends 4.3+):
	// ConsumerGroupHeartbeat, the broker assigns partitions ("uniform")
	// and decides the session timeout and heartbeat interval
	// (group.consumer.session.timeout.ms, group.consumer.heartbeat.interval.ms,
	// per group through group configs); RebalanceTimeout still bounds how
	// long the member may take to revoke. Against a broker without it,
	// franz-go uses the classic protocol.
	ProtocolConsumer = "consumer"
)

// Config holds the consumer-group settings. Brokers, TLS and SASL are not
// here: they arrive as kgo options shared by every Kafka client.
type Config struct {
	Topics            []string      `env:"MDS_KAFKA_TOPICS" envSeparator:"," help:"topics to consume, comma separated"`
	Group             string        `env:"MDS_KAFKA_GROUP" help:"consumer group id; also the key of the stored offsets in mds_offsets"`
	GroupProtocol     string        `env:"MDS_KAFKA_GROUP_PROTOCOL" help:"classic (members assign partitions; MDS_KAFKA_SESSION_TIMEOUT and MDS_KAFKA_HEARTBEAT_INTERVAL apply) or consumer (KIP-848, Kafka 4.0+: the broker assigns partitions and sets the session timeout and heartbeat interval, group.consumer.*; falls back to classic on older brokers)"`
	StartOffset       string        `env:"MDS_KAFKA_START_OFFSET" help:"where a partition with neither a stored nor a Kafka-committed offset starts: earliest or latest"`
	OnLostData        string        `env:"MDS_KAFKA_ON_LOST_DATA" help:"when Kafka no longer has the records at a partition's stored offset (retention or DeleteRecords passed it, or the log ends below it): earliest records the gap in mds_offset_gaps and goes on from the log start; fail stops the processor"`
	SessionTimeout    time.Duration `env:"MDS_KAFKA_SESSION_TIMEOUT" help:"how long a silent member keeps its partitions (after a crash, until the group moves them)"`
	RebalanceTimeout  time.Duration `env:"MDS_KAFKA_REBALANCE_TIMEOUT" help:"how long a rebalance waits for members to revoke and rejoin"`
	HeartbeatInterval time.Duration `env:"MDS_KAFKA_HEARTBEAT_INTERVAL" help:"group heartbeat period; at most a third of the session timeout"`
	InstanceID        string        `env:"MDS_KAFKA_INSTANCE_ID" help:"static group membership id (e.g. the pod name): a restarted instance takes its partitions back without a rebalance; empty disables"`
	FetchMaxWait      time.Duration `env:"MDS_KAFKA_FETCH_MAX_WAIT" help:"longest a broker holds a fetch open waiting for data; bounds how late a resumed partition starts flowing again (10ms to 1s)"`
	FetchMaxBytes     int32         `env:"MDS_KAFKA_FETCH_MAX_BYTES" help:"largest fetch response asked of one broker, in bytes; buffered fetch memory is about brokers x this"`
	FetchMaxPartBytes int32         `env:"MDS_KAFKA_FETCH_MAX_PARTITION_BYTES" help:"largest share of one fetch response for one partition, in bytes"`
	RevokeTimeout     time.Duration `env:"MDS_KAFKA_REVOKE_TIMEOUT" help:"on revoke, longest wait for the partitions' in-flight database write, and then again for the final Kafka commit"`
}

// DefaultConfig returns the documented defaults. The fetch limits bound the
// memory franz-go buffers: one fetch of at most 512 KiB per broker (a few
// thousand ticks, compressed as they come), at most 64 KiB of it per
// partition (a partition's first record batch comes whole even if larger).
// A fetch that size is about what the default queue takes before HARD, and
// that matters: pausing a partition makes franz-go drop its buffered
// records, to be fetched and decompressed again after the resume. With
// 16 MiB fetches, the 1,000,000-tick backlog of `make bench` was fetched and
// decompressed several times over (9.8 CPU s per million ticks, 258 MB peak
// RSS); with these limits it costs 2.4 CPU s and 58 MB, and runs faster.
// Larger limits only pay off with a much larger MDS_COORDINATOR_CAPACITY.
func DefaultConfig() Config {
	return Config{
		Topics:            []string{"market.ticks"},
		Group:             "mds-processor",
		GroupProtocol:     ProtocolClassic,
		StartOffset:       "earliest",
		OnLostData:        "earliest",
		SessionTimeout:    45 * time.Second,
		RebalanceTimeout:  60 * time.Second,
		HeartbeatInterval: 3 * time.Second,
		FetchMaxWait:      100 * time.Millisecond,
		FetchMaxBytes:     512 << 10,
		FetchMaxPartBytes: 64 << 10,
		RevokeTimeout:     10 * time.Second,
	}
}

// Validate reports every setting out of range, naming its variable.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if len(c.Topics) == 0 {
		bad("MDS_KAFKA_TOPICS must name at least one topic")
	}
	for _, t := range c.Topics {
		if t == "" {
			bad("MDS_KAFKA_TOPICS must not contain an empty topic name")
			break
		}
	}
	if c.Group == "" {
		bad("MDS_KAFKA_GROUP must not be empty")
	}
	if c.GroupProtocol != ProtocolClassic && c.GroupProtocol != ProtocolConsumer {
		bad("MDS_KAFKA_GROUP_PROTOCOL must be %s or %s, not %q", ProtocolClassic, ProtocolConsumer, c.GroupProtocol)
	}
	if c.GroupProtocol == ProtocolConsumer && c.InstanceID != "" {
		// Measured on Apache Kafka 4.4 with franz-go v1.22.3
		// (integration TestChaosExactlyOnce): the broker refuses the
		// restarted instance (UNRELEASED_INSTANCE_ID), after a crash
		// and after a graceful stop alike, until the old member's
		// session expires, and then moves its partitions: every
		// restart is a rebalance plus a session timeout of stall.
		bad("MDS_KAFKA_INSTANCE_ID (static membership) is refused with MDS_KAFKA_GROUP_PROTOCOL=consumer: on Kafka 4.4 a restarted instance is kept out (UNRELEASED_INSTANCE_ID) until its old session expires, so every restart rebalances; use classic for static membership")
	}
	if c.StartOffset != "earliest" && c.StartOffset != "latest" {
		bad("MDS_KAFKA_START_OFFSET must be earliest or latest, not %q", c.StartOffset)
	}
	if c.OnLostData != "earliest" && c.OnLostData != "fail" {
		bad("MDS_KAFKA_ON_LOST_DATA must be earliest or fail, not %q", c.OnLostData)
	}
	if c.SessionTimeout <= 0 {
		bad("MDS_KAFKA_SESSION_TIMEOUT must be > 0")
	}
	if c.RebalanceTimeout <= 0 {
		bad("MDS_KAFKA_REBALANCE_TIMEOUT must be > 0")
	}
	if c.HeartbeatInterval <= 0 || c.HeartbeatInterval*3 > c.SessionTimeout {
		bad("MDS_KAFKA_HEARTBEAT_INTERVAL must be > 0 and at most a third of MDS_KAFKA_SESSION_TIMEOUT")
	}
	if c.FetchMaxWait < 10*time.Millisecond || c.FetchMaxWait > time.Second {
		bad("MDS_KAFKA_FETCH_MAX_WAIT must be between 10ms and 1s")
	}
	if c.FetchMaxBytes <= 0 {
		bad("MDS_KAFKA_FETCH_MAX_BYTES must be > 0")
	}
	if c.FetchMaxPartBytes <= 0 || c.FetchMaxPartBytes > c.FetchMaxBytes {
		bad("MDS_KAFKA_FETCH_MAX_PARTITION_BYTES must be > 0 and at most MDS_KAFKA_FETCH_MAX_BYTES")
	}
	if c.RevokeTimeout <= 0 || 2*c.RevokeTimeout >= c.RebalanceTimeout {
		bad("MDS_KAFKA_REVOKE_TIMEOUT must be > 0 and less than half of MDS_KAFKA_REBALANCE_TIMEOUT")
	}
	return errors.Join(errs...)
}

// groupOpts turns the settings into franz-go options.
func (c Config) groupOpts() []kgo.Opt {
	start := kgo.NewOffset().AtStart()
	if c.StartOffset == "latest" {
		start = kgo.NewOffset().AtEnd()
	}
	opts := []kgo.Opt{
		kgo.ConsumeTopics(c.Topics...),
		kgo.ConsumerGroup(c.Group),
		// The start offset is for partitions never seen (no stored and no
		// committed offset). A stored offset Kafka no longer has is never
		// reset by franz-go: the fetch fails with OffsetOutOfRange and
		// the member decides (move.go), recording what it skips.
		kgo.ConsumeStartOffset(start),
		kgo.ConsumeResetOffset(kgo.NoResetOffset()),
		kgo.SessionTimeout(c.SessionTimeout),
		kgo.RebalanceTimeout(c.RebalanceTimeout),
		kgo.HeartbeatInterval(c.HeartbeatInterval),
		kgo.FetchMaxWait(c.FetchMaxWait),
		kgo.FetchMaxBytes(c.FetchMaxBytes),
		kgo.FetchMaxPartitionBytes(c.FetchMaxPartBytes),
		// Records of aborted transactions are never ticks.
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// Offsets live in the database; Kafka commits are made by Ack.
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
	}
	if c.InstanceID != "" {
		opts = append(opts, kgo.InstanceID(c.InstanceID))
	}
	if c.GroupProtocol == ProtocolConsumer {
		// The default cooperative-sticky balancer names the broker's
		// "uniform" assignor.
		opts = append(opts, kgo.ServerSideBalancer())
	}
	return opts
}
