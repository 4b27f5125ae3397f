package ingest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// scanner is a strict, single-pass JSON validator over a byte slice. Beyond
// RFC 8259 syntax it rejects invalid UTF-8, lone surrogate escapes, numbers
// that overflow float64, duplicate object keys and nesting deeper than
// maxDepth. Its recursion is bounded by maxDepth. The first error wins.
type scanner struct {
	b        []byte
	pos      int
	maxDepth int
	keys     []keySet // one per nesting depth, reused between sibling objects

	code string // first error's code; "" while none
	msg  string
}

func (s *scanner) reset(b []byte) {
	s.b, s.pos, s.code, s.msg = b, 0, "", ""
}

func (s *scanner) fail(code, format string, args ...any) bool {
	if s.code == "" {
		s.code = code
		s.msg = fmt.Sprintf(format, args...)
	}
	return false
}

func (s *scanner) failSyntax(what string) bool {
	if s.pos >= len(s.b) {
		return s.fail(codeInvalidJSON, "unexpected end of input, expected %s", what)
	}
	return s.fail(codeInvalidJSON, "unexpected %q at byte %d, expected %s", s.b[s.pos], s.pos, what)
}

func (s *scanner) ws() {
	for s.pos < len(s.b) {
		switch s.b[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

// peek returns the current byte, or 0 at the end of input.
func (s *scanner) peek() byte {
	if s.pos < len(s.b) {
		return s.b[s.pos]
	}
	return 0
}

// value scans one JSON value whose containers sit at depth+1.
func (s *scanner) value(depth int) bool {
	s.ws()
	switch c := s.peek(); {
	case c == '{':
		return s.object(depth + 1)
	case c == '[':
		return s.array(depth + 1)
	case c == '"':
		_, _, ok := s.str()
		return ok
	case c == '-' || c >= '0' && c <= '9':
		return s.number()
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	case c == 'N' || c == 'I':
		return s.fail(codeInvalidNumber, "NaN and Infinity are not JSON numbers (byte %d)", s.pos)
	default:
		return s.failSyntax("a JSON value")
	}
}

func (s *scanner) object(depth int) bool {
	if depth > s.maxDepth {
		return s.fail(codeTooDeep, "nesting deeper than %d levels", s.maxDepth)
	}
	for len(s.keys) <= depth {
		s.keys = append(s.keys, keySet{})
	}
	s.keys[depth].reset()
	s.pos++ // '{'
	s.ws()
	if s.peek() == '}' {
		s.pos++
		return true
	}
	for {
		s.ws()
		if s.peek() != '"' {
			return s.failSyntax("a string key")
		}
		raw, esc, ok := s.str()
		if !ok {
			return false
		}
		key := raw
		if esc {
			key = unescape(raw)
		}
		if !s.keys[depth].add(key) {
			return s.fail(codeDuplicateKey, "duplicate key %q", key)
		}
		s.ws()
		if s.peek() != ':' {
			return s.failSyntax("':'")
		}
		s.pos++
		if !s.value(depth) {
			return false
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

func (s *scanner) array(depth int) bool {
	if depth > s.maxDepth {
		return s.fail(codeTooDeep, "nesting deeper than %d levels", s.maxDepth)
	}
	s.pos++ // '['
	s.ws()
	if s.peek() == ']' {
		s.pos++
		return true
	}
	for {
		if !s.value(depth) {
			return false
		}
		s.ws()
		switch s.peek() {
		case ',':
			s.pos++
		case ']':
			s.pos++
			return true
		default:
			return s.failSyntax("',' or ']'")
		}
	}
}

// str scans a string and returns its content without the quotes and whether
// it holds escapes.
func (s *scanner) str() (raw []byte, esc bool, ok bool) {
	s.pos++ // opening quote
	start := s.pos
	for s.pos < len(s.b) {
		c := s.b[s.pos]
		switch {
		case c == '"':
			raw = s.b[start:s.pos]
			s.pos++
			return raw, esc, true
		case c == '\\':
			esc = true
			if !s.escape() {
				return nil, false, false
			}
		case c < 0x20:
			return nil, false, s.fail(codeInvalidJSON, "control character 0x%02x in string at byte %d (escape it)", c, s.pos)
		case c < utf8.RuneSelf:
			s.pos++
		default:
			r, size := utf8.DecodeRune(s.b[s.pos:])
			if r == utf8.RuneError && size <= 1 {
				return nil, false, s.fail(codeInvalidEncoding, "invalid UTF-8 at byte %d", s.pos)
			}
			s.pos += size
		}
	}
	return nil, false, s.fail(codeInvalidJSON, "unterminated string")
}

// escape scans one escape sequence starting at a backslash. A \u escape of a
// UTF-16 surrogate must be a high surrogate followed by a low one.
func (s *scanner) escape() bool {
	if s.pos+1 >= len(s.b) {
		return s.fail(codeInvalidJSON, "unterminated string")
	}
	switch s.b[s.pos+1] {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		s.pos += 2
		return true
	case 'u':
		r, ok := s.hex4(s.pos + 2)
		if !ok {
			return s.fail(codeInvalidJSON, "invalid \\u escape at byte %d", s.pos)
		}
		s.pos += 6
		switch {
		case r >= 0xDC00 && r <= 0xDFFF:
			return s.fail(codeInvalidEncoding, "lone low surrogate \\u%04x at byte %d", r, s.pos-6)
		case r >= 0xD800 && r <= 0xDBFF:
			lo, ok := rune(0), false
			if s.pos+1 < len(s.b) && s.b[s.pos] == '\\' && s.b[s.pos+1] == 'u' {
				lo, ok = s.hex4(s.pos + 2)
			}
			if !ok || lo < 0xDC00 || lo > 0xDFFF {
				return s.fail(codeInvalidEncoding, "high surrogate \\u%04x not followed by a low surrogate at byte %d", r, s.pos-6)
			}
			s.pos += 6
		}
		return true
	default:
		return s.fail(codeInvalidJSON, "invalid escape \\%c at byte %d", s.b[s.pos+1], s.pos)
	}
}

func (s *scanner) hex4(at int) (rune, bool) {
	if at+4 > len(s.b) {
		return 0, false
	}
	var r rune
	for _, c := range s.b[at : at+4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}

func (s *scanner) digits() int {
	n := 0
	for s.pos < len(s.b) && s.b[s.pos] >= '0' && s.b[s.pos] <= '9' {
		s.pos++
		n++
	}
	return n
}

// number scans a JSON number and rejects one beyond float64's range.
func (s *scanner) number() bool {
	start := s.pos
	if s.b[s.pos] == '-' {
		s.pos++
		if s.peek() == 'I' {
			return s.fail(codeInvalidNumber, "NaN and Infinity are not JSON numbers (byte %d)", start)
		}
	}
	switch c := s.peek(); {
	case c == '0':
		s.pos++
	case c >= '1' && c <= '9':
		s.digits()
	default:
		return s.failSyntax("a digit")
	}
	exact := true
	if s.peek() == '.' {
		s.pos++
		if s.digits() == 0 {
			return s.failSyntax("a digit after '.'")
		}
	}
	if c := s.peek(); c == 'e' || c == 'E' {
		exact = false
		s.pos++
		if c := s.peek(); c == '+' || c == '-' {
			s.pos++
		}
		if s.digits() == 0 {
			return s.failSyntax("a digit in the exponent")
		}
	}
	// Without an exponent only a literal of more than 308 digits can overflow.
	if !exact || s.pos-start > 300 {
		if _, err := strconv.ParseFloat(string(s.b[start:s.pos]), 64); err != nil {
			return s.fail(codeInvalidNumber, "number at byte %d is out of range", start)
		}
	}
	return true
}

func (s *scanner) literal(word string) bool {
	if !bytes.HasPrefix(s.b[s.pos:], []byte(word)) {
		return s.failSyntax("a JSON value")
	}
	s.pos += len(word)
	return true
}

// unescape decodes a string's content known to be valid JSON.
func unescape(raw []byte) []byte {
	var out string
	q := make([]byte, 0, len(raw)+2)
	q = append(append(append(q, '"'), raw...), '"')
	_ = json.Unmarshal(q, &out)
	return []byte(out)
}

// keySet detects duplicate keys in one object. Small objects use a linear
// scan over the slice; past 16 keys a map takes over.
type keySet struct {
	list [][]byte
	set  map[string]struct{}
}

func (k *keySet) reset() {
	k.list = k.list[:0]
	k.set = nil
}

// add records key and reports false if it was already present.
func (k *keySet) add(key []byte) bool {
	if k.set != nil {
		if _, dup := k.set[string(key)]; dup {
			return false
		}
		k.set[string(key)] = struct{}{}
		return true
	}
	for _, have := range k.list {
		if bytes.Equal(have, key) {
			return false
		}
	}
	k.list = append(k.list, key)
	if len(k.list) > 16 {
		k.set = make(map[string]struct{}, 32)
		for _, have := range k.list {
			k.set[string(have)] = struct{}{}
		}
	}
	return true
}
