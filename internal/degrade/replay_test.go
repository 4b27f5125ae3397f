package degrade

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/levee-dev/levee/internal/backpressure"
	"github.com/levee-dev/levee/internal/event"
)

// fakeQueue records what the replayer publishes.
type fakeQueue struct {
	mu    sync.Mutex
	ids   map[string]int
	fail  atomic.Bool
	ready atomic.Bool
}

func (q *fakeQueue) Publish(_ context.Context, evs []event.Event) error {
	if q.fail.Load() {
		return fmt.Errorf("queue down")
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, e := range evs {
		q.ids[e.ID]++
	}
	return nil
}

func (q *fakeQueue) Ready() bool { return q.ready.Load() }

func (q *fakeQueue) count() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.ids)
}

func spoolRecord(from, n int) []byte {
	evs := make([]event.Event, n)
	ts := time.Unix(1_700_000_000, 0).UTC()
	for i := range evs {
		evs[i] = event.Event{ID: fmt.Sprintf("ev-%d", from+i), Type: "t", TS: ts, ReceivedAt: ts, Data: []byte(`{}`)}
	}
	return EncodeSpoolRecord(evs)
}

type replayRig struct {
	spool *Spool
	queue *fakeQueue
	gate  *backpressure.Limiter
	modes *Modes
	r     *Replayer
}

func newReplayRig(t *testing.T, gateLimit int, force string) *replayRig {
	t.Helper()
	reg := prometheus.NewRegistry()
	spool, _ := openRunning(t, opts(t.TempDir()))
	gate, err := backpressure.NewLimiter("admission", backpressure.Config{Algorithm: "gradient2", Adaptive: false,
		Static: gateLimit, Initial: gateLimit, Params: backpressure.Params{Min: 1, Max: gateLimit, Step: 1, Tolerance: 1.2, Smoothing: 0.2}}, reg)
	require.NoError(t, err)
	modes, err := NewModes(spool, ModeSettings{Force: force, NormalAfter: time.Second, CriticalAbove: 0.95, CriticalBelow: 0.8}, zaptest.NewLogger(t), reg)
	require.NoError(t, err)
	q := &fakeQueue{ids: map[string]int{}}
	q.ready.Store(true)
	r, err := NewReplayer(spool, q, gate, modes, ReplaySettings{Headroom: 0.25, BatchEvents: 5000, Timeout: time.Second}, zaptest.NewLogger(t), reg)
	require.NoError(t, err)
	return &replayRig{spool: spool, queue: q, gate: gate, modes: modes, r: r}
}

func (g *replayRig) run(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = g.r.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

// A replay batch is sized to the room the gate has: a gate far smaller
// than replay.batch_events (its limit sank while the queue was down) still
// drains the spool, and records bigger than the room pass when the gate is
// idle.
func TestReplayFitsTheGate(t *testing.T) {
	g := newReplayRig(t, 1000, "")
	for i := range 30 {
		require.NoError(t, g.spool.Append(context.Background(), spoolRecord(i*1000, 1000)))
	}
	g.run(t)
	require.Eventually(t, func() bool { return g.queue.count() == 30_000 }, 10*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool { n, _ := g.spool.Len(); return n == 0 }, 5*time.Second, 10*time.Millisecond)
}

// Live traffic first: while the gate is busy with live requests, the
// replayer waits; when they finish, it drains.
func TestReplayYieldsToLiveTraffic(t *testing.T) {
	g := newReplayRig(t, 10_000, "")
	live, ok := g.gate.TryAcquire(9_000) // live requests fill the gate
	require.True(t, ok)
	require.NoError(t, g.spool.Append(context.Background(), spoolRecord(0, 500)))
	g.run(t)
	time.Sleep(300 * time.Millisecond)
	require.Zero(t, g.queue.count(), "no replay while live traffic uses the gate")
	live.Release(backpressure.Success)
	require.Eventually(t, func() bool { return g.queue.count() == 500 }, 5*time.Second, 10*time.Millisecond)
}

// A failed publish keeps the records; they are replayed once the queue
// takes them, and an operator's forced degraded mode holds replay back.
func TestReplayRetriesAndObeysOverride(t *testing.T) {
	g := newReplayRig(t, 10_000, "degraded")
	require.NoError(t, g.spool.Append(context.Background(), spoolRecord(0, 100)))
	g.run(t)
	time.Sleep(300 * time.Millisecond)
	require.Zero(t, g.queue.count(), "forced degraded: spool only")
	g.queue.fail.Store(true)
	g.modes.Apply(ModeSettings{NormalAfter: time.Second, CriticalAbove: 0.95, CriticalBelow: 0.8})
	time.Sleep(300 * time.Millisecond)
	n, _ := g.spool.Len()
	require.EqualValues(t, 1, n, "a failed replay keeps the record")
	g.queue.fail.Store(false)
	require.Eventually(t, func() bool { return g.queue.count() == 100 }, 10*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool { n, _ := g.spool.Len(); return n == 0 }, 5*time.Second, 10*time.Millisecond)
}
