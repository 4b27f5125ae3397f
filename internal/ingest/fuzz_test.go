package ingest_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/levee-dev/levee/internal/event"
	"github.com/levee-dev/levee/internal/ingest"
)

// Small limits, so that the fuzzer reaches the 413 answers too.
var fuzzLimits = ingest.Limits{MaxEvents: 16, MaxEventBytes: 512, MaxDepth: 6}

// The seed corpus is testdata/fuzz/<FuzzName>/.

func FuzzDecodeJSON(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte) {
		evs := decodeChecked(t, body, ingest.FormJSON)
		if evs == nil {
			return
		}
		// The scanner is stricter than encoding/json, never looser.
		require.True(t, json.Valid(body), "accepted a body encoding/json rejects")
		var top any
		require.NoError(t, json.Unmarshal(body, &top))
		objs, ok := top.([]any)
		if !ok {
			objs = []any{top}
		}
		require.Len(t, evs, len(objs), "encoding/json sees a different number of events")
		var raws []json.RawMessage
		if _, isArray := top.([]any); isArray {
			require.NoError(t, json.Unmarshal(body, &raws))
		} else {
			raws = []json.RawMessage{bytes.TrimSpace(body)}
		}
		for i := range evs {
			compareWithStdlib(t, raws[i], evs[i])
		}
	})
}

func FuzzDecodeNDJSON(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte) {
		evs := decodeChecked(t, body, ingest.FormNDJSON)
		if evs == nil {
			return
		}
		// Every line that is not blank in the JSON sense (space, tab, CR)
		// must be one valid JSON object, and holds the next event.
		var lines [][]byte
		for l := range bytes.SplitSeq(body, []byte("\n")) {
			if len(bytes.Trim(l, " \t\r")) > 0 {
				lines = append(lines, l)
			}
		}
		require.Len(t, evs, len(lines), "events and non-blank lines differ")
		for i, l := range lines {
			require.True(t, json.Valid(l), "accepted line %q that encoding/json rejects", l)
			compareWithStdlib(t, l, evs[i])
		}
	})
}

// decodeChecked decodes body, checks the invariants of any answer and
// returns the events of a success (nil for a failure).
func decodeChecked(t *testing.T, body []byte, form ingest.Form) []event.Event {
	orig := bytes.Clone(body)
	evs, err := ingest.Decode(body, form, fuzzLimits, decodeNow, counterID())
	require.Equal(t, orig, body, "Decode modified its input")
	if err != nil {
		require.Nil(t, evs)
		checkError(t, err)
		return nil
	}
	require.NotEmpty(t, evs)
	require.LessOrEqual(t, len(evs), fuzzLimits.MaxEvents)
	for i, e := range evs {
		require.NoError(t, e.Check(), "event %d: %+v", i, e)
		require.NotEmpty(t, e.Data)
		require.True(t, json.Valid(e.Data), "event %d data %q", i, e.Data)
		require.True(t, string(e.Data) == "null" || bytes.Contains(body, e.Data), "event %d data %q is not in the body", i, e.Data)
		require.Equal(t, wantNow, e.ReceivedAt)
		require.Equal(t, time.UTC, e.TS.Location())
		require.Zero(t, e.TS.Nanosecond()%1000, "ts below the microsecond")
	}
	return evs
}

func checkError(t *testing.T, err *ingest.Error) {
	require.Contains(t, []int{400, 413}, err.Status, "%v", err)
	require.NotEmpty(t, err.Code)
	require.NotEmpty(t, err.Message)
	tooLarge := false
	for i, p := range err.Details {
		require.NotEmpty(t, p.Code, "detail %d", i)
		require.NotEmpty(t, p.Message, "detail %d", i)
		require.GreaterOrEqual(t, p.Index, 0)
		if i > 0 {
			require.Greater(t, p.Index, err.Details[i-1].Index, "details out of order")
		}
		tooLarge = tooLarge || p.Code == "event_too_large"
	}
	switch err.Code {
	case "invalid_events":
		require.NotEmpty(t, err.Details)
		require.Equal(t, tooLarge, err.Status == 413, "413 exactly when an event is too large: %v", err)
	case "too_many_events":
		require.Equal(t, 413, err.Status)
	default:
		require.Equal(t, 400, err.Status, "%v", err)
		require.False(t, tooLarge)
	}
}

// compareWithStdlib checks an event against encoding/json's reading of the
// object it came from.
func compareWithStdlib(t *testing.T, raw []byte, e event.Event) {
	var m map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(raw, &m), "%q", raw)
	for k := range m {
		require.Contains(t, []string{"type", "id", "ts", "data"}, k)
	}
	var typ string
	require.NoError(t, json.Unmarshal(m["type"], &typ))
	require.Equal(t, typ, e.Type)

	if id, ok := m["id"]; ok && string(id) != "null" {
		var want string
		require.NoError(t, json.Unmarshal(id, &want))
		require.Equal(t, want, e.ID)
	} else {
		require.True(t, strings.HasPrefix(e.ID, "gen-"), "id %q was not generated", e.ID)
	}

	if ts, ok := m["ts"]; ok && string(ts) != "null" {
		var s string
		require.NoError(t, json.Unmarshal(ts, &s))
		want, err := time.Parse(time.RFC3339Nano, s)
		require.NoError(t, err)
		require.True(t, want.Truncate(time.Microsecond).Equal(e.TS), "ts %s decoded as %v", s, e.TS)
	} else {
		require.Equal(t, wantNow, e.TS)
	}

	if data, ok := m["data"]; ok {
		require.Equal(t, string(data), string(e.Data))
	} else {
		require.Equal(t, "null", string(e.Data))
	}
}
