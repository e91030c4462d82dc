package store

import (
	"github.com/market-data-store/mds/internal/tick"
)

// tickSource is the pgx.CopyFromSource of Write. It walks a window of the
// batch's records in place: Values hands pgx pointers to the fields of the
// current record's Tick in one reused slice, so a row costs no allocation
// and the batch is never copied into [][]any.
type tickSource struct {
	chunks []*tick.Chunk
	ci, ri int // chunk and record index of the next row
	left   int // rows of the window still to yield
	cur    *tick.Record
	vals   [10]any
}

var _ interface {
	Next() bool
	Values() ([]any, error)
	Err() error
} = (*tickSource)(nil)

func newTickSource(chunks []*tick.Chunk) *tickSource {
	return &tickSource{chunks: chunks}
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
	t := &s.cur.Tick
	v := s.vals[:]
	v[0] = &t.TS
	v[1] = &t.Symbol
	v[2] = opt(t.Has&tick.HasVenue != 0, &t.Venue)
	v[3] = &t.Price
	v[4] = opt(t.Has&tick.HasSize != 0, &t.Size)
	v[5] = opt(t.Has&tick.HasBid != 0, &t.Bid)
	v[6] = opt(t.Has&tick.HasAsk != 0, &t.Ask)
	v[7] = opt(t.Has&tick.HasBidSize != 0, &t.BidSize)
	v[8] = opt(t.Has&tick.HasAskSize != 0, &t.AskSize)
	v[9] = opt(t.Has&tick.HasSeq != 0, &t.Seq)
	return v, nil
}

func (s *tickSource) Err() error { return nil }

// opt is p when the field is present and nil (SQL NULL) when it is not.
func opt[T any](present bool, p *T) any {
	if present {
		return p
	}
	return nil
}
