package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/market-data-store/mds/internal/store"
)

type dlqCmd struct {
	List   dlqListCmd   `cmd:"" help:"List dead letters (newest last)."`
	Replay dlqReplayCmd `cmd:"" help:"Re-publish chosen dead letters to a Kafka topic and mark them replayed."`
}

// dlqFilter selects dead letters; shared by list and replay.
type dlqFilter struct {
	Group     string  `help:"Only dead letters stored by this consumer group."`
	Topic     string  `help:"Only this topic."`
	Partition *int32  `help:"Only this partition."`
	Reason    string  `help:"Only this reason: decode, invalid, too_large, rejected." enum:",decode,invalid,too_large,rejected" default:""`
	IDs       []int64 `name:"id" help:"Only these ids (repeat or comma separate)." sep:","`
	FromID    int64   `help:"Only ids >= this."`
	ToID      int64   `help:"Only ids <= this."`
	Pending   bool    `help:"Only dead letters not replayed yet."`
	Limit     int     `default:"100" help:"At most this many."`
}

func (f dlqFilter) query(ctx context.Context, st *store.Store) ([]store.DeadLetterRow, error) {
	if len(f.IDs) > 0 {
		return st.DeadLetters(ctx, f.IDs)
	}
	return st.ListDeadLetters(ctx, store.DeadLetterFilter{
		Group: f.Group, Topic: f.Topic, Partition: f.Partition, Reason: f.Reason,
		MinID: f.FromID, MaxID: f.ToID, Pending: f.Pending, Limit: f.Limit,
	})
}

type dlqListCmd struct {
	dlqFilter
	JSON bool `help:"One JSON object per line instead of a table."`
}

func (c dlqListCmd) Run(g *globals) error {
	st, _, _, err := g.openStore()
	if err != nil {
		return err
	}
	defer st.Close()
	rows, err := c.query(g.ctx, st)
	if err != nil {
		return err
	}
	return printRows(g, c.JSON, rows, "dead letter(s)", "ID\tRECORD\tREASON\tCREATED\tREPLAYED\tERROR\tVALUE",
		func(r store.DeadLetterRow) any {
			return map[string]any{
				"id": r.ID, "group": r.ConsumerGroup, "topic": r.Topic, "partition": r.Partition, "offset": r.Offset,
				"key": string(r.Key), "value": string(r.Value), "reason": r.Reason, "error": r.Err,
				"created_at": r.CreatedAt, "replayed_at": r.ReplayedAt,
			}
		},
		func(r store.DeadLetterRow) string {
			replayed := "-"
			if r.ReplayedAt != nil {
				replayed = r.ReplayedAt.Format(time.DateTime)
			}
			return fmt.Sprintf("%d\t%s/%d@%d\t%s\t%s\t%s\t%s\t%s", r.ID, r.Topic, r.Partition, r.Offset, r.Reason,
				r.CreatedAt.Format(time.DateTime), replayed, clip(r.Err, 60), clip(string(r.Value), 60))
		})
}

// printRows prints rows as one JSON object per line (asJSON), or as a table
// under header, one line per row, then how many there were (named what) on
// stderr. Cells that may hold hostile text go through clip.
func printRows[T any](g *globals, asJSON bool, rows []T, what, header string, object func(T) any, line func(T) string) error {
	if asJSON {
		enc := json.NewEncoder(g.stdout)
		for _, r := range rows {
			if err := enc.Encode(object(r)); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(g.stdout, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, r := range rows {
		fmt.Fprintln(tw, line(r))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(g.stderr, "%d %s\n", len(rows), what)
	return nil
}

// clip shortens s for a table cell, on a rune boundary. Dead letters are
// hostile input: control characters (terminal escapes, carriage returns,
// tabs) and invalid UTF-8 are shown as escapes, never sent to the terminal.
func clip(s string, n int) string {
	var b strings.Builder
	for _, r := range strings.ToValidUTF8(s, "\uFFFD") {
		if unicode.IsPrint(r) {
			b.WriteRune(r)
		} else {
			b.WriteString(strings.Trim(strconv.QuoteRune(r), "'"))
		}
	}
	s = b.String()
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

type dlqReplayCmd struct {
	dlqFilter
	ToTopic string `help:"Publish to this topic instead of each record's own."`
	DryRun  bool   `help:"Show what would be re-published and change nothing."`
}

func (c dlqReplayCmd) Run(g *globals) error {
	if len(c.IDs) == 0 && c.FromID == 0 && c.ToID == 0 && c.Topic == "" && c.Reason == "" && c.Partition == nil {
		return errors.New("choose what to replay: --id, --from-id/--to-id, --topic, --partition or --reason")
	}
	st, s, log, err := g.openStore()
	if err != nil {
		return err
	}
	defer st.Close()
	f := c.dlqFilter
	if len(f.IDs) == 0 {
		f.Pending = true // page through what is left, not through what was replayed
	}
	rows, err := f.query(g.ctx, st)
	if err != nil {
		return err
	}
	if f.Pending {
		rows = pending(rows)
	}
	if len(rows) == 0 {
		fmt.Fprintln(g.stdout, "nothing to replay")
		return nil
	}
	more := len(f.IDs) == 0 && len(rows) == f.Limit
	if c.DryRun {
		for _, r := range rows {
			fmt.Fprintf(g.stdout, "would replay %d (%s/%d@%d) to %s\n", r.ID, r.Topic, r.Partition, r.Offset, c.target(r))
		}
		if more {
			fmt.Fprintf(g.stdout, "(first %d only: --limit)\n", f.Limit)
		}
		return nil
	}
	opts, err := s.Kafka.Opts(log.Named("kafka"))
	if err != nil {
		return err
	}
	cl, err := kgo.NewClient(append(opts, kgo.RecordRetries(10))...)
	if err != nil {
		return fmt.Errorf("creating kafka client: %w", err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(g.ctx, 2*time.Minute)
	defer cancel()
	recs := make([]*kgo.Record, len(rows))
	ids := make([]int64, len(rows))
	for i, r := range rows {
		recs[i] = &kgo.Record{Topic: c.target(r), Key: r.Key, Value: r.Value,
			Headers: []kgo.RecordHeader{{Key: "mds-replayed-from", Value: fmt.Appendf(nil, "%s/%d@%d#%d", r.Topic, r.Partition, r.Offset, r.ID)}}}
		ids[i] = r.ID
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return fmt.Errorf("re-publishing (nothing marked replayed; running again may publish some twice): %w", err)
	}
	n, err := st.MarkReplayed(ctx, ids)
	if err != nil {
		return err
	}
	fmt.Fprintf(g.stdout, "replayed %d dead letter(s)\n", n)
	if more {
		fmt.Fprintf(g.stdout, "stopped at --limit %d: run again for the rest\n", f.Limit)
	}
	return nil
}

func (c dlqReplayCmd) target(r store.DeadLetterRow) string {
	if c.ToTopic != "" {
		return c.ToTopic
	}
	return r.Topic
}

func pending(rows []store.DeadLetterRow) []store.DeadLetterRow {
	out := rows[:0]
	for _, r := range rows {
		if r.ReplayedAt == nil {
			out = append(out, r)
		}
	}
	return out
}
