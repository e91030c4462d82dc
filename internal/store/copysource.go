package store

import (
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/market-data-store/mds/internal/tick"
)

// tickSource is the pgx.CopyFromSource of Write. It walks a window of the
// batch's records in place and never copies the batch into [][]any: each
// row is loaded into one reused set of pgtype values, and Values hands pgx
// the same slice of pointers to them every time. Pointers to pgtype values
// implement pgx's valuer interfaces themselves, so pgx encodes them without
// boxing a copy per field, and a row costs no allocation on either side.
type tickSource struct {
	chunks []*tick.Chunk
	ci, ri int // chunk and record index of the next row
	left   int // rows of the window still to yield
	cur    *tick.Record
	row    struct {
		ts                                      pgtype.Timestamptz
		symbol, venue                           pgtype.Text
		price, size, bid, ask, bidSize, askSize pgtype.Float8
		seq                                     pgtype.Int8
	}
	vals []any
}

var _ interface {
	Next() bool
	Values() ([]any, error)
	Err() error
} = (*tickSource)(nil)

func newTickSource(chunks []*tick.Chunk) *tickSource {
	s := &tickSource{chunks: chunks}
	r := &s.row
	s.vals = []any{&r.ts, &r.symbol, &r.venue, &r.price, &r.size, &r.bid, &r.ask, &r.bidSize, &r.askSize, &r.seq}
	return s
}

// window positions the source on rows [lo, hi) of the batch, counting
// records across chunks in order.
func (s *tickSource) window(lo, hi int) {
	s.ci, s.ri = s.locate(lo)
	s.left = hi - lo
	s.cur = nil
}

// locate returns the chunk and record index of row i.
func (s *tickSource) locate(i int) (ci, ri int) {
	for ci < len(s.chunks) && i >= len(s.chunks[ci].Records) {
		i -= len(s.chunks[ci].Records)
		ci++
	}
	return ci, i
}

// at returns row i and its chunk.
func (s *tickSource) at(i int) (*tick.Chunk, *tick.Record) {
	ci, ri := s.locate(i)
	c := s.chunks[ci]
	return c, &c.Records[ri]
}

func (s *tickSource) Next() bool {
	for s.left > 0 && s.ci < len(s.chunks) {
		recs := s.chunks[s.ci].Records
		if s.ri < len(recs) {
			s.cur = &recs[s.ri]
			s.ri++
			s.left--
			return true
		}
		s.ci, s.ri = s.ci+1, 0
	}
	return false
}

func (s *tickSource) Values() ([]any, error) {
	t, r := &s.cur.Tick, &s.row
	r.ts = pgtype.Timestamptz{Time: t.TS, Valid: true}
	r.symbol = pgtype.Text{String: t.Symbol, Valid: true}
	r.venue = pgtype.Text{String: t.Venue, Valid: t.Has&tick.HasVenue != 0}
	r.price = pgtype.Float8{Float64: t.Price, Valid: true}
	r.size = pgtype.Float8{Float64: t.Size, Valid: t.Has&tick.HasSize != 0}
	r.bid = pgtype.Float8{Float64: t.Bid, Valid: t.Has&tick.HasBid != 0}
	r.ask = pgtype.Float8{Float64: t.Ask, Valid: t.Has&tick.HasAsk != 0}
	r.bidSize = pgtype.Float8{Float64: t.BidSize, Valid: t.Has&tick.HasBidSize != 0}
	r.askSize = pgtype.Float8{Float64: t.AskSize, Valid: t.Has&tick.HasAskSize != 0}
	r.seq = pgtype.Int8{Int64: t.Seq, Valid: t.Has&tick.HasSeq != 0}
	return s.vals, nil
}

func (s *tickSource) Err() error { return nil }
