package ingest_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/levee-dev/levee/internal/event"
	"github.com/levee-dev/levee/internal/ingest"
)

// Fixed inputs of every decode case: now is deliberately not UTC and has
// nanoseconds, so that the defaults prove the conversion and truncation.
var (
	decodeNow  = time.Date(2025, 1, 2, 3, 4, 5, 678901234, time.FixedZone("CET", 3600))
	wantNow    = time.Date(2025, 1, 2, 2, 4, 5, 678901000, time.UTC)
	testLimits = ingest.Limits{MaxEvents: 5, MaxEventBytes: 1024, MaxDepth: 4}
)

// counterID returns a deterministic id generator: gen-1, gen-2, …
func counterID() func() string {
	n := 0
	return func() string { n++; return "gen-" + strconv.Itoa(n) }
}

// detail is the part of a Problem a case pins down; messages are free text.
type detail struct {
	Index, Line int
	Code        string
}

func dt(index int, code string) detail { return detail{Index: index, Code: code} }

func dtl(index, line int, code string) detail { return detail{Index: index, Line: line, Code: code} }

// ev is an expected event with the default ts (the receive time).
func ev(id, typ, data string) event.Event {
	return event.Event{ID: id, Type: typ, TS: wantNow, ReceivedAt: wantNow, Data: []byte(data)}
}

// evTS is an expected event with an explicit ts.
func evTS(id, typ string, ts time.Time, data string) event.Event {
	e := ev(id, typ, data)
	e.TS = ts
	return e
}

type decodeCase struct {
	name    string
	body    string
	form    ingest.Form
	lim     *ingest.Limits // nil: testLimits
	status  int            // 0: success
	code    string         // top-level code of a failure
	details []detail       // every detail of a failure, in order; nil: none
	want    []event.Event  // every event of a success
}

func TestDecode(t *testing.T) {
	for _, tc := range decodeCases() {
		t.Run(tc.name, func(t *testing.T) {
			lim := testLimits
			if tc.lim != nil {
				lim = *tc.lim
			}
			got, err := ingest.Decode([]byte(tc.body), tc.form, lim, decodeNow, counterID())
			if tc.status == 0 {
				require.Nil(t, err, "unexpected error: %v", err)
				requireEvents(t, tc.want, got)
				return
			}
			require.NotNil(t, err, "decoded %d events, want an error: %+v", len(got), got)
			require.Nil(t, got)
			require.Equal(t, tc.status, err.Status, "status of %v", err)
			require.Equal(t, tc.code, err.Code, "code of %v", err)
			require.NotEmpty(t, err.Message)
			var details []detail
			for _, p := range err.Details {
				require.NotEmpty(t, p.Message, "message of detail %+v", p)
				details = append(details, detail{Index: p.Index, Line: p.Line, Code: p.Code})
			}
			require.Equal(t, tc.details, details, "details of %v", err)
		})
	}
}

func requireEvents(t *testing.T, want, got []event.Event) {
	t.Helper()
	require.Len(t, got, len(want))
	for i := range want {
		w, g := want[i], got[i]
		require.Equal(t, w.ID, g.ID, "event %d id", i)
		require.Equal(t, w.Type, g.Type, "event %d type", i)
		require.Equal(t, w.TS.Format(time.RFC3339Nano), g.TS.Format(time.RFC3339Nano), "event %d ts", i)
		require.Equal(t, time.UTC, g.TS.Location(), "event %d ts location", i)
		require.Equal(t, w.ReceivedAt.Format(time.RFC3339Nano), g.ReceivedAt.Format(time.RFC3339Nano), "event %d received_at", i)
		require.Equal(t, time.UTC, g.ReceivedAt.Location(), "event %d received_at location", i)
		require.Equal(t, string(w.Data), string(g.Data), "event %d data", i)
		require.NoError(t, g.Check(), "event %d", i)
	}
}

func decodeCases() []decodeCase {
	var cases []decodeCase
	for _, group := range [][]decodeCase{
		shapeCases(), syntaxCases(), numberCases(), encodingCases(), depthAndDuplicateCases(),
		typeCases(), idCases(), tsCases(), elementCases(), limitCases(), dataCases(),
	} {
		cases = append(cases, group...)
	}
	return cases
}

const (
	nd   = ingest.FormNDJSON
	s400 = 400
	s413 = 413
)

// shapeCases: one object, arrays, NDJSON framing, empty bodies.
func shapeCases() []decodeCase {
	return []decodeCase{
		{name: "single object", body: `{"type":"a"}`, want: []event.Event{ev("gen-1", "a", "null")}},
		{name: "single object all fields",
			body: `{"id":"abc-1","type":"user.signup","ts":"2024-05-06T07:08:09.123456Z","data":{"k":1}}`,
			want: []event.Event{evTS("abc-1", "user.signup", time.Date(2024, 5, 6, 7, 8, 9, 123456000, time.UTC), `{"k":1}`)}},
		{name: "single object surrounded by whitespace", body: " \r\n\t{ \"type\" : \"a\" }\n\t ",
			want: []event.Event{ev("gen-1", "a", "null")}},
		{name: "array", body: `[{"type":"a"},{"type":"b","id":"x1"},{"type":"c"}]`,
			want: []event.Event{ev("gen-1", "a", "null"), ev("x1", "b", "null"), ev("gen-2", "c", "null")}},
		{name: "array with whitespace", body: "\n [ {\"type\":\"a\"} ,\n\t{\"type\":\"b\"}\r\n] \n",
			want: []event.Event{ev("gen-1", "a", "null"), ev("gen-2", "b", "null")}},
		{name: "array of one", body: `[{"type":"a"}]`, want: []event.Event{ev("gen-1", "a", "null")}},
		{name: "ndjson trailing newline", form: nd, body: "{\"type\":\"a\"}\n{\"type\":\"b\"}\n",
			want: []event.Event{ev("gen-1", "a", "null"), ev("gen-2", "b", "null")}},
		{name: "ndjson no trailing newline", form: nd, body: "{\"type\":\"a\"}\n{\"type\":\"b\"}",
			want: []event.Event{ev("gen-1", "a", "null"), ev("gen-2", "b", "null")}},
		{name: "ndjson blank lines", form: nd, body: "\n{\"type\":\"a\"}\n\n   \n\t\n{\"type\":\"b\"}\n\n\n",
			want: []event.Event{ev("gen-1", "a", "null"), ev("gen-2", "b", "null")}},
		{name: "ndjson crlf", form: nd, body: "{\"type\":\"a\"}\r\n{\"type\":\"b\",\"data\":[1]}\r\n",
			want: []event.Event{ev("gen-1", "a", "null"), ev("gen-2", "b", "[1]")}},
		{name: "ndjson one object", form: nd, body: `{"type":"a","data":2}`, want: []event.Event{ev("gen-1", "a", "2")}},
		{name: "ndjson indented line", form: nd, body: "  {\"type\":\"a\"}  \n", want: []event.Event{ev("gen-1", "a", "null")}},
		{name: "empty body", body: "", status: s400, code: "empty_body"},
		{name: "whitespace-only body", body: " \t\r\n ", status: s400, code: "empty_body"},
		{name: "ndjson empty body", form: nd, body: "", status: s400, code: "empty_body"},
		{name: "ndjson blank lines only", form: nd, body: "\n\r\n  \n", status: s400, code: "empty_body"},
		{name: "empty array", body: `[]`, status: s400, code: "no_events"},
		{name: "empty array with whitespace", body: " [ \n ] ", status: s400, code: "no_events"},
		{name: "json array in ndjson form is one non-object line", form: nd, body: `[{"type":"a"}]`,
			status: s400, code: "invalid_events", details: []detail{dtl(0, 1, "not_an_object")}},
	}
}

// syntaxCases: malformed JSON is one 400 naming the broken event.
func syntaxCases() []decodeCase {
	return []decodeCase{
		{name: "unterminated string", body: `{"type":"a`, status: s400, code: "invalid_json", details: []detail{dt(0, "invalid_json")}},
		{name: "unterminated key", body: `{"typ`, status: s400, code: "invalid_json", details: []detail{dt(0, "invalid_json")}},
		{name: "unterminated object", body: `{"type":"a"`, status: s400, code: "invalid_json", details: []detail{dt(0, "invalid_json")}},
		{name: "unterminated data object", body: `{"type":"a","data":{"x":1}`, status: s400, code: "invalid_json", details: []detail{dt(0, "invalid_json")}},
		{name: "unterminated array", body: `[{"type":"a"}`, status: s400, code: "invalid_json", details: []detail{dt(0, "invalid_json")}},
		{name: "unterminated array after comma", body: `[{"type":"a"},`, status: s400, code: "invalid_json", details: []detail{dt(1, "invalid_json")}},
		{name: "lone open bracket", body: `[`, status: s400, code: "invalid_json", details: []detail{dt(0, "invalid_json")}},
		{name: "missing colon", body: `{"type" "a"}`, status: s400, code: "invalid_json", details: []detail{dt(0, "invalid_json")}},
		{name: "missing comma", body: `{"type":"a" "id":"b"}`, status: s400, code: "invalid_json", details: []detail{dt(0, "invalid_json")}},
		{name: "missing comma between events", body: `[{"type":"a"} {"type":"b"}]`, status: s400, code: "invalid_json", details: []detail{dt(0, "invalid_json")}},
		{name: "trailing comma in object", body: `{"type":"a",}`, status: s400, code: "invalid_json", details: []detail{dt(0, "invalid_json")}},
		{name: "trailing comma in data", body: `{"type":"a","data":[1,]}`, status: s400, code: "invalid_json", details: []detail{dt(0, "invalid_json")}},
		{name: "trailing comma in array", body: `[{"type":"a"},]`, status: s400, code: "invalid_json", details: []detail{dt(1, "invalid_json")}},
		{name: "leading comma in array", body: `[,{"type":"a"}]`, status: s400, code: "invalid_json", details: []detail{dt(0, "invalid_json")}},
		{name: "single quotes", body: `{'type':'a'}`, status: s400, code: "invalid_json", details: []detail{dt(0, "invalid_json")}},
		{name: "unquoted key", body: `{type:"a"}`, status: s400, code: "invalid_json", details: []detail{dt(0, "invalid_json")}},
		{name: "block comment", body: `{"type":"a" /* c */}`, status: s400, code: "invalid_json", details: []detail{dt(0, "invalid_json")}},
		{name: "line comment before", body: "// c\n{\"type\":\"a\"}", status: s400, code: "invalid_json", details: []detail{dt(0, "invalid_json")}},
		{name: "misspelled literal", body: `{"type":"a","data":tru}`, status: s400, code: "invalid_json", details: []detail{dt(0, "invalid_json")}},
		{name: "capitalised literal", body: `{"type":"a","data":True}`, status: s400, code: "invalid_json", details: []detail{dt(0, "invalid_json")}},
		{name: "non-json whitespace (form feed)", body: "{\"type\":\"a\",\f\"data\":1}", status: s400, code: "invalid_json", details: []detail{dt(0, "invalid_json")}},
		{name: "trailing garbage after object", body: `{"type":"a"} x`, status: s400, code: "invalid_json"},
		{name: "two objects in json form", body: `{"type":"a"}{"type":"b"}`, status: s400, code: "invalid_json"},
		{name: "ndjson body in json form", body: "{\"type\":\"a\"}\n{\"type\":\"b\"}\n", status: s400, code: "invalid_json"},
		{name: "trailing garbage after array", body: `[{"type":"a"}]]`, status: s400, code: "invalid_json"},
		{name: "second array after array", body: `[{"type":"a"}] [{"type":"b"}]`, status: s400, code: "invalid_json"},
		{name: "syntax error in third event", body: `[{"type":"a"},{"type":"b"},{"type":}]`, status: s400, code: "invalid_json", details: []detail{dt(2, "invalid_json")}},
		{name: "ndjson trailing data on a line", form: nd, body: "{\"type\":\"a\"} {\"type\":\"b\"}\n",
			status: s400, code: "invalid_events", details: []detail{dtl(0, 1, "invalid_json")}},
		{name: "ndjson one broken line among good ones", form: nd,
			body:   "{\"type\":\"a\"}\n\n{\"type\":\"b\"\n{\"type\":\"c\"}\n{\"id\":\"x\"}\n",
			status: s400, code: "invalid_events", details: []detail{dtl(1, 3, "invalid_json"), dtl(3, 5, "missing_type")}},
		// JSON whitespace is space, tab, LF and CR only: a line holding a
		// vertical tab, a form feed or a no-break space is not blank.
		{name: "ndjson line of a vertical tab is not blank", form: nd, body: "{\"type\":\"a\"}\n\v\n{\"type\":\"b\"}\n",
			status: s400, code: "invalid_events", details: []detail{dtl(1, 2, "invalid_json")}},
		{name: "ndjson line of a no-break space is not blank", form: nd, body: "{\"type\":\"a\"}\n\u00a0\n",
			status: s400, code: "invalid_events", details: []detail{dtl(1, 2, "invalid_json")}},
		{name: "ndjson event split over two lines", form: nd, body: "{\"type\":\n\"a\"}\n",
			status: s400, code: "invalid_events", details: []detail{dtl(0, 1, "invalid_json"), dtl(1, 2, "invalid_json")}},
	}
}

func digits(n int) string { return "1" + strings.Repeat("0", n-1) }

// numberCases: JSON numbers only, and only within float64's range.
func numberCases() []decodeCase {
	bad := func(name, data string) decodeCase {
		return decodeCase{name: name, body: `{"type":"a","data":` + data + `}`, status: s400, code: "invalid_number", details: []detail{dt(0, "invalid_number")}}
	}
	good := func(name, data string) decodeCase {
		return decodeCase{name: name, body: `{"type":"a","data":` + data + `}`, want: []event.Event{ev("gen-1", "a", data)}}
	}
	badSyntax := func(name, data string) decodeCase {
		return decodeCase{name: name, body: `{"type":"a","data":` + data + `}`, status: s400, code: "invalid_json", details: []detail{dt(0, "invalid_json")}}
	}
	return []decodeCase{
		bad("NaN", "NaN"),
		bad("Infinity", "Infinity"),
		bad("-Infinity", "-Infinity"),
		bad("NaN in an array", "[1,NaN]"),
		bad("1e400", "1e400"),
		bad("-1e400", "-1e400"),
		bad("1E+400", "1E+400"),
		bad("400-digit integer", digits(400)),
		bad("310-digit integer (1e309)", digits(310)),
		bad("400-digit integer with fraction", digits(400)+".5"),
		good("1e308", "1e308"),
		good("-1.7976931348623157e308", "-1.7976931348623157e308"),
		good("300-digit integer", digits(300)),
		good("309-digit integer (1e308)", digits(309)),
		good("negative 300-digit integer", "-"+digits(300)),
		good("1e-400 underflows to zero", "1e-400"),
		good("long fraction", "0."+strings.Repeat("1", 400)),
		good("zero forms", "[0,-0,0.0,0e5,0E-5,-0.0e+0]"),
		badSyntax("leading zero", "01"),
		badSyntax("leading plus", "+1"),
		badSyntax("bare minus", "-"),
		badSyntax("dot without digits", "1."),
		badSyntax("leading dot", ".5"),
		badSyntax("exponent without digits", "1e"),
		badSyntax("hex", "0x10"),
	}
}

// encodingCases: UTF-8 only, no BOM, no lone surrogates, no raw controls.
func encodingCases() []decodeCase {
	bad := func(name, code, str string) decodeCase {
		return decodeCase{name: name, body: `{"type":"a","data":"` + str + `"}`, status: s400, code: code, details: []detail{dt(0, code)}}
	}
	good := func(name, str string) decodeCase {
		data := `"` + str + `"`
		return decodeCase{name: name, body: `{"type":"a","data":` + data + `}`, want: []event.Event{ev("gen-1", "a", data)}}
	}
	return []decodeCase{
		bad("invalid utf-8 byte", "invalid_encoding", "a\xffb"),
		bad("truncated utf-8 sequence", "invalid_encoding", "\xe2\x82"),
		bad("overlong utf-8", "invalid_encoding", "\xc0\xaf"),
		bad("utf-8 encoded surrogate", "invalid_encoding", "\xed\xa0\x80"),
		{name: "invalid utf-8 in key", body: "{\"type\":\"a\",\"data\":{\"\xff\":1}}", status: s400, code: "invalid_encoding", details: []detail{dt(0, "invalid_encoding")}},
		{name: "invalid utf-8 in type", body: "{\"type\":\"a\xff\"}", status: s400, code: "invalid_encoding", details: []detail{dt(0, "invalid_encoding")}},
		{name: "utf-8 bom", body: "\xef\xbb\xbf{\"type\":\"a\"}", status: s400, code: "invalid_encoding"},
		{name: "utf-8 bom ndjson", form: nd, body: "\xef\xbb\xbf{\"type\":\"a\"}\n", status: s400, code: "invalid_encoding"},
		bad("lone high surrogate", "invalid_encoding", `\ud800`),
		bad("lone low surrogate", "invalid_encoding", `\udc00`),
		bad("high surrogate at end of string", "invalid_encoding", `x\udbff`),
		bad("high surrogate then non-surrogate escape", "invalid_encoding", `\ud800\u0041`),
		bad("high surrogate then high surrogate", "invalid_encoding", `\ud800\ud800`),
		bad("reversed surrogate pair", "invalid_encoding", `\ude00\ud83d`),
		bad("raw tab in string", "invalid_json", "a\tb"),
		bad("raw newline in string", "invalid_json", "a\nb"),
		bad("raw NUL in string", "invalid_json", "a\x00b"),
		bad("invalid escape", "invalid_json", `\x41`),
		bad("short unicode escape", "invalid_json", `\u12`),
		bad("non-hex unicode escape", "invalid_json", `\u12g4`),
		good("valid surrogate pair", `\ud83d\ude00`),
		good("upper-case hex escapes", `\uD83D\uDE00\u00E9`),
		good("all simple escapes", `\"\\\/\b\f\n\r\t`),
		good("raw multi-byte utf-8", "é€😀"),
		good("raw U+FFFD is valid", "\xef\xbf\xbd"),
		good("DEL is not a control character", "\x7f"),
	}
}

// keys returns a JSON object of n distinct keys k00, k01, … and extra members.
func keys(n int, extra string) string {
	var b strings.Builder
	b.WriteByte('{')
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`"k` + strconv.Itoa(100 + i)[1:] + `":` + strconv.Itoa(i))
	}
	b.WriteString(extra)
	b.WriteByte('}')
	return b.String()
}

// depthAndDuplicateCases: MaxDepth (4 in testLimits) bounds data nesting;
// duplicate keys are refused wherever they are.
func depthAndDuplicateCases() []decodeCase {
	okData := func(name, data string) decodeCase {
		return decodeCase{name: name, body: `{"type":"a","data":` + data + `}`, want: []event.Event{ev("gen-1", "a", data)}}
	}
	badData := func(name, code, data string) decodeCase {
		return decodeCase{name: name, body: `{"type":"a","data":` + data + `}`, status: s400, code: code, details: []detail{dt(0, code)}}
	}
	return []decodeCase{
		okData("objects exactly MaxDepth deep", `{"a":{"b":{"c":{"d":1}}}}`),
		okData("arrays exactly MaxDepth deep", `[[[[1]]]]`),
		okData("mixed exactly MaxDepth deep", `[{"a":[{}]}]`),
		badData("objects deeper than MaxDepth", "too_deep", `{"a":{"b":{"c":{"d":{"e":1}}}}}`),
		badData("arrays deeper than MaxDepth", "too_deep", `[[[[[1]]]]]`),
		badData("deep but unterminated reports depth first", "too_deep", `[[[[[[[[`),
		{name: "non-object element deeper than MaxDepth", body: `[[[[[[1]]]]]]`, status: s400, code: "too_deep", details: []detail{dt(0, "too_deep")}},
		{name: "unknown field value deeper than MaxDepth", body: `{"type":"a","x":[[[[[1]]]]]}`, status: s400, code: "too_deep", details: []detail{dt(0, "too_deep")}},
		{name: "duplicate key at event level", body: `{"type":"a","type":"b"}`, status: s400, code: "invalid_events", details: []detail{dt(0, "duplicate_key")}},
		{name: "duplicate data member", body: `{"type":"a","data":1,"data":2}`, status: s400, code: "invalid_events", details: []detail{dt(0, "duplicate_key")}},
		{name: "duplicate key at event level after unescaping", body: `{"type":"a","\u0074ype":"b"}`, status: s400, code: "invalid_events", details: []detail{dt(0, "duplicate_key")}},
		{name: "duplicate key at event level in second event", body: `[{"type":"a"},{"id":"x","type":"b","id":"y"}]`, status: s400, code: "invalid_events", details: []detail{dt(1, "duplicate_key")}},
		badData("duplicate key in data", "duplicate_key", `{"x":1,"x":2}`),
		badData("duplicate key after unescaping", "duplicate_key", `{"a":1,"\u0061":2}`),
		badData("duplicate key after unescaping solidus", "duplicate_key", `{"a/b":1,"a\/b":2}`),
		badData("duplicate key in nested data", "duplicate_key", `{"o":{"x":1,"y":2,"x":3}}`),
		badData("duplicate key in object inside array", "duplicate_key", `[{"x":1},{"y":1,"y":2}]`),
		badData("duplicate key after 16 keys (map path)", "duplicate_key", keys(20, `,"k03":99`)),
		badData("duplicate key as 18th key (map switch)", "duplicate_key", keys(17, `,"k16":99`)),
		badData("duplicate of 17th key as 17th+1", "duplicate_key", keys(16, `,"zz":1,"zz":2`)),
		okData("20 distinct keys", keys(20, "")),
		okData("same key in sibling objects", `{"a":{"x":1},"b":{"x":1},"c":[{"x":1},{"x":2}]}`),
		okData("same key in parent and child", `{"x":{"x":{"x":1}}}`),
		okData("event field names inside data", `{"type":1,"id":2,"ts":3,"data":4}`),
		okData("sibling maps after a big object", `[`+keys(20, "")+`,`+keys(20, "")+`]`),
		{name: "same keys in consecutive events", body: `[{"type":"a","data":1},{"type":"b","data":2}]`,
			want: []event.Event{ev("gen-1", "a", "1"), ev("gen-2", "b", "2")}},
	}
}

// typeCases: type is required and must be a subject-safe token string.
func typeCases() []decodeCase {
	bad := func(name, typ string) decodeCase {
		return decodeCase{name: name, body: `{"type":` + typ + `}`, status: s400, code: "invalid_events", details: []detail{dt(0, "invalid_type")}}
	}
	good := func(name, typ, want string) decodeCase {
		return decodeCase{name: name, body: `{"type":` + typ + `}`, want: []event.Event{ev("gen-1", want, "null")}}
	}
	return []decodeCase{
		{name: "missing type", body: `{"id":"x","data":1}`, status: s400, code: "invalid_events", details: []detail{dt(0, "missing_type")}},
		{name: "empty event", body: `{}`, status: s400, code: "invalid_events", details: []detail{dt(0, "missing_type")}},
		bad("type null", `null`),
		bad("type number", `42`),
		bad("type bool", `true`),
		bad("type object", `{"a":1}`),
		bad("type array", `["a"]`),
		bad("type empty", `""`),
		bad("type with space", `"user signup"`),
		bad("type with *", `"user.*"`),
		bad("type with >", `"user.>"`),
		bad("type with leading dot", `".user"`),
		bad("type with trailing dot", `"user."`),
		bad("type with double dot", `"user..signup"`),
		bad("type starting with _", `"_user"`),
		bad("token starting with -", `"user.-x"`),
		bad("type with slash", `"user/signup"`),
		bad("type with non-ascii", `"usér"`),
		bad("type with escaped newline", `"a\nb"`),
		bad("type 129 chars", `"`+strings.Repeat("a", 129)+`"`),
		good("type 128 chars", `"`+strings.Repeat("a", 128)+`"`, strings.Repeat("a", 128)),
		good("valid type", `"user.signup_v2-x"`, "user.signup_v2-x"),
		good("type of one digit", `"7"`, "7"),
		good("escaped type is unescaped", `"us\u0065r.x"`, "user.x"),
	}
}

// idCases: id is optional; null or absent means the server makes one.
func idCases() []decodeCase {
	bad := func(name, id string) decodeCase {
		return decodeCase{name: name, body: `{"type":"a","id":` + id + `}`, status: s400, code: "invalid_events", details: []detail{dt(0, "invalid_id")}}
	}
	good := func(name, id, want string) decodeCase {
		return decodeCase{name: name, body: `{"type":"a","id":` + id + `}`, want: []event.Event{ev(want, "a", "null")}}
	}
	return []decodeCase{
		bad("id with space", `"a b"`),
		bad("id with slash", `"a/b"`),
		bad("id with star", `"a*"`),
		bad("id non-ascii", `"é"`),
		bad("id empty", `""`),
		bad("id 129 chars", `"`+strings.Repeat("x", 129)+`"`),
		bad("id number", `12`),
		bad("id object", `{}`),
		good("id null generates one", `null`, "gen-1"),
		good("id 128 chars", `"`+strings.Repeat("x", 128)+`"`, strings.Repeat("x", 128)),
		good("id full charset", `"Az09._:-"`, "Az09._:-"),
		good("escaped id is unescaped", `"\u0041b"`, "Ab"),
		{name: "generated ids are sequential and skip given ones", body: `[{"type":"a"},{"type":"a","id":"mine"},{"type":"a","id":null}]`,
			want: []event.Event{ev("gen-1", "a", "null"), ev("mine", "a", "null"), ev("gen-2", "a", "null")}},
	}
}

// tsCases: ts is strict RFC 3339 with a zone, stored UTC at microseconds.
func tsCases() []decodeCase {
	bad := func(name, ts string) decodeCase {
		return decodeCase{name: name, body: `{"type":"a","ts":` + ts + `}`, status: s400, code: "invalid_events", details: []detail{dt(0, "invalid_ts")}}
	}
	good := func(name, ts string, want time.Time) decodeCase {
		return decodeCase{name: name, body: `{"type":"a","ts":` + ts + `}`, want: []event.Event{evTS("gen-1", "a", want, "null")}}
	}
	return []decodeCase{
		bad("no zone", `"2024-01-02T03:04:05"`),
		bad("date only", `"2024-01-02"`),
		bad("lowercase t", `"2024-01-02t03:04:05Z"`),
		bad("lowercase z", `"2024-01-02T03:04:05z"`),
		bad("space separator", `"2024-01-02 03:04:05Z"`),
		bad("month 13", `"2024-13-02T03:04:05Z"`),
		bad("february 30", `"2024-02-30T03:04:05Z"`),
		bad("hour 24", `"2024-01-02T24:00:00Z"`),
		bad("year 0000", `"0000-01-02T03:04:05Z"`),
		bad("year 0001 becomes 0000 in UTC", `"0001-01-01T00:30:00+01:00"`),
		bad("year 9999 becomes 10000 in UTC", `"9999-12-31T23:30:00-01:00"`),
		bad("ten fractional digits", `"2024-01-02T03:04:05.1234567890Z"`),
		bad("empty fraction", `"2024-01-02T03:04:05.Z"`),
		bad("offset without colon", `"2024-01-02T03:04:05+0200"`),
		bad("offset hour 25", `"2024-01-02T03:04:05+25:00"`),
		bad("unix seconds", `1704164645`),
		bad("empty ts", `""`),
		// RFC 3339 time-numoffset: time-hour is 00-23 and time-minute 00-59.
		bad("offset hour 24 (not RFC 3339)", `"2024-01-02T03:04:05+24:00"`),
		bad("offset minute 60 (not RFC 3339)", `"2024-01-02T03:04:05+00:60"`),
		good("utc", `"2024-01-02T03:04:05Z"`, time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)),
		good("offset is stored as UTC", `"2024-01-02T03:04:05+02:00"`, time.Date(2024, 1, 2, 1, 4, 5, 0, time.UTC)),
		good("negative offset crosses midnight", `"2024-12-31T23:30:00-01:30"`, time.Date(2025, 1, 1, 1, 0, 0, 0, time.UTC)),
		good("nanoseconds truncated to microseconds", `"2024-01-02T03:04:05.123456789Z"`, time.Date(2024, 1, 2, 3, 4, 5, 123456000, time.UTC)),
		good("one fractional digit", `"2024-01-02T03:04:05.5Z"`, time.Date(2024, 1, 2, 3, 4, 5, 500000000, time.UTC)),
		good("leap day", `"2024-02-29T00:00:00Z"`, time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC)),
		good("first microsecond of year 0001", `"0001-01-01T00:00:00.000001Z"`, time.Date(1, 1, 1, 0, 0, 0, 1000, time.UTC)),
		good("last microsecond of year 9999", `"9999-12-31T23:59:59.999999999Z"`, time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC)),
		good("ts null defaults to now", `null`, wantNow),
	}
}

// elementCases: events must be objects with only the known fields.
func elementCases() []decodeCase {
	notObj := func(name, body string) decodeCase {
		return decodeCase{name: name, body: body, status: s400, code: "invalid_events", details: []detail{dt(0, "not_an_object")}}
	}
	return []decodeCase{
		{name: "unknown field", body: `{"type":"a","extra":1}`, status: s400, code: "invalid_events", details: []detail{dt(0, "unknown_field")}},
		{name: "field names are case-sensitive", body: `{"Type":"a"}`, status: s400, code: "invalid_events", details: []detail{dt(0, "unknown_field")}},
		{name: "received_at is not a client field", body: `{"type":"a","received_at":"2024-01-02T03:04:05Z"}`, status: s400, code: "invalid_events", details: []detail{dt(0, "unknown_field")}},
		notObj("top-level string", `"a"`),
		notObj("top-level number", `1`),
		notObj("top-level null", `null`),
		notObj("array element string", `["a"]`),
		notObj("array element number", `[1]`),
		notObj("array element nested array", `[[{"type":"a"}]]`),
		{name: "mixed elements", body: `[{"type":"a"},"x",{"type":"b"},null,true]`, status: s400, code: "invalid_events",
			details: []detail{dt(1, "not_an_object"), dt(3, "not_an_object"), dt(4, "not_an_object")}},
		{name: "ndjson line not an object", form: nd, body: "{\"type\":\"a\"}\n42\n\"s\"\n", status: s400, code: "invalid_events",
			details: []detail{dtl(1, 2, "not_an_object"), dtl(2, 3, "not_an_object")}},
		{name: "bad events listed in order", body: `[{"type":"a"},{"id":"x"},{"type":"b"},{"type":"c","id":"bad id"},{"type":"d","ts":"nope"}]`,
			status: s400, code: "invalid_events", details: []detail{dt(1, "missing_type"), dt(3, "invalid_id"), dt(4, "invalid_ts")}},
		{name: "every event bad", body: `[{},{"type":"."},{"type":"a","x":1}]`, status: s400, code: "invalid_events",
			details: []detail{dt(0, "missing_type"), dt(1, "invalid_type"), dt(2, "unknown_field")}},
		{name: "one problem per event, the first found", body: `{"type":"a","x":1,"type":"b"}`, status: s400, code: "invalid_events",
			details: []detail{dt(0, "unknown_field")}},
	}
}

// limitCases: MaxEventBytes and MaxEvents answer 413.
func limitCases() []decodeCase {
	small := &ingest.Limits{MaxEvents: 3, MaxEventBytes: 32, MaxDepth: 4}
	// `{"type":"a","data":"` + n×x + `"}` is 22+n bytes.
	sized := func(n int) string { return `{"type":"a","data":"` + strings.Repeat("x", n) + `"}` }
	return []decodeCase{
		{name: "event of exactly MaxEventBytes", lim: small, body: sized(10), want: []event.Event{ev("gen-1", "a", `"xxxxxxxxxx"`)}},
		{name: "event over MaxEventBytes", lim: small, body: sized(11), status: s413, code: "invalid_events", details: []detail{dt(0, "event_too_large")}},
		{name: "event size excludes surrounding whitespace", lim: small, body: "   \n" + sized(10) + "\n   ", want: []event.Event{ev("gen-1", "a", `"xxxxxxxxxx"`)}},
		{name: "too large event among good ones", lim: small, body: "[" + sized(1) + "," + sized(40) + "," + sized(2) + "]",
			status: s413, code: "invalid_events", details: []detail{dt(1, "event_too_large")}},
		{name: "too large and invalid events is 413", lim: small, body: `[{"id":"x"},` + sized(40) + `]`,
			status: s413, code: "invalid_events", details: []detail{dt(0, "missing_type"), dt(1, "event_too_large")}},
		{name: "ndjson too large event", form: nd, lim: small, body: sized(1) + "\n" + sized(40) + "\n",
			status: s413, code: "invalid_events", details: []detail{dtl(1, 2, "event_too_large")}},
		{name: "exactly MaxEvents in array", lim: small, body: `[{"type":"a"},{"type":"b"},{"type":"c"}]`,
			want: []event.Event{ev("gen-1", "a", "null"), ev("gen-2", "b", "null"), ev("gen-3", "c", "null")}},
		{name: "too many events in array", lim: small, body: `[{"type":"a"},{"type":"b"},{"type":"c"},{"type":"d"}]`, status: s413, code: "too_many_events"},
		{name: "too many events counts bad ones", lim: small, body: `[1,2,3,4]`, status: s413, code: "too_many_events"},
		{name: "exactly MaxEvents in ndjson with blank lines", form: nd, lim: small, body: "{\"type\":\"a\"}\n\n{\"type\":\"b\"}\n{\"type\":\"c\"}\n\n\n",
			want: []event.Event{ev("gen-1", "a", "null"), ev("gen-2", "b", "null"), ev("gen-3", "c", "null")}},
		{name: "too many events in ndjson", form: nd, lim: small, body: "{\"type\":\"a\"}\n{\"type\":\"b\"}\n{\"type\":\"c\"}\n{\"type\":\"d\"}\n", status: s413, code: "too_many_events"},
	}
}

// dataCases: data is kept byte for byte; absent data is null.
func dataCases() []decodeCase {
	good := func(name, body, data string) decodeCase {
		return decodeCase{name: name, body: body, want: []event.Event{ev("gen-1", "a", data)}}
	}
	return []decodeCase{
		good("data absent is null", `{"type":"a"}`, "null"),
		good("data null", `{"type":"a","data":null}`, "null"),
		good("data string", `{"type":"a","data":"s"}`, `"s"`),
		good("data number", `{"type":"a","data":-1.5e-3}`, "-1.5e-3"),
		good("data false", `{"type":"a","data":false}`, "false"),
		good("data empty object", `{"type":"a","data":{}}`, "{}"),
		good("data empty array", `{"type":"a","data":[]}`, "[]"),
		good("data before type", `{"data":[1],"type":"a"}`, "[1]"),
		good("data whitespace preserved", "{\"type\":\"a\",\"data\" :\t{ \"b\" : [ 1 ,\n2 ] ,\"c\":\"\\u00e9\\n\" }  }",
			"{ \"b\" : [ 1 ,\n2 ] ,\"c\":\"\\u00e9\\n\" }"),
		good("data escapes not decoded", `{"type":"a","data":"\u0041\ud83d\ude00\/"}`, `"\u0041\ud83d\ude00\/"`),
		good("data key order preserved", `{"type":"a","data":{"z":1,"a":2,"m":3}}`, `{"z":1,"a":2,"m":3}`),
		good("data number text preserved", `{"type":"a","data":[1.0,1E2,100e-2]}`, `[1.0,1E2,100e-2]`),
	}
}

// An accepted event must satisfy event.Check, which the worker applies to
// every event it reads from the queue: an event that passes Decode but fails
// Check is answered 202 and then dead-lettered by the worker. Check refuses a
// zero time.Time, and 0001-01-01T00:00:00Z is exactly that instant, so Decode
// must either refuse these timestamps or make them pass Check.
func TestDecodeNeverReturnsZeroTS(t *testing.T) {
	for _, ts := range []string{
		"0001-01-01T00:00:00Z",
		"0001-01-01T00:00:00.000000Z",
		"0001-01-01T00:00:00.000000999Z", // truncated to the microsecond: zero
		"0001-01-01T01:00:00+01:00",
		"0001-01-01T00:00:00.000001Z", // one microsecond later: fine
	} {
		t.Run(ts, func(t *testing.T) {
			body := `{"type":"a","ts":"` + ts + `"}`
			evs, err := ingest.Decode([]byte(body), ingest.FormJSON, testLimits, decodeNow, counterID())
			if err != nil {
				require.Equal(t, 400, err.Status)
				require.Equal(t, "invalid_events", err.Code)
				require.Len(t, err.Details, 1)
				require.Equal(t, "invalid_ts", err.Details[0].Code)
				return
			}
			require.Len(t, evs, 1)
			require.False(t, evs[0].TS.IsZero(), "ts %s decoded to the zero time", ts)
			require.NoError(t, evs[0].Check(), "ts %s was accepted but the event fails event.Check", ts)
		})
	}
}
