package consume

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// problemFor is how long a fetch error that stops consuming is reported
// after it was last seen. franz-go repeats such errors at each retry of
// the group join or metadata load (every few seconds), so one that has not
// come back for this long is over.
const problemFor = 30 * time.Second

// blocking are the errors after which the member cannot consume until an
// operator acts: it would otherwise sit in the group, or outside it,
// without partitions and without a word.
var blocking = []error{
	kerr.GroupAuthorizationFailed,
	kerr.TopicAuthorizationFailed,
	kerr.ClusterAuthorizationFailed,
	kerr.SaslAuthenticationFailed,
	kerr.InvalidGroupID,
	kerr.UnknownTopicOrPartition,
}

// health remembers the last blocking fetch error.
type health struct {
	mu  sync.Mutex
	err error
	at  time.Time
}

// note records err if it is blocking.
func (h *health) note(err error) {
	for _, b := range blocking {
		if errors.Is(err, b) {
			h.mu.Lock()
			h.err, h.at = err, time.Now()
			h.mu.Unlock()
			return
		}
	}
}

// Problem returns why the member cannot consume, if a fetch or group error
// said so within the last 30 s (a denied ACL, failed authentication, a
// missing topic), naming the group; nil otherwise. /readyz reports it.
func (c *Consumer) Problem() error {
	c.health.mu.Lock()
	defer c.health.mu.Unlock()
	if c.health.err == nil || time.Since(c.health.at) > problemFor {
		return nil
	}
	return fmt.Errorf("group %s: %w", c.cfg.Group, c.health.err)
}

// CheckTopics asks the brokers for topics and reports each that cannot be
// consumed: missing (a broker with auto.create.topics.enable=false, as
// production brokers have, never creates it for a consumer) or not
// authorized. franz-go keeps waiting for a missing topic in silence.
func CheckTopics(ctx context.Context, adm *kadm.Client, topics []string) error {
	md, err := adm.Metadata(ctx, topics...)
	if err != nil {
		return fmt.Errorf("reading topic metadata: %w", err)
	}
	var errs []error
	for _, t := range topics {
		d, ok := md.Topics[t]
		switch {
		case !ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition):
			errs = append(errs, fmt.Errorf("topic %s does not exist (create it: consumers do not create topics)", t))
		case d.Err != nil:
			errs = append(errs, fmt.Errorf("topic %s: %w", t, d.Err))
		}
	}
	return errors.Join(errs...)
}
