package batch_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/levee-dev/levee/internal/batch"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// wait bounds every blocking step of these tests.
const wait = 2 * time.Second

var t0 = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

// fakeClock is a Clock whose time moves only when the test calls Advance;
// the channels returned by After fire when Advance reaches their deadline.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []fakeWaiter
}

type fakeWaiter struct {
	at time.Time
	ch chan time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: t0} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.waiters = append(c.waiters, fakeWaiter{at: c.now.Add(d), ch: ch})
	return ch
}

// Advance moves the clock forward and fires every After that is now due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if w.at.After(c.now) {
			kept = append(kept, w)
			continue
		}
		w.ch <- c.now
	}
	c.waiters = kept
}

// Pending returns how many After channels have not fired yet.
func (c *fakeClock) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.waiters)
}

// HasTimer reports whether an After channel that fires at at is pending.
func (c *fakeClock) HasTimer(at time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, w := range c.waiters {
		if w.at.Equal(at) {
			return true
		}
	}
	return false
}

func TestPolicyTriggers(t *testing.T) {
	tests := []struct {
		name  string
		lim   batch.Limits
		sizes []int
		want  []batch.Reason // reason returned by each Add
	}{
		{"rows", batch.Limits{MaxRows: 3, MaxBytes: 1000}, []int{1, 1, 1}, []batch.Reason{"", "", batch.ReasonRows}},
		{"bytes", batch.Limits{MaxRows: 100, MaxBytes: 10}, []int{4, 4, 4}, []batch.Reason{"", "", batch.ReasonBytes}},
		{"bytes exactly at the limit", batch.Limits{MaxRows: 100, MaxBytes: 10}, []int{5, 5}, []batch.Reason{"", batch.ReasonBytes}},
		{"rows reached before bytes", batch.Limits{MaxRows: 2, MaxBytes: 100}, []int{10, 10}, []batch.Reason{"", batch.ReasonRows}},
		{"bytes reached before rows", batch.Limits{MaxRows: 5, MaxBytes: 15}, []int{10, 10}, []batch.Reason{"", batch.ReasonBytes}},
		{"both at once: rows wins", batch.Limits{MaxRows: 2, MaxBytes: 20}, []int{10, 10}, []batch.Reason{"", batch.ReasonRows}},
		{"single item larger than max bytes", batch.Limits{MaxRows: 100, MaxBytes: 10}, []int{50}, []batch.Reason{batch.ReasonBytes}},
		{"one row per batch", batch.Limits{MaxRows: 1, MaxBytes: 1000}, []int{1}, []batch.Reason{batch.ReasonRows}},
		{"zero-size items count rows only", batch.Limits{MaxRows: 3, MaxBytes: 1}, []int{0, 0, 0}, []batch.Reason{"", "", batch.ReasonRows}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := batch.NewPolicy[int](tt.lim)
			require.Equal(t, tt.lim, p.Limits())
			require.Equal(t, batch.Reason(""), p.Full())
			for i, size := range tt.sizes {
				got := p.Add(i, size, t0)
				require.Equal(t, tt.want[i], got, "add %d", i)
				require.Equal(t, got, p.Full(), "Full after add %d", i)
				require.Equal(t, i+1, p.Len())
			}
		})
	}
}

func TestPolicyUntilNext(t *testing.T) {
	const linger = 50 * time.Millisecond
	tests := []struct {
		name   string
		linger time.Duration
		adds   []time.Duration // offsets from t0 of each Add
		now    time.Duration   // offset from t0 of the UntilNext call
		want   time.Duration
	}{
		{"empty", linger, nil, 0, -1},
		{"empty with linger 0", 0, nil, 0, -1},
		{"just added", linger, []time.Duration{0}, 0, linger},
		{"after a partial wait", linger, []time.Duration{0}, 20 * time.Millisecond, 30 * time.Millisecond},
		{"exactly due", linger, []time.Duration{0}, linger, 0},
		{"past due", linger, []time.Duration{0}, time.Hour, 0},
		{"linger 0 is due at once", 0, []time.Duration{0}, 0, 0},
		{"later adds do not restart the wait", linger, []time.Duration{0, 30 * time.Millisecond}, 30 * time.Millisecond, 20 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := batch.NewPolicy[int](batch.Limits{MaxRows: 100, MaxBytes: 1000, Linger: tt.linger})
			for i, off := range tt.adds {
				require.Equal(t, batch.Reason(""), p.Add(i, 1, t0.Add(off)))
			}
			require.Equal(t, tt.want, p.UntilNext(t0.Add(tt.now)))
		})
	}
}

func TestPolicyTake(t *testing.T) {
	p := batch.NewPolicy[string](batch.Limits{MaxRows: 3, MaxBytes: 1000, Linger: time.Second})
	p.Add("a", 10, t0)
	p.Add("b", 20, t0.Add(time.Millisecond))
	require.Equal(t, batch.ReasonRows, p.Add("c", 30, t0.Add(2*time.Millisecond)))

	items, bytes := p.Take()
	require.Equal(t, []string{"a", "b", "c"}, items)
	require.Equal(t, 60, bytes)
	require.Zero(t, p.Len())
	require.Equal(t, batch.Reason(""), p.Full())
	require.Equal(t, time.Duration(-1), p.UntilNext(t0.Add(time.Hour)))

	items, bytes = p.Take()
	require.Empty(t, items)
	require.Zero(t, bytes)

	// The next batch's linger counts from its own first item, and it does
	// not write into the slice handed out by the first Take.
	p2 := batch.NewPolicy[string](batch.Limits{MaxRows: 3, MaxBytes: 1000, Linger: time.Second})
	p2.Add("a", 1, t0)
	taken, _ := p2.Take()
	later := t0.Add(time.Minute)
	require.Equal(t, batch.Reason(""), p2.Add("d", 1, later))
	require.Equal(t, time.Second, p2.UntilNext(later))
	require.Equal(t, []string{"a"}, taken)
}

func TestPolicySetLimits(t *testing.T) {
	tests := []struct {
		name  string
		lim   batch.Limits
		size  int
		after time.Duration
		want  batch.Reason
		until time.Duration
	}{
		{"lower max rows", batch.Limits{MaxRows: 4, MaxBytes: 1000, Linger: time.Second}, 1, 0, batch.ReasonRows, time.Second},
		{"lower max bytes", batch.Limits{MaxRows: 100, MaxBytes: 4, Linger: time.Second}, 1, 0, batch.ReasonBytes, time.Second},
		{"raise max rows", batch.Limits{MaxRows: 100, MaxBytes: 1000, Linger: time.Second}, 1, 0, "", time.Second},
		{"shorter linger", batch.Limits{MaxRows: 100, MaxBytes: 1000, Linger: 10 * time.Millisecond}, 1, 5 * time.Millisecond, "", 5 * time.Millisecond},
		{"linger 0", batch.Limits{MaxRows: 100, MaxBytes: 1000}, 1, 0, "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := batch.NewPolicy[int](batch.Limits{MaxRows: 10, MaxBytes: 1000, Linger: time.Second})
			for i := range 3 {
				require.Equal(t, batch.Reason(""), p.Add(i, 1, t0))
			}
			p.SetLimits(tt.lim)
			require.Equal(t, tt.lim, p.Limits())
			require.Equal(t, tt.want, p.Add(3, tt.size, t0))
			require.Equal(t, 4, p.Len())
			require.Equal(t, tt.until, p.UntilNext(t0.Add(tt.after)))
		})
	}
}

// harness runs a Batcher for one test and stops it at cleanup.
type harness struct {
	b      *batch.Batcher[int]
	clock  *fakeClock
	cancel context.CancelFunc
	done   chan error
}

func start(t *testing.T, lim batch.Limits) *harness {
	t.Helper()
	clk := newFakeClock()
	h := &harness{b: batch.New[int](lim, clk), clock: clk, done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.done <- h.b.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		deadline := time.After(wait)
	drain:
		for {
			select {
			case _, ok := <-h.b.Batches():
				if !ok {
					break drain
				}
			case <-deadline:
				t.Error("Batches not closed after Run's ctx ended")
				return
			}
		}
		select {
		case err := <-h.done:
			require.NoError(t, err)
		case <-deadline:
			t.Error("Run did not return")
		}
	})
	return h
}

// add calls Add in a goroutine (it may block until a batch is taken) and
// returns a channel with its result.
func (h *harness) add(ctx context.Context, item, size int) <-chan error {
	res := make(chan error, 1)
	go func() { res <- h.b.Add(ctx, item, size) }()
	return res
}

func (h *harness) recv(t *testing.T) batch.Batch[int] {
	t.Helper()
	select {
	case b, ok := <-h.b.Batches():
		require.True(t, ok, "Batches closed")
		return b
	case <-time.After(wait):
		t.Fatal("no batch within the deadline")
		return batch.Batch[int]{}
	}
}

// none checks that no batch is flushed for a while.
func (h *harness) none(t *testing.T) {
	t.Helper()
	select {
	case b := <-h.b.Batches():
		t.Fatalf("unexpected batch %+v", b)
	case <-time.After(50 * time.Millisecond):
	}
}

// waitTimer waits until Run has asked the clock for a timer firing at at.
// Run may also hold a stale timer (it starts a new one each time it is
// woken); the short settle lets it consume a wake-up that is still
// buffered, so that Advance never runs between Run's Now and its After.
func (h *harness) waitTimer(t *testing.T, at time.Time) {
	t.Helper()
	require.Eventually(t, func() bool { return h.clock.HasTimer(at) }, wait, time.Millisecond,
		"Run did not start a linger timer for %s", at)
	time.Sleep(10 * time.Millisecond)
}

func result(t *testing.T, res <-chan error) error {
	t.Helper()
	select {
	case err := <-res:
		return err
	case <-time.After(wait):
		t.Fatal("Add did not return within the deadline")
		return nil
	}
}

func TestBatcherLinger(t *testing.T) {
	const linger = 50 * time.Millisecond
	h := start(t, batch.Limits{MaxRows: 10, MaxBytes: 1000, Linger: linger})
	ctx := context.Background()

	require.NoError(t, h.b.Add(ctx, 1, 10))
	h.waitTimer(t, t0.Add(linger))
	require.NoError(t, h.b.Add(ctx, 2, 10))

	h.clock.Advance(linger - time.Nanosecond)
	h.none(t)

	h.clock.Advance(time.Nanosecond)
	got := h.recv(t)
	require.Equal(t, batch.ReasonLinger, got.Reason)
	require.Equal(t, []int{1, 2}, got.Items)
	require.Equal(t, 20, got.Bytes)

	// The next batch lingers from its own first item.
	require.NoError(t, h.b.Add(ctx, 3, 1))
	h.waitTimer(t, t0.Add(2*linger))
	h.clock.Advance(linger / 2)
	h.none(t)
	h.clock.Advance(linger / 2)
	got = h.recv(t)
	require.Equal(t, batch.ReasonLinger, got.Reason)
	require.Equal(t, []int{3}, got.Items)
}

func TestBatcherLingerZeroFlushesAtOnce(t *testing.T) {
	h := start(t, batch.Limits{MaxRows: 10, MaxBytes: 1000})
	require.NoError(t, h.b.Add(context.Background(), 7, 1))
	got := h.recv(t)
	require.Equal(t, batch.ReasonLinger, got.Reason)
	require.Equal(t, []int{7}, got.Items)
}

func TestBatcherSizeTriggers(t *testing.T) {
	tests := []struct {
		name   string
		lim    batch.Limits
		sizes  []int
		reason batch.Reason
		bytes  int
	}{
		{"rows", batch.Limits{MaxRows: 3, MaxBytes: 1000, Linger: time.Hour}, []int{1, 1, 1}, batch.ReasonRows, 3},
		{"bytes", batch.Limits{MaxRows: 100, MaxBytes: 25, Linger: time.Hour}, []int{10, 10, 10}, batch.ReasonBytes, 30},
		{"oversized item", batch.Limits{MaxRows: 100, MaxBytes: 25, Linger: time.Hour}, []int{100}, batch.ReasonBytes, 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := start(t, tt.lim)
			ctx := context.Background()
			last := len(tt.sizes) - 1
			for i, size := range tt.sizes[:last] {
				require.NoError(t, h.b.Add(ctx, i, size))
			}
			res := h.add(ctx, last, tt.sizes[last])
			got := h.recv(t)
			require.NoError(t, result(t, res))
			require.Equal(t, tt.reason, got.Reason)
			require.Equal(t, tt.bytes, got.Bytes)
			require.Len(t, got.Items, len(tt.sizes))
			for i, it := range got.Items {
				require.Equal(t, i, it)
			}
		})
	}
}

func TestBatcherSetLimitsLive(t *testing.T) {
	t.Run("lower max rows", func(t *testing.T) {
		h := start(t, batch.Limits{MaxRows: 10, MaxBytes: 1000, Linger: time.Hour})
		ctx := context.Background()
		for i := range 3 {
			require.NoError(t, h.b.Add(ctx, i, 1))
		}
		h.none(t)
		h.b.SetLimits(batch.Limits{MaxRows: 2, MaxBytes: 1000, Linger: time.Hour})
		res := h.add(ctx, 3, 1)
		got := h.recv(t)
		require.NoError(t, result(t, res))
		require.Equal(t, batch.ReasonRows, got.Reason)
		require.Equal(t, []int{0, 1, 2, 3}, got.Items)
	})
	t.Run("shorter linger wakes the waiting Run", func(t *testing.T) {
		h := start(t, batch.Limits{MaxRows: 10, MaxBytes: 1000, Linger: time.Hour})
		require.NoError(t, h.b.Add(context.Background(), 1, 1))
		h.waitTimer(t, t0.Add(time.Hour))
		h.b.SetLimits(batch.Limits{MaxRows: 10, MaxBytes: 1000, Linger: 10 * time.Millisecond})
		h.waitTimer(t, t0.Add(10*time.Millisecond)) // the hour timer is abandoned
		h.clock.Advance(10 * time.Millisecond)
		got := h.recv(t)
		require.Equal(t, batch.ReasonLinger, got.Reason)
		require.Equal(t, []int{1}, got.Items)
	})
}

// TestBatcherBlockedAddKeepsItems: with nobody reading Batches, an Add
// that fills the batch blocks; when its ctx ends it returns the ctx error
// and the items go out with the shutdown flush.
func TestBatcherBlockedAddKeepsItems(t *testing.T) {
	tests := []struct {
		name string
		ctx  func() (context.Context, context.CancelFunc) // the cancel func ends the ctx at once
		want error
	}{
		{"cancelled", func() (context.Context, context.CancelFunc) { return context.WithCancel(context.Background()) }, context.Canceled},
		{"deadline", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 100*time.Millisecond)
		}, context.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := start(t, batch.Limits{MaxRows: 2, MaxBytes: 1000, Linger: time.Hour})
			require.NoError(t, h.b.Add(context.Background(), 1, 1))

			ctx, cancel := tt.ctx()
			defer cancel()
			res := h.add(ctx, 2, 1)
			select {
			case err := <-res:
				t.Fatalf("Add returned %v while nobody reads Batches", err)
			case <-time.After(50 * time.Millisecond):
			}
			if tt.want == context.Canceled {
				cancel()
			}
			require.ErrorIs(t, result(t, res), tt.want)

			// A later item joins the put-back ones, behind them.
			h.b.SetLimits(batch.Limits{MaxRows: 10, MaxBytes: 1000, Linger: time.Hour})
			require.NoError(t, h.b.Add(context.Background(), 3, 1))

			h.cancel()
			got := h.recv(t)
			require.Equal(t, batch.Batch[int]{Items: []int{1, 2, 3}, Bytes: 3, Reason: batch.ReasonShutdown}, got,
				"items of the cancelled Add were lost or duplicated")
		})
	}
}

// TestBatcherPutBackLingers: items put back by a cancelled Add form a
// non-empty batch, so the linger trigger must flush them once a consumer
// reads again, without waiting for another Add or for shutdown.
func TestBatcherPutBackLingers(t *testing.T) {
	const linger = 50 * time.Millisecond
	h := start(t, batch.Limits{MaxRows: 1, MaxBytes: 1000, Linger: linger})

	ctx, cancel := context.WithCancel(context.Background())
	res := h.add(ctx, 1, 1) // full at once: blocks, nobody reads
	select {
	case err := <-res:
		t.Fatalf("Add returned %v while nobody reads Batches", err)
	case <-time.After(50 * time.Millisecond):
	}
	cancel()
	require.ErrorIs(t, result(t, res), context.Canceled)

	h.clock.Advance(linger)
	h.clock.Advance(linger)
	select {
	case got := <-h.b.Batches():
		require.Equal(t, []int{1}, got.Items)
	case <-time.After(500 * time.Millisecond):
		t.Errorf("put-back batch not flushed by linger: Run is not woken by putBack and has no timer (pending timers: %d)", h.clock.Pending())
	}
}

func TestBatcherShutdown(t *testing.T) {
	t.Run("remaining items", func(t *testing.T) {
		h := start(t, batch.Limits{MaxRows: 10, MaxBytes: 1000, Linger: time.Hour})
		ctx := context.Background()
		require.NoError(t, h.b.Add(ctx, 1, 5))
		require.NoError(t, h.b.Add(ctx, 2, 6))
		h.cancel()
		got := h.recv(t)
		require.Equal(t, batch.Batch[int]{Items: []int{1, 2}, Bytes: 11, Reason: batch.ReasonShutdown}, got)
		select {
		case _, ok := <-h.b.Batches():
			require.False(t, ok, "Batches not closed after the shutdown flush")
		case <-time.After(wait):
			t.Fatal("Batches not closed")
		}
		select {
		case err := <-h.done:
			require.NoError(t, err)
			h.done <- nil // for the cleanup
		case <-time.After(wait):
			t.Fatal("Run did not return")
		}
	})
	t.Run("empty batch", func(t *testing.T) {
		h := start(t, batch.Limits{MaxRows: 10, MaxBytes: 1000, Linger: time.Hour})
		h.cancel()
		select {
		case b, ok := <-h.b.Batches():
			require.False(t, ok, "unexpected batch %+v", b)
		case <-time.After(wait):
			t.Fatal("Batches not closed")
		}
	})
	t.Run("pending linger flush", func(t *testing.T) {
		// Run is blocked handing over a linger batch when its ctx ends: the
		// batch is delivered exactly once, as linger or as shutdown.
		h := start(t, batch.Limits{MaxRows: 10, MaxBytes: 1000, Linger: time.Millisecond})
		require.NoError(t, h.b.Add(context.Background(), 1, 1))
		h.waitTimer(t, t0.Add(time.Millisecond))
		h.clock.Advance(time.Millisecond)
		time.Sleep(20 * time.Millisecond)
		h.cancel()
		var items []int
		for b := range h.b.Batches() {
			require.Contains(t, []batch.Reason{batch.ReasonLinger, batch.ReasonShutdown}, b.Reason)
			items = append(items, b.Items...)
		}
		require.Equal(t, []int{1}, items)
	})
}

func TestBatcherConcurrent(t *testing.T) {
	const producers, total = 8, 10000
	b := batch.New[int](batch.Limits{MaxRows: 64, MaxBytes: 4096, Linger: time.Millisecond}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runDone := make(chan error, 1)
	go func() { runDone <- b.Run(ctx) }()

	seen := make([]int, total)
	reasons := map[batch.Reason]int{}
	consumed := make(chan struct{})
	go func() {
		defer close(consumed)
		for bt := range b.Batches() {
			if len(bt.Items) == 0 || len(bt.Items) > 64 || bt.Bytes != len(bt.Items)*3 {
				t.Errorf("bad batch: %d items, %d bytes, reason %s", len(bt.Items), bt.Bytes, bt.Reason)
			}
			reasons[bt.Reason]++
			for _, it := range bt.Items {
				seen[it]++
			}
		}
	}()

	var wg sync.WaitGroup
	for p := range producers {
		wg.Go(func() {
			for i := p; i < total; i += producers {
				if err := b.Add(context.Background(), i, 3); err != nil {
					t.Errorf("add %d: %v", i, err)
					return
				}
			}
		})
	}
	addsDone := make(chan struct{})
	go func() { wg.Wait(); close(addsDone) }()
	select {
	case <-addsDone:
	case <-time.After(20 * time.Second):
		t.Fatal("producers did not finish")
	}
	cancel()
	select {
	case <-consumed:
	case <-time.After(wait):
		t.Fatal("Batches not closed")
	}
	require.NoError(t, <-runDone)
	for i, n := range seen {
		require.Equal(t, 1, n, "item %d seen %d times", i, n)
	}
	require.Positive(t, reasons[batch.ReasonRows])
	t.Logf("batches by reason: %v", reasons)
}
