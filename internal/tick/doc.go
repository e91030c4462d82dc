// Package tick holds the value types that flow through the pipeline: the
// decoded Tick, the Kafka record it came from, dead letters, and the Chunk and
// Batch that carry them from the consumer through the coordinator to the
// store. It also turns record values into Ticks (Decoder) and Ticks into
// their canonical JSON (AppendJSON). It does no I/O, starts no goroutines and
// exports no metrics: the consumer counts decode failures by Reason.
//
// # The tick a record value must hold
//
// A record value is one JSON object (RFC 8259), optionally surrounded by
// whitespace, such as
//
//	{"ts":"2026-01-02T15:04:05.123456Z","symbol":"AAPL","venue":"XNAS","price":189.25,"size":100,"bid":189.24,"ask":189.26,"bid_size":300,"ask_size":200,"seq":123456}
//
// Its members, in any order:
//
//   - ts, required: either an RFC 3339 string in the strict form
//     YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM) (upper-case T and Z, valid
//     calendar fields, no leap second, offset hours below 24, fraction digits
//     past nanoseconds truncated, as time.Parse does), or integer epoch
//     nanoseconds, as a JSON integer or a string holding one (64-bit integers
//     are often quoted so that JavaScript readers keep them exact). A number
//     with a fraction or an exponent is invalid. The time is stored in UTC
//     and must lie in [Limits.MinTime, Limits.MaxTime), which also catches
//     epoch seconds or milliseconds sent by mistake: they land in 1970. It
//     must also not be later than now + Limits.MaxFuture (24 hours by
//     default; 0 turns this off): junk times far ahead would each create a
//     TimescaleDB chunk. The past is bounded by MinTime only, so backfill
//     stays possible. The decoder reads the clock only when a time reaches
//     the bound it computed last, so the check costs nothing per tick.
//   - symbol, required and non-empty, and venue, optional (an empty venue is
//     no venue): strings of at most Limits.MaxSymbolLen and
//     Limits.MaxVenueLen bytes of UTF-8 once escapes are decoded. They must
//     be valid UTF-8 without control characters (U+0000 to U+001F, U+007F:
//     PostgreSQL text cannot hold NUL) and without unpaired UTF-16 surrogates
//     in \u escapes; surrogate pairs are decoded.
//   - price, required, and bid and ask: finite numbers with an absolute value
//     of at most Limits.MaxAbsPrice. Zero and negative prices are allowed
//     (spreads and some futures trade below zero).
//   - size, bid_size and ask_size: finite numbers, not negative, fractions
//     allowed.
//   - seq: an integer that fits in an int64, as a JSON integer or a string
//     holding one.
//
// A null member is the same as an absent one: an optional member's Has bit
// stays clear, a required member is missing. Member names may use escapes
// ("\u0073ymbol" is symbol). A known member given twice, even once as null,
// makes the tick invalid: JSON parsers disagree on which one wins, and a
// record that means different things to different readers must not be
// stored. Unknown members are skipped whatever their value, but their syntax
// is still checked, and objects and arrays may nest at most 16 deep counting
// the tick object itself. Skipping keeps one bit per level and allocates
// nothing, so hostile nesting is refused at no cost.
//
// # Failures
//
// Decode returns a *DecodeError whose Reason labels the dead letter:
//
//   - ReasonTooLarge: the value is longer than Limits.MaxRecordBytes. This is
//     checked before any parsing.
//   - ReasonDecode: the value is not well-formed JSON (whatever
//     encoding/json's Valid rejects, and nothing else it accepts, as the fuzz
//     test checks), is not an object, nests too deep, or gives a known member
//     the wrong JSON type (price as a string, symbol as a number, ts as a
//     boolean).
//   - ReasonInvalid: well-formed and well-typed, but a rule above is broken or
//     a required member is missing.
//
// The whole value is scanned before a broken rule is reported, so a record
// that is both malformed and invalid is always ReasonDecode.
//
// # Cost
//
// The Decoder scans the object in place with a hand-written scanner and
// allocates nothing per member: numbers are converted from the input bytes
// (an exact fast path for literals of up to 15 digits without exponent,
// strconv.ParseFloat otherwise), timestamps by an exact RFC 3339 parser, and
// symbols and venues are interned in a table of at most 16384 strings per
// Decoder (cleared when full), so a feed over a steady set of symbols
// decodes with no allocation at all. It is not safe for concurrent use: give
// each goroutine its own.
//
// Measured with go test -bench . -benchmem -count=5 on the full tick above
// over 500 symbols (Go 1.26, 2 vCPUs of a Xeon at a load average of 18 from
// other work, so wall-clock ns/op varied twofold; cpu-ns/op is the process
// CPU time per tick, garbage collection included, which is what the service's
// CPU budget counts and what a shared machine disturbs least):
//
//	                       cpu-ns/op   ns/op (wall)   B/op   allocs/op
//	BenchmarkDecode          480-510       560-1330      0           0
//	BenchmarkDecodeStdlib  2750-3030      2850-4120    431          16
//	BenchmarkAppendJSON      280-285        440-760      0           0
//
// BenchmarkDecodeStdlib is encoding/json into a struct of pointers plus
// time.Parse, without any of the rules above. Decoding thus costs about 0.5
// CPU seconds per million ticks, a sixth of the service's budget of 3.
//
// # Encoding
//
// AppendJSON writes the canonical form: the members in the order above,
// ts in RFC 3339 UTC with as many fraction digits as needed, numbers in their
// shortest exact form, optional members only when set. Decoding it gives back
// the same Tick. Producers (cmd/tickgen), tests and benchmarks use it.
package tick
