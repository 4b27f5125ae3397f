// Package event defines the event that flows through Levee, from the ingest
// API through the queue to the sink, and the rules every event obeys.
package event

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"
)

// Limits on the identifying fields of an event.
const (
	MaxTypeLen = 128
	MaxIDLen   = 128
)

// TimeLayout is the fixed-width UTC layout (microsecond precision) used for
// timestamps in JSON messages and in the SQLite sink.
const TimeLayout = "2006-01-02T15:04:05.000000Z"

// Event is one accepted event. TS and ReceivedAt are UTC with microsecond
// precision, which every sink can store exactly. Data is the event's JSON
// value, byte for byte as the client sent it.
type Event struct {
	ID         string
	Type       string
	TS         time.Time
	ReceivedAt time.Time
	Data       json.RawMessage
}

// Size is the event's approximate encoded size, used by byte-based limits.
func (e *Event) Size() int { return len(e.ID) + len(e.Type) + len(e.Data) + 16 }

// Validation errors of an event's identifying fields.
var (
	ErrType = errors.New("type must be 1-128 characters: dot-separated tokens of letters, digits, '_' and '-', starting with a letter or digit")
	ErrID   = errors.New("id must be 1-128 characters of letters, digits and . _ : -")
)

// ValidType reports whether t is a subject-safe type: dot-separated
// non-empty tokens of [A-Za-z0-9_-], each starting with a letter or digit.
// Such a type can never add wildcards, spaces or empty tokens to a subject.
func ValidType(t string) bool {
	if len(t) == 0 || len(t) > MaxTypeLen {
		return false
	}
	start := true
	for i := 0; i < len(t); i++ {
		c := t[i]
		switch {
		case c == '.':
			if start {
				return false
			}
			start = true
		case isAlnum(c):
			start = false
		case c == '_' || c == '-':
			if start {
				return false
			}
		default:
			return false
		}
	}
	return !start
}

// ValidID reports whether id is 1-128 characters of [A-Za-z0-9._:-]. Such an
// id is safe as a Nats-Msg-Id, in a header, a log line or a file name.
func ValidID(id string) bool {
	if len(id) == 0 || len(id) > MaxIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !isAlnum(c) && c != '.' && c != '_' && c != ':' && c != '-' {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// Check verifies the invariants of an event that arrived from elsewhere (a
// queue message, the spool): the ingest API guarantees them for its own.
func (e *Event) Check() error {
	switch {
	case !ValidID(e.ID):
		return ErrID
	case !ValidType(e.Type):
		return ErrType
	case e.TS.IsZero() || e.ReceivedAt.IsZero():
		return errors.New("ts and received_at must be set")
	case len(e.Data) == 0 || !utf8.Valid(e.Data) || !json.Valid(e.Data):
		return errors.New("data must be valid UTF-8 JSON")
	}
	return nil
}

// AppendJSON appends the JSON message form of e to b:
// {"id":…,"type":…,"ts":…,"received_at":…,"data":…}. ID and Type need no
// escaping (see ValidID, ValidType) and Data is already JSON.
func (e *Event) AppendJSON(b []byte) []byte {
	b = append(b, `{"id":`...)
	b = strconv.AppendQuote(b, e.ID)
	b = append(b, `,"type":`...)
	b = strconv.AppendQuote(b, e.Type)
	b = append(b, `,"ts":"`...)
	b = e.TS.UTC().AppendFormat(b, TimeLayout)
	b = append(b, `","received_at":"`...)
	b = e.ReceivedAt.UTC().AppendFormat(b, TimeLayout)
	b = append(b, `","data":`...)
	b = append(b, e.Data...)
	return append(b, '}')
}

type wire struct {
	ID         string          `json:"id"`
	Type       string          `json:"type"`
	TS         string          `json:"ts"`
	ReceivedAt string          `json:"received_at"`
	Data       json.RawMessage `json:"data"`
}

// ParseJSON reads the JSON message form written by AppendJSON and checks it.
func ParseJSON(b []byte) (Event, error) {
	var w wire
	if err := json.Unmarshal(b, &w); err != nil {
		return Event{}, fmt.Errorf("event: decode: %w", err)
	}
	ts, err := time.Parse(time.RFC3339Nano, w.TS)
	if err != nil {
		return Event{}, fmt.Errorf("event: ts: %w", err)
	}
	rec, err := time.Parse(time.RFC3339Nano, w.ReceivedAt)
	if err != nil {
		return Event{}, fmt.Errorf("event: received_at: %w", err)
	}
	e := Event{ID: w.ID, Type: w.Type, TS: ts.UTC(), ReceivedAt: rec.UTC(), Data: w.Data}
	if err := e.Check(); err != nil {
		return Event{}, fmt.Errorf("event: %w", err)
	}
	return e, nil
}
