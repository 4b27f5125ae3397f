package queue_test

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/levee-dev/levee/internal/event"
	"github.com/levee-dev/levee/internal/queue"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Unix microseconds of the first and last instants an event may carry:
// 0001-01-01T00:00:00.000001Z (the zero time itself is "unset") and
// 9999-12-31T23:59:59.999999Z.
var (
	minMicro = time.Date(1, 1, 1, 0, 0, 0, 1000, time.UTC).UnixMicro()
	maxMicro = time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC).UnixMicro()
)

var sampleData = []string{
	`{}`, `[]`, `null`, `true`, `false`, `0`, `-1.5e10`, `"x"`,
	`"héllo wörld, 世界 🎉"`, `"\u00e9\n\t\"\\"`,
	`{"a":[1,2,{"b":null}],"c":{"d":"e"}}`,
	`  {"spaced" : [ 1 , 2 ] }  `,
}

const idChars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:-"

func randString(r *rand.Rand, alphabet string, n int) string {
	var b strings.Builder
	for range n {
		b.WriteByte(alphabet[r.IntN(len(alphabet))])
	}
	return b.String()
}

func randType(r *rand.Rand) string {
	const alnum = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	const rest = alnum + "_-"
	var tokens []string
	n := 0
	for i := 0; i < 1+r.IntN(4); i++ {
		tok := randString(r, alnum, 1) + randString(r, rest, r.IntN(20))
		if n+len(tok)+1 > event.MaxTypeLen {
			break
		}
		n += len(tok) + 1
		tokens = append(tokens, tok)
	}
	return strings.Join(tokens, ".")
}

func randEvent(r *rand.Rand) event.Event {
	e := event.Event{
		ID:         randString(r, idChars, 1+r.IntN(event.MaxIDLen)),
		Type:       randType(r),
		TS:         time.UnixMicro(minMicro + r.Int64N(maxMicro-minMicro+1)),
		ReceivedAt: time.UnixMicro(r.Int64N(4102444800000000)), // 1970..2100
		Data:       json.RawMessage(sampleData[r.IntN(len(sampleData))]),
	}
	if r.IntN(3) == 0 { // a local time zone: only the instant must survive
		e.TS = e.TS.In(time.FixedZone("X", -7*3600))
	}
	return e
}

// edgeEvents are the events every round trip must carry besides random ones.
func edgeEvents() []event.Event {
	big := `{"blob":"` + strings.Repeat("0123456789abcdef", 60*1024/16) + `"}`
	utc := func(y int, mo time.Month, d, h, mi, s, us int) time.Time {
		return time.Date(y, mo, d, h, mi, s, us*1000, time.UTC)
	}
	rec := utc(2024, 5, 1, 12, 0, 0, 123456)
	return []event.Event{
		{ID: "a", Type: "t", TS: rec, ReceivedAt: rec, Data: json.RawMessage(`{}`)},
		{ID: "neg", Type: "old.event", TS: utc(1969, 12, 31, 23, 59, 59, 999999), ReceivedAt: rec, Data: json.RawMessage(`1`)},
		{ID: "ancient", Type: "x", TS: time.UnixMicro(minMicro), ReceivedAt: time.UnixMicro(-1), Data: json.RawMessage(`[]`)},
		{ID: "y9999", Type: "far_future-1", TS: time.UnixMicro(maxMicro), ReceivedAt: utc(9999, 1, 1, 0, 0, 0, 1), Data: json.RawMessage(`null`)},
		{ID: "epoch", Type: "e", TS: time.Unix(0, 0), ReceivedAt: time.Unix(0, 1000), Data: json.RawMessage(`"ünï cødé ✓ 𝄞"`)},
		{ID: "big", Type: "big.payload", TS: rec, ReceivedAt: rec, Data: json.RawMessage(big)},
		{ID: strings.Repeat("Z", event.MaxIDLen), Type: strings.Repeat("t", event.MaxTypeLen), TS: rec, ReceivedAt: rec, Data: json.RawMessage(`{"k":"v"}`)},
	}
}

// requireSameEvent compares two events, the timestamps as instants.
func requireSameEvent(t *testing.T, want, got event.Event, where string) {
	t.Helper()
	require.Equal(t, want.ID, got.ID, where)
	require.Equal(t, want.Type, got.Type, where)
	require.True(t, want.TS.Equal(got.TS), "%s: ts: want %s, got %s", where, want.TS, got.TS)
	require.True(t, want.ReceivedAt.Equal(got.ReceivedAt), "%s: received_at: want %s, got %s", where, want.ReceivedAt, got.ReceivedAt)
	require.Equal(t, string(want.Data), string(got.Data), where)
}

func pack(evs []event.Event) ([]byte, string) {
	var w queue.PackWriter
	for i := range evs {
		w.Add(&evs[i])
	}
	return w.Finish()
}

func TestPackRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	random := func(n int) []event.Event {
		evs := make([]event.Event, n)
		for i := range evs {
			evs[i] = randEvent(r)
		}
		return evs
	}
	tests := []struct {
		name string
		evs  []event.Event
	}{
		{"empty", nil},
		{"one", random(1)},
		{"edge cases", edgeEvents()},
		{"random 10", random(10)},
		{"random 1000", random(1000)},
		{"edge and random mixed", append(random(50), edgeEvents()...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for i := range tt.evs {
				require.NoError(t, tt.evs[i].Check(), "generated event %d is invalid", i)
			}
			data, id := pack(tt.evs)
			recs, err := queue.DecodePack(data)
			require.NoError(t, err)
			require.Len(t, recs, len(tt.evs))
			for i, rec := range recs {
				require.NoError(t, rec.Err, "record %d", i)
				requireSameEvent(t, tt.evs[i], rec.Event, fmt.Sprintf("record %d", i))
				require.Equal(t, time.UTC, rec.Event.TS.Location())
				require.Equal(t, queue.RecordSize(&tt.evs[i]), len(rec.Raw)+uvarintLen(len(rec.Raw)), "record %d", i)
			}
			require.NotEmpty(t, id)
		})
	}
}

func uvarintLen(n int) int { return len(binary.AppendUvarint(nil, uint64(n))) }

func TestPackSize(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	evs := append(edgeEvents(), randEvent(r), randEvent(r), randEvent(r))
	tests := []struct {
		name string
		evs  []event.Event
	}{
		{"empty", nil},
		{"one", evs[:1]},
		{"many", evs},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var w queue.PackWriter
			require.Zero(t, w.Len())
			require.Equal(t, 9, w.Size(), "header (5) + crc (4)")
			for i := range tt.evs {
				before := w.Size()
				w.Add(&tt.evs[i])
				require.Equal(t, before+queue.RecordSize(&tt.evs[i]), w.Size(), "Size must grow by RecordSize, event %d", i)
				require.Equal(t, i+1, w.Len())
			}
			size := w.Size()
			data, _ := w.Finish()
			require.Len(t, data, size, "Size before Finish")
			require.Equal(t, len(data), w.Size(), "Size after Finish")
		})
	}
}

func TestPackMessageID(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	base := []event.Event{randEvent(r), randEvent(r), randEvent(r)}
	base[0].ID, base[1].ID, base[2].ID = "id-1", "id-2", "id-3"
	_, baseID := pack(base)

	clone := func(mod func([]event.Event) []event.Event) []event.Event {
		return mod(append([]event.Event(nil), base...))
	}
	tests := []struct {
		name string
		evs  []event.Event
		same bool
	}{
		{"same events", clone(func(e []event.Event) []event.Event { return e }), true},
		{"same ids, other content", clone(func(e []event.Event) []event.Event {
			e[0].Data, e[1].TS = json.RawMessage(`{"other":1}`), e[1].TS.Add(time.Hour)
			return e
		}), true},
		{"other order", clone(func(e []event.Event) []event.Event { e[0], e[1] = e[1], e[0]; return e }), false},
		{"other id", clone(func(e []event.Event) []event.Event { e[2].ID = "id-4"; return e }), false},
		{"one event fewer", clone(func(e []event.Event) []event.Event { return e[:2] }), false},
		{"one event more", clone(func(e []event.Event) []event.Event { return append(e, e[0]) }), false},
		{"empty", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, id := pack(tt.evs)
			_, again := pack(tt.evs)
			require.Equal(t, id, again, "not deterministic")
			if tt.same {
				require.Equal(t, baseID, id)
			} else {
				require.NotEqual(t, baseID, id)
			}
			requireValidMsgID(t, id)
		})
	}
}

// requireValidMsgID checks that id can be a Nats-Msg-Id header value.
func requireValidMsgID(t *testing.T, id string) {
	t.Helper()
	require.NotEmpty(t, id)
	require.LessOrEqual(t, len(id), 128)
	for i := 0; i < len(id); i++ {
		require.True(t, id[i] > ' ' && id[i] < 0x7f, "byte %d of %q is not printable ASCII", i, id)
	}
}

// Hand-built packs, to reach the decoder's error paths with a valid CRC.

func seal(b []byte) []byte { return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli)) }

// rawPack frames record bodies with the given version and count field.
func rawPack(version byte, count uint32, bodies ...[]byte) []byte {
	b := []byte{version}
	b = binary.BigEndian.AppendUint32(b, count)
	for _, body := range bodies {
		b = binary.AppendUvarint(b, uint64(len(body)))
		b = append(b, body...)
	}
	return seal(b)
}

func body(id, typ string, ts, rec int64, data string) []byte {
	var b []byte
	b = binary.AppendUvarint(b, uint64(len(id)))
	b = append(b, id...)
	b = binary.AppendUvarint(b, uint64(len(typ)))
	b = append(b, typ...)
	b = binary.AppendVarint(b, ts)
	b = binary.AppendVarint(b, rec)
	b = binary.AppendUvarint(b, uint64(len(data)))
	return append(b, data...)
}

const usNow = 1714564800123456 // 2024-05-01T12:00:00.123456Z

func goodBody(id string) []byte { return body(id, "ok.type", usNow, usNow, `{"n":1}`) }

func TestDecodePackHandBuilt(t *testing.T) {
	// The hand-built encoding is the one PackWriter writes.
	e := event.Event{ID: "g1", Type: "ok.type", TS: time.UnixMicro(usNow), ReceivedAt: time.UnixMicro(usNow), Data: json.RawMessage(`{"n":1}`)}
	data, _ := pack([]event.Event{e})
	require.Equal(t, rawPack(queue.PackVersion, 1, goodBody("g1")), data)
}

func TestDecodePackBadRecord(t *testing.T) {
	tests := []struct {
		name string
		body []byte
	}{
		{"empty body", []byte{}},
		{"id length past the body", append(binary.AppendUvarint(nil, 200), "ab"...)},
		{"type length past the body", append(body("id", "", 0, 0, "")[:3], 50, 'x')},
		{"truncated ts varint", append(body("id", "t", 0, 0, "")[:5], 0x80)},
		{"overlong varint", append(body("id", "t", 0, 0, "")[:5], 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01)},
		{"data length past the body", body("id", "t", usNow, usNow, "")[:len(body("id", "t", usNow, usNow, ""))-1]},
		{"trailing bytes", append(goodBody("x"), 0)},
		{"type with a space", body("id", "a b", usNow, usNow, `{}`)},
		{"empty type", body("id", "", usNow, usNow, `{}`)},
		{"type with a wildcard", body("id", "a.*", usNow, usNow, `{}`)},
		{"empty id", body("", "t", usNow, usNow, `{}`)},
		{"id with a space", body("a b", "t", usNow, usNow, `{}`)},
		{"id too long", body(strings.Repeat("i", 129), "t", usNow, usNow, `{}`)},
		{"zero ts", body("id", "t", time.Time{}.UnixMicro(), usNow, `{}`)},
		{"zero received_at", body("id", "t", usNow, time.Time{}.UnixMicro(), `{}`)},
		{"empty data", body("id", "t", usNow, usNow, ``)},
		{"data not JSON", body("id", "t", usNow, usNow, `{"a":`)},
		{"data not UTF-8", body("id", "t", usNow, usNow, "\"\xff\"")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := rawPack(queue.PackVersion, 3, goodBody("g1"), tt.body, goodBody("g2"))
			recs, err := queue.DecodePack(b)
			require.NoError(t, err, "a bad record must not make the pack unreadable")
			require.Len(t, recs, 3)
			require.NoError(t, recs[0].Err)
			require.Equal(t, "g1", recs[0].Event.ID)
			require.Error(t, recs[1].Err)
			require.Equal(t, tt.body, recs[1].Raw, "Raw is the record body, for the DLQ")
			require.NoError(t, recs[2].Err)
			require.Equal(t, "g2", recs[2].Event.ID)
		})
	}
}

func TestDecodePackUnreadable(t *testing.T) {
	good := rawPack(queue.PackVersion, 2, goodBody("g1"), goodBody("g2"))
	unsealed := func(b []byte) []byte { return b[:len(b)-4] }
	tests := []struct {
		name string
		b    []byte
		want error
	}{
		{"nil", nil, queue.ErrPackTruncated},
		{"shorter than header and crc", []byte{1, 0, 0, 0, 0, 0, 0, 0}, queue.ErrPackTruncated},
		{"version 0", rawPack(0, 2, goodBody("g1"), goodBody("g2")), queue.ErrPackVersion},
		{"version 2", rawPack(2, 2, goodBody("g1"), goodBody("g2")), queue.ErrPackVersion},
		{"version 255", rawPack(255, 0), queue.ErrPackVersion},
		{"bad crc", append(unsealed(good), 0, 0, 0, 0), queue.ErrPackChecksum},
		{"count larger than the bytes", rawPack(queue.PackVersion, 1000, goodBody("g1")), queue.ErrPackTruncated},
		{"count max uint32", rawPack(queue.PackVersion, ^uint32(0), goodBody("g1")), queue.ErrPackTruncated},
		{"count one more than the records", rawPack(queue.PackVersion, 3, goodBody("g1"), goodBody("g2")), queue.ErrPackTruncated},
		{"record length past the end", seal(append(unsealed(rawPack(queue.PackVersion, 1)), 100, 1, 2)), queue.ErrPackTruncated},
		{"record length overflows", seal(append(unsealed(rawPack(queue.PackVersion, 1)), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01)), queue.ErrPackTruncated},
		{"count one less than the records", rawPack(queue.PackVersion, 1, goodBody("g1"), goodBody("g2")), queue.ErrPackTruncated},
		{"trailing bytes after the last record", seal(append(unsealed(good), 0)), queue.ErrPackTruncated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			recs, err := queue.DecodePack(tt.b)
			require.ErrorIs(t, err, tt.want)
			require.Nil(t, recs)
		})
	}
}

func TestDecodePackCorruption(t *testing.T) {
	evs := edgeEvents()[:3]
	data, _ := pack(evs)
	recs, err := queue.DecodePack(data)
	require.NoError(t, err)
	require.Len(t, recs, 3)

	t.Run("every byte flipped", func(t *testing.T) {
		for i := range data {
			for _, mask := range []byte{0x01, 0x80, 0xff} {
				b := append([]byte(nil), data...)
				b[i] ^= mask
				recs, err := queue.DecodePack(b)
				// CRC-32C detects every error burst of up to 32 bits.
				require.ErrorIs(t, err, queue.ErrPackChecksum, "byte %d ^ %#x", i, mask)
				require.Nil(t, recs)
			}
		}
	})
	t.Run("every truncation", func(t *testing.T) {
		for n := range len(data) {
			recs, err := queue.DecodePack(data[:n])
			require.Error(t, err, "truncated to %d of %d bytes", n, len(data))
			require.Nil(t, recs)
			if n < 9 {
				require.ErrorIs(t, err, queue.ErrPackTruncated)
			}
		}
	})
	t.Run("every truncation, resealed", func(t *testing.T) {
		// A truncated frame with a valid checksum is still refused.
		body := data[:len(data)-4]
		for n := 5; n < len(body); n++ {
			_, err := queue.DecodePack(seal(append([]byte(nil), body[:n]...)))
			require.ErrorIs(t, err, queue.ErrPackTruncated, "truncated to %d of %d body bytes", n, len(body))
		}
	})
}

func TestDecodeMessage(t *testing.T) {
	rec := time.UnixMicro(usNow).UTC()
	e := event.Event{ID: "e1", Type: "user.signup", TS: rec.Add(-time.Second), ReceivedAt: rec, Data: json.RawMessage(`{"plan":"pro"}`)}
	js := e.AppendJSON(nil)
	pk, _ := pack([]event.Event{e, {ID: "e2", Type: "t", TS: rec, ReceivedAt: rec, Data: json.RawMessage(`2`)}})
	hdr := func(format string) nats.Header {
		h := nats.Header{}
		if format != "" {
			h.Set(queue.HeaderFormat, format)
		}
		return h
	}
	tests := []struct {
		name    string
		header  nats.Header
		data    []byte
		wantIDs []string
		wantErr bool
	}{
		{"pack", hdr(queue.FormatPack), pk, []string{"e1", "e2"}, false},
		{"json", hdr(queue.FormatJSON), js, []string{"e1"}, false},
		{"no format header", hdr(""), js, []string{"e1"}, false},
		{"nil header", nil, js, []string{"e1"}, false},
		{"unknown format", hdr("pack/2"), pk, nil, true},
		{"json labelled as pack", hdr(queue.FormatPack), js, nil, true},
		{"pack labelled as json", hdr(queue.FormatJSON), pk, nil, true},
		{"invalid json", hdr(queue.FormatJSON), []byte(`{"id":`), nil, true},
		{"json breaking the event rules", hdr(queue.FormatJSON), []byte(strings.Replace(string(js), "user.signup", "a b", 1)), nil, true},
		{"json without data", hdr(queue.FormatJSON), []byte(`{"id":"x","type":"t","ts":"2024-05-01T12:00:00Z","received_at":"2024-05-01T12:00:00Z"}`), nil, true},
		{"json with a bad ts", hdr(queue.FormatJSON), []byte(`{"id":"x","type":"t","ts":"yesterday","received_at":"2024-05-01T12:00:00Z","data":1}`), nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			recs, err := queue.DecodeMessage(tt.header, tt.data)
			if tt.wantErr {
				require.Error(t, err)
				require.Nil(t, recs)
				return
			}
			require.NoError(t, err)
			require.Len(t, recs, len(tt.wantIDs))
			for i, r := range recs {
				require.NoError(t, r.Err)
				require.Equal(t, tt.wantIDs[i], r.Event.ID)
			}
			requireSameEvent(t, e, recs[0].Event, "first record")
		})
	}
	t.Run("json keeps the message as raw", func(t *testing.T) {
		recs, err := queue.DecodeMessage(hdr(queue.FormatJSON), js)
		require.NoError(t, err)
		require.Equal(t, js, recs[0].Raw)
	})
	t.Run("errors are not pack sentinels for json", func(t *testing.T) {
		_, err := queue.DecodeMessage(hdr(queue.FormatJSON), []byte(`nope`))
		require.False(t, errors.Is(err, queue.ErrPackChecksum))
	})
}
