package loadgen

import (
	"strconv"
	"strings"
)

// eventType is the type of every generated event.
const eventType = "loadgen.event"

// bodyMaker builds request bodies: one JSON object for a single event, a
// JSON array for several. Each event is padded so that its encoding is
// about size bytes.
type bodyMaker struct {
	prefix string
	events int
	size   int
	pad    string // size bytes of padding; events take a prefix of it
	fixed  int    // encoded length of an event without id digits or padding
}

func newBodyMaker(prefix string, events, size int) *bodyMaker {
	b := &bodyMaker{prefix: prefix, events: max(events, 1), size: size, pad: strings.Repeat("x", max(size, 0))}
	b.fixed = len(b.appendEvent(nil, 0, 0)) - 1 // minus the digit of 0
	return b
}

// appendEvent appends {"id":"<prefix>-<n>","type":…,"data":{"n":…,"pad":"…"}}
// with pad bytes of padding.
func (b *bodyMaker) appendEvent(dst []byte, n int64, pad int) []byte {
	dst = append(dst, `{"id":"`...)
	dst = append(dst, b.prefix...)
	dst = append(dst, '-')
	dst = strconv.AppendInt(dst, n, 10)
	dst = append(dst, `","type":"`+eventType+`","data":{"pad":"`...)
	dst = append(dst, b.pad[:pad]...)
	return append(dst, `"}}`...)
}

// build returns the body for the events first, first+1, ….
func (b *bodyMaker) build(first int64) []byte {
	out := make([]byte, 0, b.events*(max(b.size, b.fixed+20)+1)+2)
	if b.events > 1 {
		out = append(out, '[')
	}
	for i := range b.events {
		n := first + int64(i)
		if i > 0 {
			out = append(out, ',')
		}
		pad := min(max(b.size-b.fixed-digits(n), 0), len(b.pad))
		out = b.appendEvent(out, n, pad)
	}
	if b.events > 1 {
		out = append(out, ']')
	}
	return out
}

func digits(n int64) int {
	d := 1
	for n >= 10 {
		n /= 10
		d++
	}
	return d
}

// ID returns the event id of number n under prefix.
func ID(prefix string, n int64) string { return prefix + "-" + strconv.FormatInt(n, 10) }
