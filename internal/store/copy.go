package store

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"math/bits"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/market-data-store/mds/internal/tick"
)

// copyTicksSQL is the COPY statement of Write. Its column list, the binary
// layout appendRow writes and the ticks table of the migrations must agree:
// the encoder sends no type information, the server checks only lengths.
const copyTicksSQL = "COPY ticks (ts, symbol, venue, price, size, bid, ask, bid_size, ask_size, seq) FROM STDIN (FORMAT binary)"

// PostgreSQL's binary COPY framing: the signature, then int32 flags and
// int32 header extension length, both 0; each row an int16 field count and
// per field an int32 length (-1: NULL) and the bytes; the trailer int16 -1.
var (
	copyHeader  = []byte("PGCOPY\n\xff\r\n\x00" + "\x00\x00\x00\x00" + "\x00\x00\x00\x00")
	copyTrailer = []byte{0xff, 0xff}
)

const (
	ticksFields = 10
	// pgEpochMicros is 2000-01-01 00:00:00 UTC in Unix microseconds: the
	// zero of PostgreSQL's timestamptz.
	pgEpochMicros = 946_684_800_000_000
	// rowFixedSize is what every row takes besides its text: the field
	// count, ten lengths, ts and price.
	rowFixedSize = 2 + ticksFields*4 + 8 + 8
	// withUint64 are the optional fields sent as 8 bytes when present.
	withUint64 = tick.HasSize | tick.HasBid | tick.HasAsk | tick.HasBidSize | tick.HasAskSize | tick.HasSeq
)

// errCopyClosed is what a copyReader returns when it is read after its COPY
// statement returned (see copyReader).
var errCopyClosed = errors.New("copy reader read after its statement returned")

// isLayoutError reports whether err, returned by a COPY of copyTicksSQL on a
// session that survived it, is the server failing to read the binary data
// as the columns of ticks: a field of the wrong length for its column's type
// (22P03 invalid binary representation, or 08P01 "insufficient data left in
// message" when the field is too short) or a malformed stream (22P04). No
// value of a tick causes any of them, so such an error is the table's
// fault, never a row's: it must fail the write, neither dead-letter every
// row as a data error nor be retried as a connection error.
func isLayoutError(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return false
	}
	switch pgErr.Code {
	case "22P03", "22P04", "08P01":
		return true
	}
	return false
}

// copyTicks copies rows [lo, hi) of the chunks into ticks with one binary
// COPY on tx's connection and returns the number of rows the server stored.
func copyTicks(ctx context.Context, tx pgx.Tx, chunks []*tick.Chunk, lo, hi int) (int64, error) {
	r := newCopyReader(chunks, lo, hi)
	tag, err := tx.Conn().PgConn().CopyFrom(ctx, r, copyTicksSQL)
	r.close()
	return tag.RowsAffected(), err
}

// copyReader is the io.Reader of one COPY statement. pgconn reads it from
// its own goroutine into the buffer it sends as CopyData messages, and each
// Read encodes as many whole rows of the window as fit straight into that
// buffer, from the batch's records in place: no row is built, boxed or
// copied twice, and no goroutine of ours sits between the two.
//
// Only an item larger than the caller's buffer (the header or a row when
// the buffer is tiny, or a row with a huge symbol) is encoded into spill
// and handed out over several Reads.
//
// pgconn does not wait for its reading goroutine when the connection fails
// fatally during the COPY, so a Read may still run after CopyFrom returned.
// close waits for such a Read and makes later ones fail, so that nothing
// touches the batch once copyTicks has returned. A copyReader serves one
// statement only.
type copyReader struct {
	mu     sync.Mutex
	chunks []*tick.Chunk
	ci, ri int    // chunk and record index of the next row
	left   int    // rows of the window not yet encoded
	pend   []byte // encoded bytes not yet read: copyHeader, copyTrailer or spill
	spill  []byte
	ended  bool // the trailer is encoded
	closed bool // the statement returned
}

var _ io.Reader = (*copyReader)(nil)

// newCopyReader returns a reader of rows [lo, hi) of the chunks, counting
// records across chunks in order.
func newCopyReader(chunks []*tick.Chunk, lo, hi int) *copyReader {
	ci, ri := locate(chunks, lo)
	return &copyReader{chunks: chunks, ci: ci, ri: ri, left: hi - lo, pend: copyHeader}
}

// Read fills p with the next bytes of the COPY data: the header, whole rows
// and the trailer. It returns io.EOF with the last bytes.
func (r *copyReader) Read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return 0, errCopyClosed
	}
	n := copy(p, r.pend)
	r.pend = r.pend[n:]
	for len(r.pend) == 0 && n < len(p) {
		t := r.next()
		switch {
		case t == nil && r.ended:
			return n, io.EOF
		case t == nil:
			r.ended = true
			r.pend = copyTrailer
		case rowSize(t) <= len(p)-n:
			n += len(appendRow(p[n:n], t))
			r.advance()
			continue
		case n > 0:
			return n, nil // the row goes first into the next buffer
		default:
			r.spill = appendRow(r.spill[:0], t)
			r.advance()
			r.pend = r.spill
		}
		m := copy(p[n:], r.pend)
		r.pend = r.pend[m:]
		n += m
	}
	if r.ended && len(r.pend) == 0 {
		return n, io.EOF
	}
	return n, nil
}

// next returns the tick of the next row of the window, nil after the last.
func (r *copyReader) next() *tick.Tick {
	for r.left > 0 && r.ci < len(r.chunks) {
		if recs := r.chunks[r.ci].Records; r.ri < len(recs) {
			return &recs[r.ri].Tick
		}
		r.ci, r.ri = r.ci+1, 0
	}
	return nil
}

// advance moves past the row next returned.
func (r *copyReader) advance() {
	r.ri++
	r.left--
}

// close waits for a Read in progress and makes every later Read fail.
func (r *copyReader) close() {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
}

// locate returns the chunk and record index of row i of the chunks.
func locate(chunks []*tick.Chunk, i int) (ci, ri int) {
	for ci < len(chunks) && i >= len(chunks[ci].Records) {
		i -= len(chunks[ci].Records)
		ci++
	}
	return ci, i
}

// rowSize is the length of appendRow's encoding of t.
func rowSize(t *tick.Tick) int {
	n := rowFixedSize + len(t.Symbol)
	if t.Has&tick.HasVenue != 0 {
		n += len(t.Venue)
	}
	return n + 8*bits.OnesCount8(uint8(t.Has&withUint64))
}

// appendRow appends t as one row of binary COPY data for copyTicksSQL's
// columns. An optional field whose bit is clear in t.Has is NULL. The
// timestamp is floored to the microsecond, as pgx encodes a time.Time.
func appendRow(b []byte, t *tick.Tick) []byte {
	b = binary.BigEndian.AppendUint16(b, ticksFields)
	b = appendUint64(b, uint64(t.TS.UnixMicro()-pgEpochMicros), true)
	b = appendText(b, t.Symbol, true)
	b = appendText(b, t.Venue, t.Has&tick.HasVenue != 0)
	b = appendUint64(b, math.Float64bits(t.Price), true)
	b = appendUint64(b, math.Float64bits(t.Size), t.Has&tick.HasSize != 0)
	b = appendUint64(b, math.Float64bits(t.Bid), t.Has&tick.HasBid != 0)
	b = appendUint64(b, math.Float64bits(t.Ask), t.Has&tick.HasAsk != 0)
	b = appendUint64(b, math.Float64bits(t.BidSize), t.Has&tick.HasBidSize != 0)
	b = appendUint64(b, math.Float64bits(t.AskSize), t.Has&tick.HasAskSize != 0)
	return appendUint64(b, uint64(t.Seq), t.Has&tick.HasSeq != 0)
}

// appendUint64 appends an 8-byte field (timestamptz, double precision,
// bigint), or NULL when !valid.
func appendUint64(b []byte, v uint64, valid bool) []byte {
	if !valid {
		return binary.BigEndian.AppendUint32(b, math.MaxUint32)
	}
	b = binary.BigEndian.AppendUint32(b, 8)
	return binary.BigEndian.AppendUint64(b, v)
}

// appendText appends a text field, or NULL when !valid.
func appendText(b []byte, s string, valid bool) []byte {
	if !valid {
		return binary.BigEndian.AppendUint32(b, math.MaxUint32)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}
