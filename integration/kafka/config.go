package kafkatest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// writeConfig writes n's server.properties and log4j2.properties.
func (c *Cluster) writeConfig(n *node) error {
	o := c.opts
	rf := min(3, len(c.nodes))
	isr := 1
	if rf >= 3 {
		isr = 2
	}
	var voters []string
	for _, v := range c.nodes {
		voters = append(voters, fmt.Sprintf("%d@127.0.0.1:%d", v.id, v.ctrl))
	}
	listeners := []string{fmt.Sprintf("PLAINTEXT://127.0.0.1:%d", n.plain)}
	if n.sasl != 0 {
		listeners = append(listeners, fmt.Sprintf("SASL_PLAINTEXT://127.0.0.1:%d", n.sasl))
	}
	if n.tls != 0 {
		listeners = append(listeners, fmt.Sprintf("TLS://127.0.0.1:%d", n.tls), fmt.Sprintf("MTLS://127.0.0.1:%d", n.mtls))
	}
	advertised := strings.Join(listeners, ",")
	listeners = append(listeners, fmt.Sprintf("CONTROLLER://127.0.0.1:%d", n.ctrl))
	ms := func(d interface{ Milliseconds() int64 }) string { return fmt.Sprint(d.Milliseconds()) }

	props := [][2]string{
		{"process.roles", "broker,controller"},
		{"node.id", fmt.Sprint(n.id)},
		{"controller.quorum.voters", strings.Join(voters, ",")},
		{"listeners", strings.Join(listeners, ",")},
		{"advertised.listeners", advertised},
		{"listener.security.protocol.map", "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,TLS:SSL,MTLS:SSL"},
		{"controller.listener.names", "CONTROLLER"},
		{"inter.broker.listener.name", "PLAINTEXT"},
		{"log.dirs", filepath.Join(n.dir, "data")},
		// What an operator sets in production: topics are created on
		// purpose, with the replication the cluster can give.
		{"auto.create.topics.enable", "false"},
		{"num.partitions", "1"},
		{"default.replication.factor", fmt.Sprint(rf)},
		{"min.insync.replicas", fmt.Sprint(isr)},
		{"offsets.topic.replication.factor", fmt.Sprint(rf)},
		{"offsets.topic.num.partitions", "6"},
		{"transaction.state.log.replication.factor", fmt.Sprint(rf)},
		{"transaction.state.log.min.isr", fmt.Sprint(isr)},
		{"transaction.state.log.num.partitions", "6"},
		{"share.coordinator.state.topic.replication.factor", fmt.Sprint(rf)},
		{"share.coordinator.state.topic.min.isr", fmt.Sprint(isr)},
		// Short group timings, so that tests rebalance in well under a
		// second: classic groups accept a 500ms session and start at
		// once; consumer (KIP-848) groups get their session and heartbeat
		// from the broker.
		{"group.initial.rebalance.delay.ms", "0"},
		{"group.min.session.timeout.ms", "500"},
		{"group.consumer.min.session.timeout.ms", "500"},
		{"group.consumer.session.timeout.ms", ms(o.ConsumerGroupSessionTimeout)},
		{"group.consumer.min.heartbeat.interval.ms", "100"},
		{"group.consumer.heartbeat.interval.ms", ms(o.ConsumerGroupHeartbeat)},
		{"group.consumer.min.assignment.interval.ms", "0"},
		{"group.consumer.assignment.interval.ms", "0"},
		// A dead broker is fenced, and its leaderships moved, after this.
		{"broker.session.timeout.ms", ms(o.BrokerSessionTimeout)},
		{"broker.heartbeat.interval.ms", ms(o.BrokerSessionTimeout / 4)},
		{"controlled.shutdown.enable", "true"},
		// The log cleaner looks for work every second (default 15s), so
		// that a compacted topic is compacted within a test.
		{"log.cleaner.backoff.ms", "1000"},
		{"log.cleaner.dedupe.buffer.size", fmt.Sprint(16 << 20)},
	}
	if len(o.SCRAMUsers) > 0 {
		props = append(props,
			[2]string{"sasl.enabled.mechanisms", "SCRAM-SHA-512"},
			[2]string{"listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config", "org.apache.kafka.common.security.scram.ScramLoginModule required;"},
		)
	}
	if o.TLS {
		props = append(props,
			[2]string{"ssl.keystore.type", "PEM"},
			[2]string{"ssl.keystore.location", c.Certs.serverStore},
			[2]string{"ssl.truststore.type", "PEM"},
			[2]string{"ssl.truststore.location", c.Certs.CAFile},
			[2]string{"listener.name.tls.ssl.client.auth", "none"},
			[2]string{"listener.name.mtls.ssl.client.auth", "required"},
		)
	}
	if o.Authorizer {
		props = append(props,
			[2]string{"authorizer.class.name", "org.apache.kafka.metadata.authorizer.StandardAuthorizer"},
			[2]string{"super.users", strings.Join(append([]string{"User:ANONYMOUS"}, o.SuperUsers...), ";")},
			[2]string{"allow.everyone.if.no.acl.found", "false"},
		)
	}
	var b strings.Builder
	for _, kv := range props {
		fmt.Fprintf(&b, "%s=%s\n", kv[0], escape(kv[1]))
	}
	if err := os.WriteFile(filepath.Join(n.dir, "server.properties"), []byte(b.String()), 0o644); err != nil {
		return err
	}
	log4j := fmt.Sprintf(`status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = %s
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%%d] %%p %%m (%%c)%%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.state.name = state.change.logger
logger.state.level = WARN
`, escape(filepath.Join(n.dir, "server.log")))
	return os.WriteFile(filepath.Join(n.dir, "log4j2.properties"), []byte(log4j), 0o644)
}

// escape escapes a Java properties value (backslashes).
func escape(v string) string { return strings.ReplaceAll(v, `\`, `\\`) }
