package backpressure

import (
	"container/heap"
	"math/rand/v2"
	"time"
)

// simSink is a simulated sink with a knee: up to knee concurrent operations
// each take base; beyond it, latency grows in proportion to concurrency, so
// throughput stays flat at knee/base and only the wait grows.
type simSink struct {
	knee int
	base time.Duration
	// failing, when set, makes operations started in [from, to) fail fast.
	failFrom, failTo time.Time
	// slow multiplies base in [slowFrom, slowTo) (slowTo zero: forever).
	slowFrom, slowTo time.Time
	slow             float64
	// jitter is a seeded source of ±5% noise on every latency, as real
	// sinks have; without it averages compare equal to the last bit.
	jitter *rand.Rand
}

func (s *simSink) latency(start time.Time, concurrency int) (time.Duration, bool) {
	if !start.Before(s.failFrom) && start.Before(s.failTo) {
		return time.Millisecond, true
	}
	base := float64(s.base)
	if !s.slowFrom.IsZero() && !start.Before(s.slowFrom) && (s.slowTo.IsZero() || start.Before(s.slowTo)) {
		base *= s.slow
	}
	f := max(1, float64(concurrency)/float64(s.knee))
	if s.jitter == nil {
		s.jitter = rand.New(rand.NewPCG(7, 11))
	}
	f *= 0.95 + 0.1*s.jitter.Float64()
	return time.Duration(base * f), false
}

// op is a running operation in the simulation.
type op struct {
	end      time.Time
	start    time.Time
	inflight int
	dropped  bool
}

type opHeap []op

func (h opHeap) Len() int           { return len(h) }
func (h opHeap) Less(i, j int) bool { return h[i].end.Before(h[j].end) }
func (h opHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *opHeap) Push(x any)        { *h = append(*h, x.(op)) }
func (h *opHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// trace is the limit over simulated time.
type trace struct {
	at     []time.Time
	limit  []int
	done   int // completed operations
	failed int
}

// limitAt returns the limit in force at t.
func (tr *trace) limitAt(t time.Time) int {
	l := tr.limit[0]
	for i, at := range tr.at {
		if at.After(t) {
			break
		}
		l = tr.limit[i]
	}
	return l
}

// completed returns the operations completed between from and to.
func (tr *trace) completed(from, to time.Time) int {
	n := 0
	for _, at := range tr.at {
		if !at.Before(from) && at.Before(to) {
			n++
		}
	}
	return n
}

// window returns the min, max and mean limit between from and to.
func (tr *trace) window(from, to time.Time) (lo, hi int, mean float64) {
	lo, hi = 1<<30, 0
	n := 0
	for i, at := range tr.at {
		if at.Before(from) || at.After(to) {
			continue
		}
		lo, hi = min(lo, tr.limit[i]), max(hi, tr.limit[i])
		mean += float64(tr.limit[i])
		n++
	}
	return lo, hi, mean / float64(max(n, 1))
}

// simulate drives alg with unlimited demand against sink for d: whenever a
// slot is free under the limit, an operation starts.
func simulate(alg Algorithm, sink *simSink, t0 time.Time, d time.Duration) *trace {
	tr := &trace{}
	now := t0
	var running opHeap
	startOps := func() {
		for running.Len() < alg.Limit() {
			c := running.Len() + 1
			lat, failed := sink.latency(now, c)
			heap.Push(&running, op{end: now.Add(lat), start: now, inflight: c, dropped: failed})
		}
	}
	startOps()
	for now.Before(t0.Add(d)) {
		o := heap.Pop(&running).(op)
		now = o.end
		alg.Sample(now, o.end.Sub(o.start), o.inflight, o.dropped)
		tr.done++
		if o.dropped {
			tr.failed++
		}
		tr.at = append(tr.at, now)
		tr.limit = append(tr.limit, alg.Limit())
		startOps()
	}
	return tr
}
