package backpressure

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newTestLimiter(t *testing.T, adaptive bool, static int) (*Limiter, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	p := params()
	p.Min, p.Max = 1, 100
	l, err := NewLimiter("test", Config{Algorithm: "aimd", Adaptive: adaptive, Static: static, Initial: 4, Params: p}, reg)
	require.NoError(t, err)
	return l, reg
}

func TestStaticLimitIsEnforced(t *testing.T) {
	l, reg := newTestLimiter(t, false, 3)
	var toks []Token
	for range 3 {
		tok, ok := l.TryAcquire(1)
		require.True(t, ok)
		toks = append(toks, tok)
	}
	_, ok := l.TryAcquire(1)
	require.False(t, ok, "the fourth does not fit")
	require.Equal(t, 1.0, testutil.ToFloat64(l.m.rejections))
	toks[0].Release(Success)
	tok, ok := l.TryAcquire(1)
	require.True(t, ok)
	tok.Release(Success)
	for _, tk := range toks[1:] {
		tk.Release(Ignore)
	}
	require.Zero(t, l.Inflight())
	n, err := testutil.GatherAndCount(reg, "levee_limiter_limit", "levee_limiter_inflight")
	require.NoError(t, err)
	require.Equal(t, 2, n)
}

// Weighted acquisitions: a request bigger than the whole limit still passes
// when nothing else is in flight, so it cannot wait forever.
func TestWeightsAndOversize(t *testing.T) {
	l, _ := newTestLimiter(t, false, 10)
	a, ok := l.TryAcquire(7)
	require.True(t, ok)
	_, ok = l.TryAcquire(4)
	require.False(t, ok)
	b, ok := l.TryAcquire(3)
	require.True(t, ok)
	a.Release(Success)
	b.Release(Success)
	big, ok := l.TryAcquire(50)
	require.True(t, ok, "oversize passes alone")
	_, ok = l.TryAcquire(1)
	require.False(t, ok)
	big.Release(Success)
}

// Waiters are served in order, and a waiter whose context ends leaves the
// line without taking or leaking units.
func TestAcquireWaitsInOrderAndCancels(t *testing.T) {
	l, _ := newTestLimiter(t, false, 2)
	first, err := l.Acquire(context.Background(), 2)
	require.NoError(t, err)

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err = l.Acquire(ctx, 1)
	require.ErrorIs(t, err, context.DeadlineExceeded)

	var order []int
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Go(func() {
			tok, err := l.Acquire(context.Background(), 2)
			require.NoError(t, err)
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
			tok.Release(Success)
		})
		require.Eventually(t, func() bool { l.mu.Lock(); defer l.mu.Unlock(); return len(l.waiters) == i+1 },
			time.Second, time.Millisecond)
	}
	first.Release(Success)
	wg.Wait()
	require.Equal(t, []int{0, 1, 2}, order)
	require.Zero(t, l.Inflight())
}

// Under concurrent use the in-flight count never exceeds the limit.
func TestNeverExceedsLimitUnderContention(t *testing.T) {
	l, _ := newTestLimiter(t, false, 5)
	var cur, peak atomic.Int64
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			for range 200 {
				tok, err := l.Acquire(context.Background(), 1)
				require.NoError(t, err)
				n := cur.Add(1)
				for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
				}
				cur.Add(-1)
				tok.Release(Success)
			}
		})
	}
	wg.Wait()
	require.LessOrEqual(t, peak.Load(), int64(5))
	require.Zero(t, l.Inflight())
}

// Switching adaptation off falls back to the static limit at once, and
// back on it resumes from the adaptive limit; OnChange sees every move.
func TestConfigureSwitchesLive(t *testing.T) {
	l, _ := newTestLimiter(t, true, 9)
	var seen []int
	l.OnChange(func(n int) { seen = append(seen, n) })
	require.Equal(t, 4, l.Limit(), "adaptive starts from its initial limit")
	p := params()
	p.Min, p.Max = 1, 100
	c := Config{Algorithm: "aimd", Adaptive: false, Static: 9, Initial: 4, Params: p}
	l.Configure(c)
	require.Equal(t, 9, l.Limit())
	c.Adaptive = true
	l.Configure(c)
	require.Equal(t, 4, l.Limit())
	c.Params.Min = 6
	l.Configure(c)
	require.Equal(t, 6, l.Limit(), "new bounds clamp the limit")
	c.Algorithm = "gradient2"
	l.Configure(c)
	require.Equal(t, 6, l.Limit(), "a new algorithm starts from the limit in force")
	require.IsType(t, &Gradient2{}, l.alg)
	require.Equal(t, []int{9, 4, 6}, seen)
}

// Errors reported on release make an adaptive limit back off.
func TestDropsLowerTheLimit(t *testing.T) {
	l, _ := newTestLimiter(t, true, 1)
	now := t0
	l.now = func() time.Time { now = now.Add(10 * time.Millisecond); return now }
	before := l.Limit()
	for range 20 {
		tok, ok := l.TryAcquire(1)
		require.True(t, ok)
		tok.Release(Dropped)
	}
	require.Less(t, l.Limit(), before)
	require.Equal(t, 20.0, testutil.ToFloat64(l.m.drops))
}
