package queue

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"time"

	"github.com/levee-dev/levee/internal/event"
)

// Pack format, version 1. A pack carries many events in one JetStream
// message (or one spool record):
//
//	version  1 byte (1)
//	count    uint32, big endian
//	count × record:
//	    length  uvarint: bytes of the record body that follows
//	    body    uvarint len + id, uvarint len + type,
//	            varint ts and varint received_at (Unix microseconds),
//	            uvarint len + data
//	crc      uint32, big endian: CRC-32C of everything before it
//
// A bad checksum, a wrong version or a truncated frame makes the whole pack
// unreadable. A record whose body is malformed or whose event breaks the
// event rules is reported on its own; the other records stay usable.
const (
	PackVersion   = 1
	packHeaderLen = 5
	packCRCLen    = 4
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Errors of a pack that cannot be read at all.
var (
	ErrPackChecksum  = errors.New("queue: pack checksum mismatch")
	ErrPackVersion   = errors.New("queue: unknown pack version")
	ErrPackTruncated = errors.New("queue: pack truncated")
)

// PackWriter encodes events into a pack. The zero value is ready to use.
type PackWriter struct {
	buf      []byte
	count    int
	ids      []byte // ids joined by '\n', for the message id
	finished bool
}

// Len returns the number of events written.
func (w *PackWriter) Len() int { return w.count }

// Size returns the encoded size so far, checksum included.
func (w *PackWriter) Size() int {
	if w.finished {
		return len(w.buf)
	}
	return max(len(w.buf), packHeaderLen) + packCRCLen
}

// RecordSize is the number of bytes Add adds for e.
func RecordSize(e *event.Event) int {
	n := bodyLen(e)
	return uvarintLen(n) + n
}

func bodyLen(e *event.Event) int {
	return uvarintLen(len(e.ID)) + len(e.ID) + uvarintLen(len(e.Type)) + len(e.Type) +
		varintLen(e.TS.UnixMicro()) + varintLen(e.ReceivedAt.UnixMicro()) +
		uvarintLen(len(e.Data)) + len(e.Data)
}

// Add appends one event.
func (w *PackWriter) Add(e *event.Event) {
	if len(w.buf) == 0 {
		w.buf = append(w.buf, PackVersion, 0, 0, 0, 0)
	}
	w.buf = binary.AppendUvarint(w.buf, uint64(bodyLen(e)))
	w.buf = appendBytes(w.buf, e.ID)
	w.buf = appendBytes(w.buf, e.Type)
	w.buf = binary.AppendVarint(w.buf, e.TS.UnixMicro())
	w.buf = binary.AppendVarint(w.buf, e.ReceivedAt.UnixMicro())
	w.buf = binary.AppendUvarint(w.buf, uint64(len(e.Data)))
	w.buf = append(w.buf, e.Data...)
	w.count++
	w.ids = append(append(w.ids, e.ID...), '\n')
}

// Finish completes the pack and returns it with its message id: a digest of
// the event ids, so the same events packed again get the same id and a
// retried pack is deduplicated by JetStream. The writer must not be reused.
func (w *PackWriter) Finish() (data []byte, msgID string) {
	if len(w.buf) == 0 {
		w.buf = append(w.buf, PackVersion, 0, 0, 0, 0)
	}
	binary.BigEndian.PutUint32(w.buf[1:5], uint32(w.count))
	w.buf = binary.BigEndian.AppendUint32(w.buf, crc32.Checksum(w.buf, castagnoli))
	w.finished = true
	sum := sha256.Sum256(w.ids)
	return w.buf, "pk-" + base64.RawURLEncoding.EncodeToString(sum[:18])
}

func appendBytes(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func uvarintLen[T int | uint64](n T) int {
	l := 1
	for x := uint64(n); x >= 0x80; x >>= 7 {
		l++
	}
	return l
}

func varintLen(v int64) int {
	ux := uint64(v) << 1
	if v < 0 {
		ux = ^ux
	}
	return uvarintLen(ux)
}

// Record is one event read from a pack, or the reason it could not be read.
// Raw is the record's body, kept so a bad record can go to the DLQ alone.
type Record struct {
	Event event.Event
	Raw   []byte
	Err   error
}

// DecodePack reads a pack. Event data aliases b. An error means the whole
// pack is unreadable; per-record problems are in Record.Err.
func DecodePack(b []byte) ([]Record, error) {
	if len(b) < packHeaderLen+packCRCLen {
		return nil, ErrPackTruncated
	}
	body, sum := b[:len(b)-packCRCLen], binary.BigEndian.Uint32(b[len(b)-packCRCLen:])
	if crc32.Checksum(body, castagnoli) != sum {
		return nil, ErrPackChecksum
	}
	if body[0] != PackVersion {
		return nil, fmt.Errorf("%w %d", ErrPackVersion, body[0])
	}
	count := binary.BigEndian.Uint32(body[1:5])
	rest := body[packHeaderLen:]
	if uint64(count) > uint64(len(rest)) { // every record takes at least one byte
		return nil, fmt.Errorf("%w: %d records announced in %d bytes", ErrPackTruncated, count, len(rest))
	}
	recs := make([]Record, 0, count)
	for i := uint32(0); i < count; i++ {
		n, k := binary.Uvarint(rest)
		if k <= 0 || n > uint64(len(rest)-k) {
			return nil, fmt.Errorf("%w: record %d of %d", ErrPackTruncated, i, count)
		}
		raw := rest[k : k+int(n)]
		rest = rest[k+int(n):]
		ev, err := decodeRecord(raw)
		recs = append(recs, Record{Event: ev, Raw: raw, Err: err})
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the last record", ErrPackTruncated, len(rest))
	}
	return recs, nil
}

// decodeRecord reads one record body and checks the event rules.
func decodeRecord(b []byte) (event.Event, error) {
	r := reader{b: b}
	id := r.bytes()
	typ := r.bytes()
	ts := r.varint()
	rec := r.varint()
	data := r.bytes()
	if r.err != nil {
		return event.Event{}, r.err
	}
	if len(r.b) != 0 {
		return event.Event{}, errors.New("queue: trailing bytes in record")
	}
	e := event.Event{
		ID: string(id), Type: string(typ),
		TS: time.UnixMicro(ts).UTC(), ReceivedAt: time.UnixMicro(rec).UTC(),
		Data: data,
	}
	if err := e.Check(); err != nil {
		return event.Event{}, fmt.Errorf("queue: invalid event in pack: %w", err)
	}
	return e, nil
}

type reader struct {
	b   []byte
	err error
}

func (r *reader) bytes() []byte {
	if r.err != nil {
		return nil
	}
	n, k := binary.Uvarint(r.b)
	if k <= 0 || n > uint64(len(r.b)-k) {
		r.err = errors.New("queue: malformed record")
		return nil
	}
	v := r.b[k : k+int(n)]
	r.b = r.b[k+int(n):]
	return v
}

func (r *reader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, k := binary.Varint(r.b)
	if k <= 0 {
		r.err = errors.New("queue: malformed record")
		return 0
	}
	r.b = r.b[k:]
	return v
}
