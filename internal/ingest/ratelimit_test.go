package ingest_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/levee-dev/levee/internal/backpressure"
	"github.com/levee-dev/levee/internal/ingest"
)

func TestHandlerRateLimit(t *testing.T) {
	tests := []struct {
		name       string
		perSecond  float64
		burst      int
		requests   int    // by ci, back to back
		accepted   int    // of those, answered 202
		retryAfter string // of the 429s
	}{
		{name: "within the burst", perSecond: 1, burst: 3, requests: 3, accepted: 3},
		{name: "over the burst", perSecond: 1, burst: 3, requests: 5, accepted: 3, retryAfter: "1"},
		{name: "retry-after is the time to the next token", perSecond: 0.1, burst: 1, requests: 2, accepted: 1, retryAfter: "10"},
		{name: "sub-second wait rounds up to 1", perSecond: 50, burst: 1, requests: 2, accepted: 1, retryAfter: "1"},
		{name: "unlimited", perSecond: 0, burst: 1, requests: 20, accepted: 20},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			x := newHarness(t, func(s *ingest.Settings) {
				s.Keys = keysFor(t, "ci", "ci-key", "ops", "ops-key")
				s.RateLimit, s.RateBurst = tc.perSecond, tc.burst
			})
			got := 0
			for range tc.requests {
				rec := x.do(http.MethodPost, "application/json", []byte(`{"type":"a"}`), "X-API-Key", "ci-key")
				if rec.Code == http.StatusAccepted {
					got++
					continue
				}
				requireError(t, rec.Code, rec.Header(), rec.Body.Bytes(), http.StatusTooManyRequests, "rate_limited")
				require.Equal(t, tc.retryAfter, rec.Header().Get("Retry-After"))
			}
			require.Equal(t, tc.accepted, got)
			require.Len(t, x.pub.Calls(), tc.accepted, "a 429 publishes nothing")
			// Each key has its own bucket.
			rec := x.do(http.MethodPost, "application/json", []byte(`{"type":"a"}`), "X-API-Key", "ops-key")
			requireAccepted(t, rec.Code, rec.Header(), rec.Body.Bytes())
		})
	}
}

// A reload keeps the bucket of a key whose name stays configured, even when
// the key itself is rotated; a name that is removed and added back starts
// afresh.
func TestHandlerRateLimitSurvivesReload(t *testing.T) {
	settings := func(pairs ...string) ingest.Settings {
		s := baseSettings()
		s.Keys = keysFor(t, pairs...)
		s.RateLimit, s.RateBurst = 0.01, 1
		return s
	}
	x := newHarness(t, func(s *ingest.Settings) { *s = settings("ci", "k1", "ops", "k2") })
	post := func(key string) int {
		return x.do(http.MethodPost, "application/json", []byte(`{"type":"a"}`), "Authorization", "Bearer "+key).Code
	}
	require.Equal(t, 202, post("k1"))
	require.Equal(t, 429, post("k1"))

	x.h.Apply(settings("ci", "k1", "ops", "k2", "new", "k3"))
	require.Equal(t, 429, post("k1"), "unchanged name: same bucket")
	require.Equal(t, 202, post("k3"))

	x.h.Apply(settings("ci", "k1-rotated", "ops", "k2"))
	require.Equal(t, 401, post("k1"), "the old key is revoked")
	require.Equal(t, 429, post("k1-rotated"), "a rotated key keeps its name's bucket")

	x.h.Apply(settings("ops", "k2"))
	x.h.Apply(settings("ci", "k1", "ops", "k2"))
	require.Equal(t, 202, post("k1"), "a removed name's bucket is gone")

	s := settings("ci", "k1", "ops", "k2")
	s.RateLimit = 0
	x.h.Apply(s)
	for range 5 {
		require.Equal(t, 202, post("k1"), "rate_limit 0: unlimited")
	}
}

// With auth off there is no key to limit: rate_limit does not apply.
func TestHandlerRateLimitNeedsAuth(t *testing.T) {
	x := newHarness(t, func(s *ingest.Settings) { s.RateLimit, s.RateBurst = 0.01, 1 })
	for range 10 {
		rec := x.do(http.MethodPost, "application/json", []byte(`{"type":"a"}`))
		requireAccepted(t, rec.Code, rec.Header(), rec.Body.Bytes())
	}
}

// levee_ingest_requests_by_key_total has a series per configured name (and
// none for auth off) from the start; failed authentications count under no
// key, so a client cannot create series.
func TestHandlerRequestsByKey(t *testing.T) {
	x := newHarness(t, func(s *ingest.Settings) {
		s.Keys = keysFor(t, "ci", "ci-key", "ops", "ops-key")
		s.RateLimit, s.RateBurst = 0.01, 2
	})
	for _, h := range [][]string{
		{"X-API-Key", "ci-key"}, {"X-API-Key", "ci-key"}, {"X-API-Key", "ci-key"}, // the third is rate-limited
		{"Authorization", "Bearer ops-key"},
		{"X-API-Key", "unknown-key"}, {},
	} {
		x.do(http.MethodPost, "application/json", []byte(`{"type":"a"}`), h...)
	}
	x.do(http.MethodPost, "application/json", []byte(`{"type":`), "X-API-Key", "ops-key") // 400 after auth
	require.NoError(t, testutil.GatherAndCompare(x.reg, strings.NewReader(`
# HELP levee_ingest_requests_by_key_total Authenticated ingest requests (rate-limited ones included) by API key name; none when auth is off.
# TYPE levee_ingest_requests_by_key_total counter
levee_ingest_requests_by_key_total{key="ci"} 3
levee_ingest_requests_by_key_total{key="none"} 0
levee_ingest_requests_by_key_total{key="ops"} 2
`), "levee_ingest_requests_by_key_total"))
	require.NoError(t, testutil.GatherAndCompare(x.reg, strings.NewReader(`
# HELP levee_ingest_requests_total Ingest requests by HTTP status code and path taken (queue, spool, direct, none).
# TYPE levee_ingest_requests_total counter
levee_ingest_requests_total{code="202",path="direct"} 0
levee_ingest_requests_total{code="202",path="queue"} 3
levee_ingest_requests_total{code="202",path="spool"} 0
levee_ingest_requests_total{code="400",path="none"} 1
levee_ingest_requests_total{code="401",path="none"} 2
levee_ingest_requests_total{code="429",path="none"} 1
`), "levee_ingest_requests_total"))

	x2 := newHarness(t, nil)
	x2.do(http.MethodPost, "application/json", []byte(`{"type":"a"}`), "X-API-Key", "anything")
	require.NoError(t, testutil.GatherAndCompare(x2.reg, strings.NewReader(`
# HELP levee_ingest_requests_by_key_total Authenticated ingest requests (rate-limited ones included) by API key name; none when auth is off.
# TYPE levee_ingest_requests_by_key_total counter
levee_ingest_requests_by_key_total{key="none"} 1
`), "levee_ingest_requests_by_key_total"))
}

// The per-request log line names the key; no line holds a key, presented
// or configured.
func TestHandlerLogsKeyNameNotKey(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	s := baseSettings()
	s.Keys = keysFor(t, "ci", "ci-secret-key")
	s.RateLimit, s.RateBurst = 0.01, 1
	reg := prometheus.NewRegistry()
	gate, err := backpressure.NewLimiter("admission", backpressure.Config{Static: 100}, reg)
	require.NoError(t, err)
	h, err := ingest.NewHandler(ingest.Deps{Publisher: &fakeSink{}, Gate: gate, NewID: func() string { return "x" }},
		s, zap.New(core), reg)
	require.NoError(t, err)
	for _, key := range []string{"ci-secret-key", "ci-secret-key", "wrong-secret-key"} {
		r := httptest.NewRequest(http.MethodPost, "/v1/events", strings.NewReader(`{"type":"a"}`))
		r.Header.Set("Authorization", "Bearer "+key)
		h.ServeHTTP(httptest.NewRecorder(), r)
	}
	var got []string
	for _, e := range logs.All() {
		line := fmt.Sprintf("%s %v", e.Message, e.ContextMap())
		require.NotContains(t, line, "secret-key")
		if e.Message == "request" {
			got = append(got, fmt.Sprintf("%v %v", e.ContextMap()["status"], e.ContextMap()["key"]))
		}
	}
	require.Equal(t, []string{"202 ci", "429 ci", "401 "}, got)
}
