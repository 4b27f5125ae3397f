package ingest

import (
	"bytes"
	"fmt"
	"net/http"
	"regexp"
	"time"

	"github.com/levee-dev/levee/internal/event"
)

// Error codes of the API. Request-level codes answer the whole request;
// event-level codes appear in details, one per bad event.
const (
	codeEmptyBody        = "empty_body"
	codeNoEvents         = "no_events"
	codeInvalidJSON      = "invalid_json"
	codeInvalidEncoding  = "invalid_encoding"
	codeInvalidNumber    = "invalid_number"
	codeTooDeep          = "too_deep"
	codeDuplicateKey     = "duplicate_key"
	codeInvalidEvents    = "invalid_events"
	codeNotObject        = "not_an_object"
	codeMissingType      = "missing_type"
	codeInvalidType      = "invalid_type"
	codeInvalidID        = "invalid_id"
	codeInvalidTS        = "invalid_ts"
	codeUnknownField     = "unknown_field"
	codeEventTooLarge    = "event_too_large"
	codeTooManyEvents    = "too_many_events"
	codeTooLarge         = "too_large"
	codeUnsupportedMedia = "unsupported_media_type"
	codeUnsupportedEnc   = "unsupported_encoding"
)

// Problem is what is wrong with one event of a request.
type Problem struct {
	Index   int    `json:"index"`
	Line    int    `json:"line,omitempty"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Error is an answer other than 202, with a stable code.
type Error struct {
	Status     int           `json:"-"`
	RetryAfter time.Duration `json:"-"`
	Events     int           `json:"-"` // events in the refused request, when known
	Code       string        `json:"code"`
	Message    string        `json:"message"`
	Details    []Problem     `json:"details,omitempty"`
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Form is the shape of a request body.
type Form int

// Body forms.
const (
	FormJSON   Form = iota // one object or an array of objects
	FormNDJSON             // one object per line
)

// Limits bound what one request may carry.
type Limits struct {
	MaxEvents     int
	MaxEventBytes int
	MaxDepth      int
}

// tsRE is RFC 3339 with a mandatory zone and at most nanosecond precision.
var tsRE = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]([01]\d|2[0-3]):[0-5]\d)$`)

var nullJSON = []byte("null")

// decoder turns a request body into events, validating the whole request
// before anything is accepted.
type decoder struct {
	lim   Limits
	now   time.Time
	newID func() string
	sc    scanner

	events   []event.Event
	problems []Problem
	tooLarge bool
}

// Decode parses body and returns its events, or an *Error describing every
// bad event. Events without an id get one from newID; without ts, now.
func Decode(body []byte, form Form, lim Limits, now time.Time, newID func() string) ([]event.Event, *Error) {
	d := &decoder{lim: lim, now: now.UTC().Truncate(time.Microsecond), newID: newID}
	d.sc.maxDepth = lim.MaxDepth
	if bytes.HasPrefix(body, []byte("\xef\xbb\xbf")) {
		return nil, &Error{Status: http.StatusBadRequest, Code: codeInvalidEncoding, Message: "byte order mark not allowed; send UTF-8 without BOM"}
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, &Error{Status: http.StatusBadRequest, Code: codeEmptyBody, Message: "request body is empty"}
	}
	var err *Error
	if form == FormNDJSON {
		err = d.ndjson(body)
	} else {
		err = d.json(body)
	}
	if err != nil {
		return nil, err
	}
	return d.result()
}

func (d *decoder) result() ([]event.Event, *Error) {
	if len(d.problems) > 0 {
		status := http.StatusBadRequest
		if d.tooLarge {
			status = http.StatusRequestEntityTooLarge
		}
		return nil, &Error{
			Status:  status,
			Events:  d.count(),
			Code:    codeInvalidEvents,
			Message: fmt.Sprintf("%d of %d events are invalid; nothing was accepted", len(d.problems), d.count()),
			Details: d.problems,
		}
	}
	if len(d.events) == 0 {
		return nil, &Error{Status: http.StatusBadRequest, Code: codeNoEvents, Message: "request holds no events"}
	}
	return d.events, nil
}

func (d *decoder) count() int { return len(d.events) + len(d.problems) }

func (d *decoder) tooMany() *Error {
	return &Error{Status: http.StatusRequestEntityTooLarge, Code: codeTooManyEvents,
		Message: fmt.Sprintf("more than %d events in one request", d.lim.MaxEvents)}
}

// json reads one object or an array of objects.
func (d *decoder) json(body []byte) *Error {
	s := &d.sc
	s.reset(body)
	s.ws()
	if s.peek() != '[' {
		ev, p, ok := d.element()
		if !ok {
			return d.syntax(0, 0)
		}
		if err := d.trailing(); err != nil {
			return err
		}
		d.add(ev, p, 0)
		return nil
	}
	s.pos++
	s.ws()
	if s.peek() == ']' {
		s.pos++
		return d.trailing()
	}
	for i := 0; ; i++ {
		if i == d.lim.MaxEvents {
			return d.tooMany()
		}
		ev, p, ok := d.element()
		if !ok {
			return d.syntax(i, 0)
		}
		d.add(ev, p, 0)
		s.ws()
		switch s.peek() {
		case ',':
			s.pos++
		case ']':
			s.pos++
			return d.trailing()
		default:
			s.failSyntax("',' or ']'")
			return d.syntax(i, 0)
		}
	}
}

// add records the next event, or its problem.
func (d *decoder) add(ev event.Event, p *Problem, line int) {
	if p == nil {
		d.events = append(d.events, ev)
		return
	}
	p.Index, p.Line = d.count(), line
	d.problems = append(d.problems, *p)
	if p.Code == codeEventTooLarge {
		d.tooLarge = true
	}
}

// trailing checks that nothing but whitespace follows the top-level value.
func (d *decoder) trailing() *Error {
	s := &d.sc
	s.ws()
	if s.pos < len(s.b) {
		return &Error{Status: http.StatusBadRequest, Code: codeInvalidJSON,
			Message: fmt.Sprintf("unexpected data after the JSON value at byte %d (for one event per line use Content-Type: application/x-ndjson)", s.pos)}
	}
	return nil
}

// ndjson reads one event per line; blank lines are skipped. A syntax error
// on one line is reported for that line and the others are still checked.
func (d *decoder) ndjson(body []byte) *Error {
	line := 0
	for len(body) > 0 {
		line++
		var l []byte
		if i := bytes.IndexByte(body, '\n'); i >= 0 {
			l, body = body[:i], body[i+1:]
		} else {
			l, body = body, nil
		}
		if len(bytes.Trim(l, " \t\r")) == 0 { // JSON whitespace only
			continue
		}
		if d.count() == d.lim.MaxEvents {
			return d.tooMany()
		}
		d.sc.reset(l)
		ev, p, ok := d.element()
		if ok {
			d.sc.ws()
			if d.sc.pos < len(l) {
				ok = d.sc.fail(codeInvalidJSON, "unexpected data after the object at byte %d of the line", d.sc.pos)
			}
		}
		if !ok {
			p = &Problem{Code: d.sc.code, Message: d.sc.msg}
		}
		d.add(ev, p, line)
	}
	return nil
}

// syntax turns the scanner's error into the answer for a broken JSON body.
func (d *decoder) syntax(index, line int) *Error {
	e := &Error{Status: http.StatusBadRequest, Code: d.sc.code, Message: d.sc.msg}
	if index >= 0 {
		e.Details = []Problem{{Index: index, Line: line, Code: d.sc.code, Message: d.sc.msg}}
		e.Message = fmt.Sprintf("event %d: %s", index, d.sc.msg)
	}
	return e
}

// element scans one event at the scanner's position. It reports false when
// the JSON itself is broken; a well-formed but invalid event comes back as a
// Problem.
func (d *decoder) element() (event.Event, *Problem, bool) {
	s := &d.sc
	s.ws()
	start := s.pos
	if s.peek() != '{' {
		if !s.value(0) {
			return event.Event{}, nil, false
		}
		return event.Event{}, &Problem{Code: codeNotObject, Message: "an event must be a JSON object"}, true
	}
	if len(s.keys) == 0 {
		s.keys = append(s.keys, keySet{})
	}
	s.keys[0].reset()
	var f fields
	s.pos++
	s.ws()
	if s.peek() == '}' {
		s.pos++
	} else if !d.members(&f) {
		return event.Event{}, nil, false
	}
	if size := s.pos - start; size > d.lim.MaxEventBytes {
		return event.Event{}, &Problem{Code: codeEventTooLarge,
			Message: fmt.Sprintf("event is %d bytes, more than the limit of %d", size, d.lim.MaxEventBytes)}, true
	}
	if f.problem != nil {
		return event.Event{}, f.problem, true
	}
	return d.build(&f)
}

// fields are the raw members of one event object.
type fields struct {
	typ, id, ts, data []byte
	hasType           bool
	problem           *Problem
}

func (f *fields) fail(code, format string, args ...any) {
	if f.problem == nil {
		f.problem = &Problem{Code: code, Message: fmt.Sprintf(format, args...)}
	}
}

// members scans the members of an event object after its '{'.
func (d *decoder) members(f *fields) bool {
	s := &d.sc
	for {
		s.ws()
		if s.peek() != '"' {
			return s.failSyntax("a string key")
		}
		key, esc, ok := s.str()
		if !ok {
			return false
		}
		if esc {
			key = unescape(key)
		}
		if !s.keys[0].add(key) {
			f.fail(codeDuplicateKey, "duplicate key %q", key)
		}
		s.ws()
		if s.peek() != ':' {
			return s.failSyntax("':'")
		}
		s.pos++
		s.ws()
		start := s.pos
		switch string(key) {
		case "type", "id", "ts":
			raw, ok := d.stringMember(f, string(key))
			if !ok {
				return false
			}
			switch key[0] {
			case 't':
				if key[1] == 'y' {
					f.typ, f.hasType = raw, true
				} else {
					f.ts = raw
				}
			case 'i':
				f.id = raw
			}
		case "data":
			if !s.value(0) {
				return false
			}
			f.data = s.b[start:s.pos]
		default:
			if !s.value(0) {
				return false
			}
			f.fail(codeUnknownField, "unknown field %q (an event has type, id, ts and data)", key)
		}
		s.ws()
		switch s.peek() {
		case ',':
			s.pos++
		case '}':
			s.pos++
			return true
		default:
			return s.failSyntax("',' or '}'")
		}
	}
}

// stringMember scans the value of type, id or ts: a string, or null for the
// optional id and ts. It returns the unescaped string (nil for null).
func (d *decoder) stringMember(f *fields, name string) ([]byte, bool) {
	s := &d.sc
	switch s.peek() {
	case '"':
		raw, esc, ok := s.str()
		if !ok {
			return nil, false
		}
		if esc {
			raw = unescape(raw)
		}
		return raw, true
	case 'n':
		if !s.literal("null") {
			return nil, false
		}
		if name == "type" {
			f.fail(codeInvalidType, "type must be a string")
		}
		return nil, true
	default:
		if !s.value(0) {
			return nil, false
		}
		f.fail("invalid_"+name, "%s must be a string", name)
		return nil, true
	}
}

// build checks the members of a well-formed event and fills in defaults.
func (d *decoder) build(f *fields) (event.Event, *Problem, bool) {
	ev := event.Event{ReceivedAt: d.now, TS: d.now, Data: f.data}
	switch {
	case !f.hasType:
		return ev, &Problem{Code: codeMissingType, Message: "type is required"}, true
	case !event.ValidType(string(f.typ)):
		return ev, &Problem{Code: codeInvalidType, Message: fmt.Sprintf("type %q: %s", truncate(f.typ), event.ErrType)}, true
	}
	ev.Type = string(f.typ)
	if f.id != nil {
		if !event.ValidID(string(f.id)) {
			return ev, &Problem{Code: codeInvalidID, Message: fmt.Sprintf("id %q: %s", truncate(f.id), event.ErrID)}, true
		}
		ev.ID = string(f.id)
	} else {
		ev.ID = d.newID()
	}
	if f.ts != nil {
		ts, err := parseTS(f.ts)
		if err != nil {
			return ev, &Problem{Code: codeInvalidTS, Message: fmt.Sprintf("ts %q: %v", truncate(f.ts), err)}, true
		}
		ev.TS = ts
	}
	if ev.Data == nil {
		ev.Data = nullJSON
	}
	return ev, nil, true
}

// parseTS reads a strict RFC 3339 timestamp and returns it in UTC, truncated
// to the microsecond precision every sink stores.
func parseTS(b []byte) (time.Time, error) {
	if !tsRE.Match(b) {
		return time.Time{}, fmt.Errorf("must be RFC 3339 with a zone, like 2006-01-02T15:04:05.999Z")
	}
	t, err := time.Parse(time.RFC3339Nano, string(b))
	if err != nil {
		return time.Time{}, fmt.Errorf("not a valid time")
	}
	t = t.UTC().Truncate(time.Microsecond)
	if y := t.Year(); y < 1 || y > 9999 || t.IsZero() {
		return time.Time{}, fmt.Errorf("must be after 0001-01-01T00:00:00Z and before year 10000")
	}
	return t, nil
}

// truncate shortens an echoed value so that an error stays small.
func truncate(b []byte) string {
	if len(b) > 64 {
		return string(b[:64]) + "…"
	}
	return string(b)
}
