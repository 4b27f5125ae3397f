package backpressure

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Outcome is how an operation ended, as the limiter should count it.
type Outcome int

// Outcomes.
const (
	Success Outcome = iota // done; its latency is a sample
	Dropped                // failed from overload or error: back off
	Ignore                 // cancelled or irrelevant: free the slot, no sample
)

// Limiter bounds the work in flight to a limit that an Algorithm adapts, or
// to a static limit when adaptation is off. Work is weighted: acquiring n
// units takes n of the limit. Waiters are served in order; a request for
// more than the whole limit is let through when nothing else is in flight,
// so that it cannot wait forever.
type Limiter struct {
	name  string
	now   func() time.Time
	m     *limiterMetrics
	apply func(limit int) // called with the new limit when it changes

	mu       sync.Mutex
	cfg      Config
	alg      Algorithm
	inflight int
	waiters  []*waiter
}

// Config selects and tunes a limiter's behaviour.
type Config struct {
	Algorithm string // "gradient2" or "aimd"
	Adaptive  bool   // false: enforce Static
	Static    int    // the limit when adaptation is off
	Initial   int    // where the adaptive limit starts
	Params
}

// NewAlgorithm returns the algorithm named by c, starting at initial.
func NewAlgorithm(c Config, initial int) Algorithm {
	if c.Algorithm == "aimd" {
		return NewAIMD(initial, c.Params)
	}
	return NewGradient2(initial, c.Params)
}

type waiter struct {
	n     int
	ready chan struct{}
}

// Token is one acquisition; release it exactly once.
type Token struct {
	l        *Limiter
	n        int
	start    time.Time
	inflight int
}

// NewLimiter returns a limiter named name (the metrics' limiter label).
func NewLimiter(name string, c Config, reg prometheus.Registerer) (*Limiter, error) {
	m, err := newLimiterMetrics(name, reg)
	if err != nil {
		return nil, err
	}
	c.Static = max(c.Static, 1)
	l := &Limiter{name: name, now: time.Now, m: m, cfg: c, alg: NewAlgorithm(c, c.Initial)}
	l.m.limit.Set(float64(l.limit()))
	return l, nil
}

// OnChange registers fn, called (outside the limiter's lock) with the new
// limit whenever it moves. Set it before use.
func (l *Limiter) OnChange(fn func(limit int)) { l.apply = fn }

// limit returns the limit in force. Called with mu held, or before use.
func (l *Limiter) limit() int {
	if l.cfg.Adaptive {
		return l.alg.Limit()
	}
	return l.cfg.Static
}

// Limit returns the limit in force.
func (l *Limiter) Limit() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.limit()
}

// Headroom returns the units that fit under the limit now.
func (l *Limiter) Headroom() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.limit() - l.inflight
}

// Inflight returns the units in flight.
func (l *Limiter) Inflight() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.inflight
}

// Configure applies a new configuration live: adaptation on or off, the
// static limit, the parameters, even the algorithm. The adaptive limit
// continues from where it was (clamped to the new bounds), never from the
// configured initial value: a restart from scratch is what a reload avoids.
func (l *Limiter) Configure(c Config) {
	l.mu.Lock()
	before := l.limit()
	c.Static = max(c.Static, 1)
	if c.Algorithm != l.cfg.Algorithm {
		l.alg = NewAlgorithm(c, l.alg.Limit())
	} else {
		l.alg.SetParams(c.Params)
	}
	l.cfg = c
	limit := l.limit()
	woken := l.wakeLocked()
	l.mu.Unlock()
	if limit != before {
		l.changed(limit)
	}
	for _, w := range woken {
		close(w.ready)
	}
}

// TryAcquire takes n units if they fit now.
func (l *Limiter) TryAcquire(n int) (Token, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.waiters) > 0 || !l.fits(n) {
		l.m.rejections.Inc()
		return Token{}, false
	}
	return l.takeLocked(n), true
}

// Acquire takes n units, waiting in line until they fit or ctx ends.
func (l *Limiter) Acquire(ctx context.Context, n int) (Token, error) {
	l.mu.Lock()
	if len(l.waiters) == 0 && l.fits(n) {
		t := l.takeLocked(n)
		l.mu.Unlock()
		return t, nil
	}
	w := &waiter{n: n, ready: make(chan struct{})}
	l.waiters = append(l.waiters, w)
	l.m.waiting.Inc()
	l.mu.Unlock()
	select {
	case <-w.ready:
		l.m.waiting.Dec()
		l.mu.Lock()
		t := Token{l: l, n: n, start: l.now(), inflight: l.inflight}
		l.mu.Unlock()
		return t, nil
	case <-ctx.Done():
		l.mu.Lock()
		for i, x := range l.waiters {
			if x == w {
				l.waiters = append(l.waiters[:i], l.waiters[i+1:]...)
				break
			}
		}
		granted := false
		select {
		case <-w.ready: // granted while we gave up: give the units back
			granted = true
		default:
		}
		var woken []*waiter
		if granted {
			l.inflight -= n
			l.m.inflight.Set(float64(l.inflight))
		}
		woken = l.wakeLocked()
		l.mu.Unlock()
		for _, x := range woken {
			close(x.ready)
		}
		l.m.waiting.Dec()
		l.m.rejections.Inc()
		return Token{}, fmt.Errorf("backpressure: %s: %w", l.name, ctx.Err())
	}
}

func (l *Limiter) fits(n int) bool {
	return l.inflight == 0 || l.inflight+n <= l.limit()
}

func (l *Limiter) takeLocked(n int) Token {
	l.inflight += n
	l.m.inflight.Set(float64(l.inflight))
	return Token{l: l, n: n, start: l.now(), inflight: l.inflight}
}

// wakeLocked grants the waiters at the head of the line that now fit and
// returns them; the caller closes their channels after unlocking.
func (l *Limiter) wakeLocked() []*waiter {
	var woken []*waiter
	for len(l.waiters) > 0 && l.fits(l.waiters[0].n) {
		w := l.waiters[0]
		l.waiters = l.waiters[1:]
		l.inflight += w.n
		woken = append(woken, w)
	}
	l.m.inflight.Set(float64(l.inflight))
	return woken
}

// Release frees the token's units and feeds its latency (since Acquire)
// and outcome to the algorithm.
func (t Token) Release(o Outcome) {
	if t.l == nil {
		return
	}
	t.l.release(t, t.l.now().Sub(t.start), o)
}

// ReleaseRTT is Release with a latency measured by the caller.
func (t Token) ReleaseRTT(rtt time.Duration, o Outcome) {
	if t.l == nil {
		return
	}
	t.l.release(t, rtt, o)
}

func (l *Limiter) release(t Token, rtt time.Duration, o Outcome) {
	l.mu.Lock()
	l.inflight -= t.n
	before := l.limit()
	if o != Ignore {
		l.alg.Sample(l.now(), rtt, t.inflight, o == Dropped)
		if o == Dropped {
			l.m.drops.Inc()
		}
	}
	after := l.limit()
	short, long := l.alg.RTT()
	woken := l.wakeLocked()
	l.mu.Unlock()
	for _, w := range woken {
		close(w.ready)
	}
	l.m.rtt.WithLabelValues("short").Set(short.Seconds())
	l.m.rtt.WithLabelValues("long").Set(long.Seconds())
	if after != before {
		l.changed(after)
	}
}

func (l *Limiter) changed(limit int) {
	l.m.limit.Set(float64(limit))
	if l.apply != nil {
		l.apply(limit)
	}
}

type limiterMetrics struct {
	limit, inflight, waiting prometheus.Gauge
	rtt                      *prometheus.GaugeVec
	rejections, drops        prometheus.Counter
}

func newLimiterMetrics(name string, reg prometheus.Registerer) (*limiterMetrics, error) {
	labels := prometheus.Labels{"limiter": name}
	m := &limiterMetrics{
		limit: prometheus.NewGauge(prometheus.GaugeOpts{Name: "levee_limiter_limit", ConstLabels: labels,
			Help: "Current concurrency limit (sink: concurrent writes; admission: events awaiting PubAck)."}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{Name: "levee_limiter_inflight", ConstLabels: labels,
			Help: "Units in flight under the limiter."}),
		waiting: prometheus.NewGauge(prometheus.GaugeOpts{Name: "levee_limiter_waiting", ConstLabels: labels,
			Help: "Callers waiting for room under the limiter."}),
		rtt: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "levee_limiter_rtt_seconds", ConstLabels: labels,
			Help: "The limiter's RTT estimates: short (latest) and long (moving average)."}, []string{"window"}),
		rejections: prometheus.NewCounter(prometheus.CounterOpts{Name: "levee_limiter_rejections_total", ConstLabels: labels,
			Help: "Acquisitions refused because the limit was reached (or the wait was abandoned)."}),
		drops: prometheus.NewCounter(prometheus.CounterOpts{Name: "levee_limiter_drops_total", ConstLabels: labels,
			Help: "Operations that ended in an error or overload, each a signal to back off."}),
	}
	for _, c := range []prometheus.Collector{m.limit, m.inflight, m.waiting, m.rtt, m.rejections, m.drops} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("backpressure: register metrics: %w", err)
		}
	}
	m.rtt.WithLabelValues("short")
	m.rtt.WithLabelValues("long")
	return m, nil
}
