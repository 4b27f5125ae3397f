package loadgen

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"
)

// stallServer answers 202 at once, except that request number stallAt
// holds a lock for stall, and every request arriving meanwhile waits for it:
// a server that freezes once.
func stallServer(stallAt int64, stall time.Duration) *httptest.Server {
	var mu sync.Mutex
	var n atomic.Int64
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		mu.Lock()
		if n.Add(1) == stallAt {
			time.Sleep(stall)
		}
		mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
		_, _ = w.Write([]byte(`{"accepted":1,"ids":[],"path":"queue"}`))
	}))
}

// With requests scheduled every 10 ms, a 500 ms stall delays the ~50
// requests due during it; measured from their intended send times, the top
// percent of latencies is the stall itself. A closed-loop or send-time
// measurement would show one slow request.
func TestOpenLoopIncludesQueueingDelay(t *testing.T) {
	srv := stallServer(20, 500*time.Millisecond)
	defer srv.Close()
	g, err := NewGenerator(Load{Target: srv.URL, Mode: ModeOpen, Clients: 100, Rate: 100, Duration: 2 * time.Second,
		Events: 1, IDPrefix: "co"}, zaptest.NewLogger(t))
	require.NoError(t, err)
	res, err := g.Run(context.Background())
	require.NoError(t, err)
	require.EqualValues(t, 200, res.Offered, "%+v", res.Status)
	require.Zero(t, res.Dropped, "%+v", res.Timeline)
	require.EqualValues(t, 200, res.Accepted, "%+v", res.Status)
	require.GreaterOrEqual(t, res.Latency.P99, 450.0, "p99 %v ms must include the stall", res.Latency.P99)
	require.GreaterOrEqual(t, res.Latency.Max, 490.0)
	require.GreaterOrEqual(t, res.Latency.P95, 200.0, "the requests queued behind the stall count too")
}

// Requests due while every in-flight slot is busy are counted as dropped,
// not silently skipped.
func TestOpenLoopCountsDropped(t *testing.T) {
	srv := stallServer(5, 300*time.Millisecond)
	defer srv.Close()
	g, err := NewGenerator(Load{Target: srv.URL, Mode: ModeOpen, Clients: 1, Rate: 100, Duration: time.Second,
		Events: 1, IDPrefix: "drop"}, zaptest.NewLogger(t))
	require.NoError(t, err)
	res, err := g.Run(context.Background())
	require.NoError(t, err)
	require.EqualValues(t, 100, res.Offered)
	require.Positive(t, res.Dropped)
	require.Equal(t, res.Offered, res.Completed+res.Dropped)
	var dropped int64
	for _, s := range res.Timeline {
		dropped += s.Dropped
	}
	require.Equal(t, res.Dropped, dropped)
}

// The generator sends explicit ids, keeps the accepted ones and the ones
// of unknown outcome (5xx) apart, and counts statuses.
func TestClosedLoopTracksIDs(t *testing.T) {
	type ev struct {
		ID   string          `json:"id"`
		Type string          `json:"type"`
		Data json.RawMessage `json:"data"`
	}
	var bad atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var evs []ev
		if err := json.NewDecoder(r.Body).Decode(&evs); err != nil || len(evs) != 10 {
			bad.Add(1)
		}
		n, _ := strconv.Atoi(strings.TrimPrefix(evs[0].ID, "ids-"))
		switch (n / 10) % 4 {
		case 0, 1:
			w.WriteHeader(http.StatusAccepted)
			_, _ = w.Write([]byte(`{"accepted":10,"ids":[],"path":"queue"}`))
		case 2:
			w.WriteHeader(http.StatusServiceUnavailable)
		case 3:
			w.WriteHeader(http.StatusBadRequest)
		}
	}))
	defer srv.Close()
	g, err := NewGenerator(Load{Target: srv.URL, Mode: ModeClosed, Clients: 4, Duration: 300 * time.Millisecond,
		Events: 10, Size: 100, IDPrefix: "ids"}, zaptest.NewLogger(t))
	require.NoError(t, err)
	res, err := g.Run(context.Background())
	require.NoError(t, err)
	require.Zero(t, bad.Load())
	require.Positive(t, res.Accepted)
	require.Equal(t, res.Completed, res.Status["202"].N+res.Status["503"].N+res.Status["400"].N)
	require.Equal(t, res.Status["202"].N*10, g.Accepted().Len())
	require.Equal(t, res.Status["503"].N*10, g.Unknown().Len())
	require.Equal(t, map[string]int64{"queue": res.Accepted}, res.Paths)
	g.Accepted().Each(func(n int64) bool {
		require.Less(t, (n/10)%4, int64(2), n)
		return true
	})
	require.InDelta(t, float64(res.Completed-res.Accepted)/float64(res.Completed), res.ErrorRate, 1e-9)
}

func TestTransportErrorsAreUnknownOutcome(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens any more
	g, err := NewGenerator(Load{Target: url, Mode: ModeClosed, Clients: 1, Duration: 50 * time.Millisecond,
		Events: 2, IDPrefix: "gone"}, zaptest.NewLogger(t))
	require.NoError(t, err)
	res, err := g.Run(context.Background())
	require.NoError(t, err)
	require.Positive(t, res.Status["error:refused"].N)
	require.Equal(t, res.Completed*2, g.Unknown().Len())
	require.Equal(t, 1.0, res.ErrorRate)
}

func TestBodyMaker(t *testing.T) {
	tests := []struct {
		name         string
		events, size int
		first        int64
	}{
		{"single", 1, 256, 0},
		{"single large number", 1, 256, 123_456_789},
		{"bulk", 100, 512, 1000},
		{"size below the skeleton", 3, 10, 7},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := newBodyMaker("pfx", tc.events, tc.size).build(tc.first)
			var evs []map[string]any
			if tc.events == 1 {
				var one map[string]any
				require.NoError(t, json.Unmarshal(b, &one))
				evs = append(evs, one)
				if tc.size > 60 {
					require.Len(t, b, tc.size)
				}
			} else {
				require.NoError(t, json.Unmarshal(b, &evs))
			}
			require.Len(t, evs, tc.events)
			for i, e := range evs {
				require.Equal(t, ID("pfx", tc.first+int64(i)), e["id"])
				require.Equal(t, eventType, e["type"])
			}
		})
	}
}

func TestLoadValidate(t *testing.T) {
	ok := Load{Target: "http://x", Mode: ModeClosed, Clients: 1, Duration: time.Second, Events: 1, IDPrefix: "p"}
	require.NoError(t, ok.validate())
	for name, mut := range map[string]func(*Load){
		"mode":      func(l *Load) { l.Mode = "half" },
		"clients":   func(l *Load) { l.Clients = 0 },
		"events":    func(l *Load) { l.Events = 0 },
		"prefix":    func(l *Load) { l.IDPrefix = `a"b` },
		"duration":  func(l *Load) { l.Duration = 0 },
		"open rate": func(l *Load) { l.Mode = ModeOpen },
	} {
		l := ok
		mut(&l)
		require.Error(t, l.validate(), name)
	}
	open := Load{Mode: ModeOpen, Phases: []Phase{{10, time.Second}, {0, 2 * time.Second}}}
	require.Equal(t, 3*time.Second, open.Length())
}
