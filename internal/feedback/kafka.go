package feedback

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/market-data-store/mds/backpressure"
)

// Schema names the event format (docs/feedback-event.schema.json) in the
// "schema" record header and the X-MDS-Schema webhook header.
const Schema = "mds.feedback.v1"

// topicTimeout bounds creating or checking the feedback topic at start.
const topicTimeout = 10 * time.Second

// Source gives the current state, re-published as heartbeats. *Monitor is
// one (the upstream level with the queue's state).
type Source interface {
	Current() backpressure.Event
}

// KafkaPublisher publishes feedback events on the feedback topic: each event
// it is notified of, and the current state every heartbeat interval, all
// from the goroutine running Run so that they keep their order. It never
// blocks its caller: records are produced asynchronously, each one given one
// heartbeat interval to be delivered; a failure is counted, logged once per
// episode of failures, and made good by the next publication. Stop publishes
// a tombstone for the coordinator.
type KafkaPublisher struct {
	topic    string
	topicCfg TopicConfig
	interval time.Duration
	client   *kgo.Client
	src      Source
	box      *mailbox
	log      *zap.Logger
	m        *metrics
	episodes *episodes

	mu        sync.Mutex
	stopped   bool
	cancelRun context.CancelFunc // of the running Run, nil if none
	runDone   chan struct{}      // closed when that Run returns
}

// NewKafkaPublisher returns a publisher producing with client, which the
// caller builds (brokers, TLS, SASL) and closes after Run and Stop have
// returned. The client should keep franz-go's default idempotent producer,
// so that retries cannot reorder a coordinator's events.
func NewKafkaPublisher(cfg Config, client *kgo.Client, src Source, log *zap.Logger, reg prometheus.Registerer) (*KafkaPublisher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("registering feedback metrics: %w", err)
	}
	log = log.Named("feedback_kafka").With(zap.String("topic", cfg.Topic))
	return &KafkaPublisher{
		topic:    cfg.Topic,
		topicCfg: cfg.TopicSettings,
		interval: cfg.HeartbeatInterval,
		client:   client,
		src:      src,
		box:      newMailbox(),
		log:      log,
		m:        m,
		episodes: &episodes{log: log},
	}, nil
}

// Notify hands e to Run for publishing, replacing an event Run has not taken
// yet. It returns at once and always nil: the outcome is counted and logged
// by the publisher.
func (p *KafkaPublisher) Notify(_ context.Context, e backpressure.Event) error {
	p.box.put(e)
	return nil
}

// Run creates the topic if it is missing, then publishes the current state
// at once and every heartbeat interval, and each event it is notified of,
// until ctx is done or Stop is called. It returns nil. While the brokers
// cannot be reached, creating the topic is tried again at each heartbeat.
func (p *KafkaPublisher) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan struct{})
	defer close(done)
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		return nil
	}
	p.cancelRun, p.runDone = cancel, done
	p.mu.Unlock()

	topicDone, first := false, true
	heartbeat(ctx, p.interval, p.src, p.box, func(e backpressure.Event, _ <-chan struct{}) {
		if !topicDone && e.Reason == backpressure.ReasonHeartbeat {
			topicDone, first = p.ensureTopic(ctx, first), false
		}
		v, err := json.Marshal(e)
		if err != nil { // only an out-of-range level, a bug upstream
			p.failed(fmt.Errorf("encoding feedback event: %w", err))
			return
		}
		p.produce([]byte(e.CoordinatorID), v)
	})
	return nil
}

// Stop ends Run, publishes a tombstone (key = coordinator id, no value) so
// that followers stop counting this coordinator at once and compaction
// eventually drops its key, and then waits, bounded by ctx, for the records
// in flight to be delivered before the client is closed.
func (p *KafkaPublisher) Stop(ctx context.Context) error {
	p.mu.Lock()
	p.stopped = true
	cancel, done := p.cancelRun, p.runDone
	p.mu.Unlock()
	if cancel != nil { // the tombstone must come after Run's last record
		cancel()
		select {
		case <-done:
		case <-ctx.Done():
			return fmt.Errorf("waiting for the feedback publisher to stop: %w", ctx.Err())
		}
	}
	p.produce([]byte(p.src.Current().CoordinatorID), nil)
	if err := p.client.Flush(ctx); err != nil {
		return fmt.Errorf("flushing feedback records: %w", err)
	}
	return nil
}

// produce produces one record without waiting.
func (p *KafkaPublisher) produce(key, value []byte) {
	// A record older than one interval is superseded by the next
	// publication: fail it rather than let it queue behind a dead broker.
	ctx, cancel := context.WithTimeout(context.Background(), p.interval)
	r := &kgo.Record{Topic: p.topic, Key: key, Value: value, Context: ctx}
	if value != nil {
		r.Headers = []kgo.RecordHeader{
			{Key: "content-type", Value: []byte("application/json")},
			{Key: "schema", Value: []byte(Schema)},
		}
	}
	p.client.TryProduce(ctx, r, func(_ *kgo.Record, err error) {
		cancel()
		if err != nil {
			p.failed(err)
			return
		}
		p.m.published.WithLabelValues(sinkKafka, outcomeOK).Inc()
		p.episodes.succeeded()
	})
}

func (p *KafkaPublisher) failed(err error) {
	p.m.published.WithLabelValues(sinkKafka, outcomeError).Inc()
	p.episodes.failed(err)
}

// topicConfigs are the configs the topic is created with.
func (c TopicConfig) topicConfigs() map[string]*string {
	cfgs := map[string]*string{
		"cleanup.policy":            kadm.StringPtr("compact"),
		"min.cleanable.dirty.ratio": kadm.StringPtr("0.1"),
		"segment.ms":                kadm.StringPtr(strconv.FormatInt(c.Segment.Milliseconds(), 10)),
	}
	if c.MinInsyncReplicas > 0 {
		cfgs["min.insync.replicas"] = kadm.StringPtr(strconv.Itoa(c.MinInsyncReplicas))
	}
	return cfgs
}

// ensureTopic creates the topic (one partition, compacted, with the
// TopicConfig settings), and reports whether that is settled: the topic is
// there, or the cluster refused for good (say, no permission: the topic
// may have been provisioned by someone else, and publishing will tell). An
// existing topic that is not compacted is used as it is, with a warning
// naming the fix. Problems are logged, at warning level when first is set.
func (p *KafkaPublisher) ensureTopic(ctx context.Context, first bool) (done bool) {
	ctx, cancel := context.WithTimeout(ctx, topicTimeout)
	defer cancel()
	adm := kadm.NewClient(p.client) // not closed: that would close p.client
	_, err := adm.CreateTopic(ctx, 1, int16(p.topicCfg.ReplicationFactor), p.topicCfg.topicConfigs(), p.topic)
	var kerrErr *kerr.Error
	switch {
	case err == nil:
		p.log.Info("created feedback topic",
			zap.Int("replication_factor", p.topicCfg.ReplicationFactor), zap.Int("min_insync_replicas", p.topicCfg.MinInsyncReplicas),
			zap.Duration("segment", p.topicCfg.Segment))
		return true
	case errors.As(err, &kerrErr) && !kerrErr.Retriable && !errors.Is(err, kerr.TopicAlreadyExists):
		p.log.Warn("creating feedback topic", zap.Error(err))
		return true
	case !errors.Is(err, kerr.TopicAlreadyExists):
		level := zap.DebugLevel
		if first {
			level = zap.WarnLevel
		}
		p.log.Log(level, "creating feedback topic; trying again at the next heartbeat", zap.Error(err))
		return false
	}
	cfgs, err := adm.DescribeTopicConfigs(ctx, p.topic)
	if err == nil {
		var rc kadm.ResourceConfig
		if rc, err = cfgs.On(p.topic, nil); err == nil {
			err = rc.Err
		}
		for _, c := range rc.Configs {
			if c.Key == "cleanup.policy" && c.Value != nil && !strings.Contains(*c.Value, "compact") {
				p.log.Warn("feedback topic is not compacted: it keeps every heartbeat until retention, and a starting follower reads all of them; "+
					"fix: kafka-configs.sh --alter --entity-type topics --entity-name "+p.topic+
					" --add-config cleanup.policy=compact,min.cleanable.dirty.ratio=0.1,segment.ms="+strconv.FormatInt(p.topicCfg.Segment.Milliseconds(), 10),
					zap.String("cleanup_policy", *c.Value))
			}
		}
	}
	if err != nil {
		p.log.Warn("checking feedback topic configuration", zap.Error(err))
	}
	return true
}
