package worker_test

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/levee-dev/levee/internal/config"
	"github.com/levee-dev/levee/internal/event"
	"github.com/levee-dev/levee/internal/worker"
)

// kneeSink wraps a real sink and adds latency that grows with the number of
// concurrent writes past a knee, as a database does when more writers than
// it has cores compete: up to knee writes each take base; beyond, the delay
// grows in proportion and throughput stays flat.
type kneeSink struct {
	worker.Sink
	knee     int
	base     time.Duration
	inflight atomic.Int64
	peak     atomic.Int64
}

func (k *kneeSink) Write(ctx context.Context, evs []event.Event) (int, error) {
	n := k.inflight.Add(1)
	defer k.inflight.Add(-1)
	for p := k.peak.Load(); n > p && !k.peak.CompareAndSwap(p, n); p = k.peak.Load() {
	}
	delay := k.base * time.Duration(max(n, int64(k.knee))) / time.Duration(k.knee)
	select {
	case <-time.After(delay):
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	return k.Sink.Write(ctx, evs)
}

// With a sink whose latency grows past 2 concurrent writes, a worker that
// starts at 8 write slots settles near the knee, keeps the throughput, and
// never holds more events than its bound.
func TestAdaptiveLimitSettlesAtSinkKnee(t *testing.T) {
	e := newEnv(t, "postgres", func(c *config.Config) {
		c.Batch.MaxRows = 100
		c.Batch.Linger = 5 * time.Millisecond
		c.Worker.MaxInflightBatches = 8
		c.Backpressure.MaxLimit = 16
		c.Backpressure.BaselineWindow = 2 * time.Second
		c.Queue.Pack.MaxEvents = 100
	})
	srv := e.startIngest()
	const total = 60_000
	for i := 0; i < total; i += 1000 {
		status, _ := post(t, srv.URL, "application/json", bulk("k", i, 1000))
		require.Equal(t, 202, status)
	}
	ks := &kneeSink{Sink: e.sink, knee: 2, base: 20 * time.Millisecond}
	w := e.startWorker(ks)
	defer w.stop(t)

	var maxOutstanding float64
	var limits []float64
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		maxOutstanding = max(maxOutstanding, value(t, w, "levee_worker_outstanding_events", "", ""))
		limits = append(limits, value(t, w, "levee_limiter_limit", "limiter", "sink"))
		n, err := e.sink.Count(context.Background())
		require.NoError(t, err)
		if n == total {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	e.waitRows(total, time.Second)
	require.Greater(t, len(limits), 20, "the run is long enough to observe the limit")
	settled := limits[len(limits)/2:]
	var mean float64
	for _, l := range settled {
		mean += l
	}
	mean /= float64(len(settled))
	t.Logf("limit over time: %v", limits)
	t.Logf("mean limit in the second half %.1f, peak concurrent writes %d, max outstanding events %.0f",
		mean, ks.peak.Load(), maxOutstanding)
	require.LessOrEqual(t, mean, 5.0, "settles near the knee of 2, down from 8")
	require.GreaterOrEqual(t, mean, 1.5)
	// Outstanding events never exceed (limit + 1) × batch × 2 for the
	// highest limit used.
	require.LessOrEqual(t, maxOutstanding, (slices.Max(limits)+1)*100*2)
}
