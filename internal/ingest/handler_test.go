package ingest_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/levee-dev/levee/internal/backpressure"
	"github.com/levee-dev/levee/internal/config"
	"github.com/levee-dev/levee/internal/event"
	"github.com/levee-dev/levee/internal/ingest"
)

// fakeSink is a hand-written Publisher and Writer: it records every call,
// and fails with err or blocks until the call's context ends when told to.
type fakeSink struct {
	mu        sync.Mutex
	calls     [][]event.Event
	deadlines []bool // whether each call's context had a deadline
	err       error
	block     bool
	down      bool // Ready reports false
}

func (f *fakeSink) Ready() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return !f.down
}

func (f *fakeSink) record(ctx context.Context, evs []event.Event) error {
	f.mu.Lock()
	_, hasDeadline := ctx.Deadline()
	f.calls = append(f.calls, slices.Clone(evs))
	f.deadlines = append(f.deadlines, hasDeadline)
	err, block := f.err, f.block
	f.mu.Unlock()
	if block {
		<-ctx.Done()
		return ctx.Err()
	}
	return err
}

func (f *fakeSink) Publish(ctx context.Context, evs []event.Event) error { return f.record(ctx, evs) }

func (f *fakeSink) Write(ctx context.Context, evs []event.Event) (int, error) {
	if err := f.record(ctx, evs); err != nil {
		return 0, err
	}
	return len(evs), nil
}

func (f *fakeSink) Calls() [][]event.Event {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

type harness struct {
	h    *ingest.Handler
	pub  *fakeSink
	wr   *fakeSink
	gate *backpressure.Limiter
	reg  *prometheus.Registry
}

func baseSettings() ingest.Settings {
	return ingest.Settings{
		Limits:         ingest.Limits{MaxEvents: 100, MaxEventBytes: 4096, MaxDepth: 8},
		MaxBodyBytes:   1 << 20,
		PublishTimeout: 5 * time.Second,
		MaxWait:        time.Second,
		RetryAfter:     time.Second,
		Keys:           ingest.NewKeys(nil),
	}
}

func newHarness(t *testing.T, mod func(*ingest.Settings)) *harness {
	t.Helper()
	s := baseSettings()
	if mod != nil {
		mod(&s)
	}
	var n atomic.Int64
	newID := func() string { return "id-" + strconv.FormatInt(n.Add(1), 10) }
	x := &harness{pub: &fakeSink{}, wr: &fakeSink{}, reg: prometheus.NewRegistry()}
	// A real admission gate with a static limit far above any test's needs;
	// the spool (degraded path) is left out: Settings.Degrade is false.
	gate, err := backpressure.NewLimiter("admission", backpressure.Config{Static: 10000}, x.reg)
	require.NoError(t, err)
	x.gate = gate
	h, err := ingest.NewHandler(ingest.Deps{Publisher: x.pub, Gate: gate, Direct: x.wr, NewID: newID},
		s, zaptest.NewLogger(t), x.reg)
	require.NoError(t, err)
	x.h = h
	return x
}

// do serves one request; headers are set on it as given.
func (x *harness) do(method, contentType string, body []byte, headers ...string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, "/v1/events", bytes.NewReader(body))
	if contentType != "" {
		r.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		r.Header.Set(headers[i], headers[i+1])
	}
	w := httptest.NewRecorder()
	x.h.ServeHTTP(w, r)
	return w
}

type accepted struct {
	Accepted int      `json:"accepted"`
	IDs      []string `json:"ids"`
	Path     string   `json:"path"`
}

// requireAccepted checks a 202 and that its body has exactly the three
// members of the contract.
func requireAccepted(t *testing.T, status int, header http.Header, body []byte) accepted {
	t.Helper()
	require.Equal(t, http.StatusAccepted, status, "body: %s", body)
	require.Equal(t, "application/json", header.Get("Content-Type"))
	var members map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(body, &members))
	require.ElementsMatch(t, []string{"accepted", "ids", "path"}, mapKeys(members), "body: %s", body)
	var a accepted
	require.NoError(t, json.Unmarshal(body, &a))
	require.Len(t, a.IDs, a.Accepted)
	return a
}

type errorBody struct {
	Code    string           `json:"code"`
	Message string           `json:"message"`
	Details []ingest.Problem `json:"details"`
}

// requireError checks an error answer: status, JSON content type and the
// {"error":{"code","message"[,"details"]}} shape.
func requireError(t *testing.T, status int, header http.Header, body []byte, wantStatus int, wantCode string) errorBody {
	t.Helper()
	require.Equal(t, wantStatus, status, "body: %s", body)
	require.Equal(t, "application/json", header.Get("Content-Type"))
	var outer map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(body, &outer), "body: %s", body)
	require.Equal(t, []string{"error"}, mapKeys(outer), "body: %s", body)
	var inner map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(outer["error"], &inner))
	require.Contains(t, inner, "code")
	require.Contains(t, inner, "message")
	for k := range inner {
		require.Contains(t, []string{"code", "message", "details"}, k, "body: %s", body)
	}
	var e errorBody
	require.NoError(t, json.Unmarshal(outer["error"], &e))
	require.Equal(t, wantCode, e.Code, "body: %s", body)
	require.NotEmpty(t, e.Message)
	return e
}

func mapKeys(m map[string]json.RawMessage) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func gz(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, err := zw.Write(b)
	require.NoError(t, err)
	require.NoError(t, zw.Close())
	return buf.Bytes()
}

// padTo pads a JSON body with trailing spaces to exactly n bytes.
func padTo(body string, n int) []byte { return []byte(body + strings.Repeat(" ", n-len(body))) }

func TestHandlerRequests(t *testing.T) {
	const one = `{"type":"a"}`
	const three = `[{"type":"a"},{"type":"b"},{"type":"c"}]`
	const lines = "{\"type\":\"a\"}\n{\"type\":\"b\"}\n"
	bomb := gz(t, make([]byte, 10<<20)) // 10 MiB of zeros in a few KiB
	corruptCRC := gz(t, []byte(one))
	corruptCRC[len(corruptCRC)-8] ^= 0xff
	// 64 bytes that gzip cannot shrink below 64: over the limit on the wire
	// only, so this is the wire limit's answer, not the decompressed one's.
	rnd := rand.New(rand.NewPCG(1, 2))
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	noise := []byte(`{"type":"a","data":"`)
	for len(noise) < 62 {
		noise = append(noise, alphabet[rnd.IntN(len(alphabet))])
	}
	noise = append(noise, `"}`...)
	require.Len(t, noise, 64)
	require.Greater(t, len(gz(t, noise)), 64)
	small := func(s *ingest.Settings) { s.MaxBodyBytes = 64 }
	tests := []struct {
		name     string
		method   string
		ct       string
		headers  []string
		body     []byte
		settings func(*ingest.Settings)
		status   int
		code     string // for errors
		events   int    // for 202
	}{
		{name: "json object", ct: "application/json", body: []byte(one), status: 202, events: 1},
		{name: "json array", ct: "application/json", body: []byte(three), status: 202, events: 3},
		{name: "empty content type is json", ct: "", body: []byte(three), status: 202, events: 3},
		{name: "json with utf-8 charset", ct: "application/json; charset=utf-8", body: []byte(one), status: 202, events: 1},
		{name: "json with quoted upper-case charset", ct: `application/json; charset="UTF-8"`, body: []byte(one), status: 202, events: 1},
		{name: "json media type is case-insensitive", ct: "Application/JSON", body: []byte(one), status: 202, events: 1},
		{name: "x-ndjson", ct: "application/x-ndjson", body: []byte(lines), status: 202, events: 2},
		{name: "ndjson", ct: "application/ndjson", body: []byte(lines), status: 202, events: 2},
		{name: "x-ndjson with charset", ct: "application/x-ndjson; charset=utf-8", body: []byte(lines), status: 202, events: 2},
		{name: "ndjson body sent as json", ct: "application/json", body: []byte(lines), status: 400, code: "invalid_json"},
		{name: "text/plain", ct: "text/plain", body: []byte(one), status: 415, code: "unsupported_media_type"},
		{name: "json in latin1", ct: "application/json; charset=latin1", body: []byte(one), status: 415, code: "unsupported_media_type"},
		{name: "ndjson in latin1", ct: "application/x-ndjson; charset=iso-8859-1", body: []byte(lines), status: 415, code: "unsupported_media_type"},
		{name: "form urlencoded", ct: "application/x-www-form-urlencoded", body: []byte("type=a"), status: 415, code: "unsupported_media_type"},
		{name: "multipart", ct: "multipart/form-data; boundary=x", body: []byte(one), status: 415, code: "unsupported_media_type"},
		{name: "malformed content type", ct: "application/json; =", body: []byte(one), status: 415, code: "unsupported_media_type"},
		{name: "PUT", method: http.MethodPut, ct: "application/json", body: []byte(one), status: 405, code: "method_not_allowed"},
		{name: "invalid json", ct: "application/json", body: []byte(`{"type":`), status: 400, code: "invalid_json"},
		{name: "invalid event", ct: "application/json", body: []byte(`[{"type":"a"},{"id":"x"}]`), status: 400, code: "invalid_events"},
		{name: "empty body", ct: "application/json", body: nil, status: 400, code: "empty_body"},
		{name: "too many events", ct: "application/json", body: []byte(three), status: 413, code: "too_many_events",
			settings: func(s *ingest.Settings) { s.Limits.MaxEvents = 2 }},
		{name: "event too large", ct: "application/json", body: []byte(`{"type":"a","data":"` + strings.Repeat("x", 100) + `"}`),
			status: 413, code: "invalid_events", settings: func(s *ingest.Settings) { s.Limits.MaxEventBytes = 64 }},
		{name: "body of exactly MaxBodyBytes", ct: "application/json", body: padTo(one, 64), settings: small, status: 202, events: 1},
		{name: "body over MaxBodyBytes", ct: "application/json", body: padTo(one, 65), settings: small, status: 413, code: "too_large"},
		{name: "body far over MaxBodyBytes", ct: "application/json", body: padTo(three, 1<<20+1), status: 413, code: "too_large"},
		{name: "gzip", ct: "application/json", headers: []string{"Content-Encoding", "gzip"}, body: gz(t, []byte(three)), status: 202, events: 3},
		{name: "x-gzip", ct: "application/json", headers: []string{"Content-Encoding", "x-gzip"}, body: gz(t, []byte(one)), status: 202, events: 1},
		{name: "upper-case GZIP", ct: "application/json", headers: []string{"Content-Encoding", "GZIP"}, body: gz(t, []byte(one)), status: 202, events: 1},
		{name: "gzip ndjson", ct: "application/x-ndjson", headers: []string{"Content-Encoding", "gzip"}, body: gz(t, []byte(lines)), status: 202, events: 2},
		{name: "identity", ct: "application/json", headers: []string{"Content-Encoding", "identity"}, body: []byte(one), status: 202, events: 1},
		{name: "gzip bomb", ct: "application/json", headers: []string{"Content-Encoding", "gzip"}, body: bomb, status: 413, code: "too_large"},
		{name: "gzip decompressing to exactly MaxBodyBytes", ct: "application/json", headers: []string{"Content-Encoding", "gzip"},
			body: gz(t, padTo(one, 64)), settings: small, status: 202, events: 1},
		{name: "gzip decompressing past MaxBodyBytes", ct: "application/json", headers: []string{"Content-Encoding", "gzip"},
			body: gz(t, padTo(one, 65)), settings: small, status: 413, code: "too_large"},
		{name: "gzip larger than MaxBodyBytes on the wire", ct: "application/json", headers: []string{"Content-Encoding", "gzip"},
			body: gz(t, noise), settings: small, status: 413, code: "too_large"},
		{name: "invalid gzip", ct: "application/json", headers: []string{"Content-Encoding", "gzip"}, body: []byte(one), status: 400, code: "bad_body"},
		{name: "empty gzip body", ct: "application/json", headers: []string{"Content-Encoding", "gzip"}, body: nil, status: 400, code: "bad_body"},
		{name: "truncated gzip", ct: "application/json", headers: []string{"Content-Encoding", "gzip"}, body: gz(t, []byte(three))[:20], status: 400, code: "bad_body"},
		{name: "gzip with bad checksum", ct: "application/json", headers: []string{"Content-Encoding", "gzip"}, body: corruptCRC, status: 400, code: "bad_body"},
		{name: "br", ct: "application/json", headers: []string{"Content-Encoding", "br"}, body: []byte(one), status: 415, code: "unsupported_encoding"},
		{name: "deflate", ct: "application/json", headers: []string{"Content-Encoding", "deflate"}, body: []byte(one), status: 415, code: "unsupported_encoding"},
		{name: "stacked encodings", ct: "application/json", headers: []string{"Content-Encoding", "gzip, gzip"}, body: gz(t, gz(t, []byte(one))), status: 415, code: "unsupported_encoding"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			x := newHarness(t, tc.settings)
			method := tc.method
			if method == "" {
				method = http.MethodPost
			}
			rec := x.do(method, tc.ct, tc.body, tc.headers...)
			body := rec.Body.Bytes()
			if tc.status != http.StatusAccepted {
				requireError(t, rec.Code, rec.Header(), body, tc.status, tc.code)
				require.Empty(t, x.pub.Calls(), "publisher called for a %d", tc.status)
				require.Empty(t, x.wr.Calls(), "writer called for a %d", tc.status)
				return
			}
			a := requireAccepted(t, rec.Code, rec.Header(), body)
			require.Equal(t, tc.events, a.Accepted)
			require.Equal(t, ingest.PathQueue, a.Path)
			calls := x.pub.Calls()
			require.Len(t, calls, 1)
			require.Len(t, calls[0], tc.events)
			require.Empty(t, x.wr.Calls())
		})
	}
}

func TestHandlerAcceptedBody(t *testing.T) {
	x := newHarness(t, nil)
	before := time.Now().UTC().Truncate(time.Microsecond)
	rec := x.do(http.MethodPost, "application/json",
		[]byte(`[{"type":"a","id":"mine","data":{"x": [1, 2]}},{"type":"b.c","ts":"2024-01-02T03:04:05+01:00"},{"type":"d"}]`))
	after := time.Now().UTC()

	require.JSONEq(t, `{"accepted":3,"ids":["mine","id-1","id-2"],"path":"queue"}`, rec.Body.String())
	a := requireAccepted(t, rec.Code, rec.Header(), rec.Body.Bytes())

	calls := x.pub.Calls()
	require.Len(t, calls, 1)
	evs := calls[0]
	require.Len(t, evs, 3)
	var ids, types, data []string
	for _, e := range evs {
		require.NoError(t, e.Check())
		ids, types, data = append(ids, e.ID), append(types, e.Type), append(data, string(e.Data))
		require.Equal(t, time.UTC, e.ReceivedAt.Location())
		require.False(t, e.ReceivedAt.Before(before), "received_at %v before the request", e.ReceivedAt)
		require.False(t, e.ReceivedAt.After(after), "received_at %v after the answer", e.ReceivedAt)
		require.Zero(t, e.ReceivedAt.Nanosecond()%1000, "received_at has sub-microsecond precision")
	}
	require.Equal(t, a.IDs, ids)
	require.Equal(t, []string{"a", "b.c", "d"}, types)
	require.Equal(t, []string{`{"x": [1, 2]}`, "null", "null"}, data)
	require.Equal(t, time.Date(2024, 1, 2, 2, 4, 5, 0, time.UTC), evs[1].TS)
	require.Equal(t, evs[0].ReceivedAt, evs[0].TS, "ts defaults to the receive time")
}

func TestHandlerMethodNotAllowed(t *testing.T) {
	for _, method := range []string{http.MethodGet, http.MethodHead, http.MethodDelete, http.MethodPatch} {
		t.Run(method, func(t *testing.T) {
			x := newHarness(t, nil)
			rec := x.do(method, "application/json", nil)
			require.Equal(t, http.StatusMethodNotAllowed, rec.Code)
			require.Equal(t, http.MethodPost, rec.Header().Get("Allow"))
			if method != http.MethodHead {
				requireError(t, rec.Code, rec.Header(), rec.Body.Bytes(), http.StatusMethodNotAllowed, "method_not_allowed")
			}
			require.Empty(t, x.pub.Calls())
		})
	}
}

func TestHandlerInvalidEventsDetails(t *testing.T) {
	x := newHarness(t, nil)
	rec := x.do(http.MethodPost, "application/json", []byte(`[{"type":"a"},{"id":"x"},{"type":"b"},{"type":"c","x":1}]`))
	e := requireError(t, rec.Code, rec.Header(), rec.Body.Bytes(), 400, "invalid_events")
	require.Len(t, e.Details, 2)
	require.Equal(t, 1, e.Details[0].Index)
	require.Equal(t, "missing_type", e.Details[0].Code)
	require.Equal(t, 3, e.Details[1].Index)
	require.Equal(t, "unknown_field", e.Details[1].Code)
	require.Empty(t, x.pub.Calls())
}

func keysFor(t *testing.T, pairs ...string) *ingest.Keys {
	t.Helper()
	var ks []config.APIKey
	for i := 0; i+1 < len(pairs); i += 2 {
		ks = append(ks, config.APIKey{Name: pairs[i], SHA256: ingest.HashKey(pairs[i+1])})
	}
	k := ingest.NewKeys(ks)
	require.Equal(t, len(ks) > 0, k.Enabled())
	return k
}

// postWire sends one request over a real connection. Header names are sent
// exactly as given (not canonicalised) to exercise the server's parsing.
func postWire(t *testing.T, url string, body string, headers ...string) (*http.Response, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/v1/events", strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header[headers[i]] = append(req.Header[headers[i]], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, b
}

func TestHandlerAuth(t *testing.T) {
	x := newHarness(t, func(s *ingest.Settings) { s.Keys = keysFor(t, "ci", "secret", "ops", "other-secret") })
	srv := httptest.NewServer(x.h)
	t.Cleanup(srv.Close)
	tests := []struct {
		name    string
		headers []string
		status  int
		reason  string // auth failure reason for 401
	}{
		{name: "no key", status: 401, reason: "missing"},
		{name: "wrong bearer", headers: []string{"Authorization", "Bearer nope"}, status: 401, reason: "invalid"},
		{name: "wrong x-api-key", headers: []string{"X-API-Key", "nope"}, status: 401, reason: "invalid"},
		{name: "key is case-sensitive", headers: []string{"Authorization", "Bearer SECRET"}, status: 401, reason: "invalid"},
		{name: "digest instead of key", headers: []string{"Authorization", "Bearer " + ingest.HashKey("secret")}, status: 401, reason: "invalid"},
		{name: "basic scheme", headers: []string{"Authorization", "Basic secret"}, status: 401, reason: "missing"},
		{name: "bearer without token", headers: []string{"Authorization", "Bearer"}, status: 401, reason: "missing"},
		{name: "scheme glued to token", headers: []string{"Authorization", "Bearersecret"}, status: 401, reason: "missing"},
		{name: "bearer", headers: []string{"Authorization", "Bearer secret"}, status: 202},
		{name: "second key", headers: []string{"Authorization", "Bearer other-secret"}, status: 202},
		{name: "x-api-key", headers: []string{"X-API-Key", "secret"}, status: 202},
		{name: "lowercase header and scheme", headers: []string{"authorization", "bearer secret"}, status: 202},
		{name: "upper-case scheme", headers: []string{"Authorization", "BEARER secret"}, status: 202},
		{name: "lowercase x-api-key header", headers: []string{"x-api-key", "secret"}, status: 202},
		{name: "surrounding spaces trimmed", headers: []string{"Authorization", "Bearer   secret  "}, status: 202},
		{name: "x-api-key wins over a wrong bearer", headers: []string{"X-API-Key", "secret", "Authorization", "Bearer nope"}, status: 202},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := len(x.pub.Calls())
			failures := authFailures(t, x.reg, tc.reason)
			resp, body := postWire(t, srv.URL, `{"type":"a"}`, tc.headers...)
			if tc.status == 202 {
				requireAccepted(t, resp.StatusCode, resp.Header, body)
				require.Len(t, x.pub.Calls(), before+1)
				return
			}
			requireError(t, resp.StatusCode, resp.Header, body, 401, "unauthorized")
			require.Equal(t, `Bearer realm="levee"`, resp.Header.Get("WWW-Authenticate"))
			require.Len(t, x.pub.Calls(), before, "publisher called for a 401")
			require.Equal(t, failures+1, authFailures(t, x.reg, tc.reason))
		})
	}
}

// authFailures reads the levee_ingest_auth_failures_total series with the
// given reason from reg (0 while it does not exist).
func authFailures(t *testing.T, reg *prometheus.Registry, reason string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != "levee_ingest_auth_failures_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "reason" && lp.GetValue() == reason {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func TestHandlerWithoutKeysAnyRequestPasses(t *testing.T) {
	x := newHarness(t, nil)
	for _, h := range [][]string{nil, {"Authorization", "Bearer whatever"}, {"X-API-Key", "anything"}, {"Authorization", "Basic x"}} {
		rec := x.do(http.MethodPost, "application/json", []byte(`{"type":"a"}`), h...)
		requireAccepted(t, rec.Code, rec.Header(), rec.Body.Bytes())
		require.Empty(t, rec.Header().Get("WWW-Authenticate"))
	}
	require.Len(t, x.pub.Calls(), 4)
}

func TestHandlerApplySwitchesKeysLive(t *testing.T) {
	x := newHarness(t, func(s *ingest.Settings) { s.Keys = keysFor(t, "ci", "secret") })
	status := func(key string) int {
		return x.do(http.MethodPost, "application/json", []byte(`{"type":"a"}`), "Authorization", "Bearer "+key).Code
	}
	require.Equal(t, 202, status("secret"))
	require.Equal(t, 401, status("rotated"))

	s := baseSettings()
	s.Keys = keysFor(t, "ci2", "rotated")
	x.h.Apply(s) // "secret" revoked
	require.Equal(t, 401, status("secret"))
	require.Equal(t, 202, status("rotated"))

	s.Keys = ingest.NewKeys(nil)
	x.h.Apply(s) // auth off
	require.Equal(t, 202, status("secret"))
	require.Equal(t, 202, status(""))

	s.Keys = keysFor(t, "ci", "secret")
	x.h.Apply(s) // back on
	require.Equal(t, 401, status("rotated"))
	require.Len(t, x.pub.Calls(), 4)
}

func TestHandlerApplyChangesLimitsLive(t *testing.T) {
	x := newHarness(t, nil)
	body := []byte(`[{"type":"a"},{"type":"b"},{"type":"c"}]`)
	require.Equal(t, 202, x.do(http.MethodPost, "application/json", body).Code)
	s := baseSettings()
	s.Limits.MaxEvents = 2
	x.h.Apply(s)
	rec := x.do(http.MethodPost, "application/json", body)
	requireError(t, rec.Code, rec.Header(), rec.Body.Bytes(), 413, "too_many_events")
}

func TestHandlerDirect(t *testing.T) {
	x := newHarness(t, func(s *ingest.Settings) { s.Direct = true })
	rec := x.do(http.MethodPost, "application/json", []byte(`[{"type":"a","id":"k"},{"type":"b"}]`))
	require.JSONEq(t, `{"accepted":2,"ids":["k","id-1"],"path":"direct"}`, rec.Body.String())
	requireAccepted(t, rec.Code, rec.Header(), rec.Body.Bytes())
	require.Empty(t, x.pub.Calls())
	calls := x.wr.Calls()
	require.Len(t, calls, 1)
	require.Len(t, calls[0], 2)
	require.Equal(t, "k", calls[0][0].ID)
	require.Equal(t, "id-1", calls[0][1].ID)

	x.wr.mu.Lock()
	x.wr.err = errors.New("database down")
	x.wr.mu.Unlock()
	rec = x.do(http.MethodPost, "application/json", []byte(`{"type":"a"}`))
	requireError(t, rec.Code, rec.Header(), rec.Body.Bytes(), 503, "unavailable")
	require.Equal(t, "1", rec.Header().Get("Retry-After"))
	require.Empty(t, x.pub.Calls())
}

func TestHandlerPublishFailure(t *testing.T) {
	t.Run("error", func(t *testing.T) {
		x := newHarness(t, nil)
		x.pub.err = errors.New("no ack")
		rec := x.do(http.MethodPost, "application/json", []byte(`{"type":"a"}`))
		requireError(t, rec.Code, rec.Header(), rec.Body.Bytes(), 503, "unavailable")
		require.Equal(t, "1", rec.Header().Get("Retry-After"))
		require.Len(t, x.pub.Calls(), 1)
	})
	t.Run("blocks until the publish timeout", func(t *testing.T) {
		x := newHarness(t, func(s *ingest.Settings) { s.PublishTimeout = 50 * time.Millisecond })
		x.pub.block = true
		// The request's own context ends only if the handler fails to bound
		// the publish, so that a regression fails here instead of hanging.
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		r := httptest.NewRequestWithContext(ctx, http.MethodPost, "/v1/events", strings.NewReader(`{"type":"a"}`))
		rec := httptest.NewRecorder()
		done := make(chan struct{})
		start := time.Now()
		go func() { defer close(done); x.h.ServeHTTP(rec, r) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cancel()
			<-done
			t.Fatal("publish was not bounded by PublishTimeout")
		}
		elapsed := time.Since(start)
		requireError(t, rec.Code, rec.Header(), rec.Body.Bytes(), 503, "unavailable")
		require.Equal(t, "1", rec.Header().Get("Retry-After"))
		require.GreaterOrEqual(t, elapsed, 50*time.Millisecond)
		require.Less(t, elapsed, 5*time.Second)
		require.Equal(t, []bool{true}, x.pub.deadlines)
	})
	t.Run("queue unreachable", func(t *testing.T) {
		x := newHarness(t, nil)
		x.pub.down = true
		rec := x.do(http.MethodPost, "application/json", []byte(`{"type":"a"}`))
		requireError(t, rec.Code, rec.Header(), rec.Body.Bytes(), 503, "unavailable")
		require.Equal(t, "1", rec.Header().Get("Retry-After"))
		require.Empty(t, x.pub.Calls())
	})
	t.Run("gate full for MaxWait", func(t *testing.T) {
		x := newHarness(t, func(s *ingest.Settings) { s.MaxWait = 20 * time.Millisecond; s.RetryAfter = 3 * time.Second })
		held, ok := x.gate.TryAcquire(10000) // every unit in flight
		require.True(t, ok)
		defer held.Release(backpressure.Ignore)
		rec := x.do(http.MethodPost, "application/json", []byte(`{"type":"a"}`))
		requireError(t, rec.Code, rec.Header(), rec.Body.Bytes(), 503, "overloaded")
		require.Equal(t, "3", rec.Header().Get("Retry-After"))
		require.Empty(t, x.pub.Calls())
	})
	t.Run("client gone", func(t *testing.T) {
		x := newHarness(t, nil)
		x.pub.block = true
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		r := httptest.NewRequestWithContext(ctx, http.MethodPost, "/v1/events", strings.NewReader(`{"type":"a"}`))
		w := httptest.NewRecorder()
		x.h.ServeHTTP(w, r)
		require.Equal(t, 503, w.Code)
	})
}

func TestHandlerMetrics(t *testing.T) {
	x := newHarness(t, nil)
	rec := x.do(http.MethodPost, "application/json", []byte(`[{"type":"a"},{"type":"b"}]`))
	requireAccepted(t, rec.Code, rec.Header(), rec.Body.Bytes())
	rec = x.do(http.MethodPost, "application/json", []byte(`{"id":"x"}`))
	requireError(t, rec.Code, rec.Header(), rec.Body.Bytes(), 400, "invalid_events")

	require.NoError(t, testutil.GatherAndCompare(x.reg, strings.NewReader(`
# HELP levee_ingest_requests_total Ingest requests by HTTP status code and path taken (queue, spool, direct, none).
# TYPE levee_ingest_requests_total counter
levee_ingest_requests_total{code="202",path="direct"} 0
levee_ingest_requests_total{code="202",path="queue"} 1
levee_ingest_requests_total{code="202",path="spool"} 0
levee_ingest_requests_total{code="400",path="none"} 1
`), "levee_ingest_requests_total"))
	require.NoError(t, testutil.GatherAndCompare(x.reg, strings.NewReader(`
# HELP levee_ingest_events_total Events received, by outcome (accepted, rejected) and path (queue, spool, direct, none).
# TYPE levee_ingest_events_total counter
levee_ingest_events_total{outcome="accepted",path="direct"} 0
levee_ingest_events_total{outcome="accepted",path="queue"} 2
levee_ingest_events_total{outcome="accepted",path="spool"} 0
levee_ingest_events_total{outcome="rejected",path="none"} 1
`), "levee_ingest_events_total"))
	require.Equal(t, 4, testutil.CollectAndCount(x.reg, "levee_ingest_request_duration_seconds"),
		"one duration series per path (queue, spool, direct, none), present before first use")
}

func TestNewHandlerRejectsDuplicateRegistration(t *testing.T) {
	reg := prometheus.NewRegistry()
	pub := &fakeSink{}
	d := ingest.Deps{Publisher: pub, Direct: pub, NewID: func() string { return "x" }}
	_, err := ingest.NewHandler(d, baseSettings(), zaptest.NewLogger(t), reg)
	require.NoError(t, err)
	_, err = ingest.NewHandler(d, baseSettings(), zaptest.NewLogger(t), reg)
	require.Error(t, err)
}
