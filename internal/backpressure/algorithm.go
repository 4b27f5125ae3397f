// Package backpressure holds Levee's adaptive concurrency limiters: limit
// algorithms (AIMD, Gradient2) that move a concurrency limit from the latency
// and outcome of finished work, and the Limiter that enforces it.
package backpressure

import (
	"math"
	"time"
)

// Params configures a limit algorithm. Min, Max and Step are in the
// limiter's unit (sink writes, or events awaiting a PubAck).
type Params struct {
	Min, Max int
	// Step is AIMD's additive increase per RTT and Gradient2's queue
	// allowance (how far above the estimated capacity the limit may probe).
	Step float64
	// Tolerance is the RTT growth over the no-load RTT that is accepted:
	// AIMD stops growing above it, Gradient2 shrinks above it.
	Tolerance float64
	// BaselineWindow is how old the no-load RTT may get before a probe
	// re-measures it (0 = never re-measure).
	BaselineWindow time.Duration

	// AIMD
	Backoff      float64 // multiplicative decrease, e.g. 0.9
	RTTDeviation float64 // back off when RTT > mean + RTTDeviation·deviation
	EWMAAlpha    float64 // weight of a new window in the RTT moving average
	MinWindow    time.Duration

	// Gradient2
	Smoothing float64 // weight of a new limit estimate, e.g. 0.2
	EWMA      bool    // use Netflix's moving-average long RTT instead of the no-load RTT
	LongRTT   int     // with EWMA: samples in the average, e.g. 600
}

// Algorithm moves a limit from samples of finished work. Implementations
// are plain values, not safe for concurrent use; Limiter serialises them.
type Algorithm interface {
	// Sample records one operation that took rtt, started when inflight
	// operations (itself included) were running, and failed if dropped.
	// It returns the new limit.
	Sample(now time.Time, rtt time.Duration, inflight int, dropped bool) int
	// Limit returns the current limit.
	Limit() int
	// SetParams changes the parameters, keeping the current limit (clamped).
	SetParams(p Params)
	// RTT returns the algorithm's short- and long-term RTT estimates.
	RTT() (short, long time.Duration)
}

func clamp(v float64, p Params) float64 {
	return math.Max(float64(p.Min), math.Min(float64(p.Max), v))
}

func secs(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// baseline estimates the no-load RTT: the lowest mean of a few consecutive
// samples, re-measured when it is older than the window. Means of a few
// samples, not single samples: one unusually fast write would otherwise set
// a floor that ordinary writes never meet, and the limit would shrink below
// the sink's capacity. Under sustained saturation every sample is inflated
// by queueing, so a moving average would follow the inflation and let a
// limit creep up whatever the sink's capacity (the simulator in the tests
// shows it). To re-measure, the limit is cut to a quarter for a moment (a
// probe, as BBR's ProbeRTT does), until enough low-concurrency samples came
// back or four no-load RTTs passed; then it is restored.
type baseline struct {
	rtt float64 // seconds; 0 until the first window
	at  time.Time

	sum     float64 // the current window of samples
	n       int
	windows int  // windows completed
	probed  bool // a probe has run

	probing    bool
	probeLimit float64
	saved      float64
	probeSum   float64
	probeN     int
	probeStart time.Time
}

// baselineSamples is the size of the windows whose means are compared.
const baselineSamples = 5

// observe feeds one successful sample. It reports true while a probe is
// under way, during which *limit is held low and the algorithm must not act.
func (b *baseline) observe(now time.Time, rtt float64, inflight int, limit *float64, p Params) bool {
	if b.probing {
		if float64(inflight) <= b.probeLimit {
			b.probeSum += rtt
			b.probeN++
		}
		if b.probeN >= max(int(b.probeLimit), baselineSamples) || now.Sub(b.probeStart).Seconds() > 4*b.rtt+0.1 {
			if b.probeN > 0 {
				b.rtt = b.probeSum / float64(b.probeN)
			}
			b.at, b.probing, *limit = now, false, b.saved
			b.sum, b.n = 0, 0
		}
		return b.probing
	}
	b.sum += rtt
	b.n++
	if b.n >= baselineSamples {
		b.windows++
		mean := b.sum / float64(b.n)
		if b.rtt == 0 || mean <= b.rtt {
			b.rtt = mean
		}
		if mean <= b.rtt*1.05 { // seen again (within noise): still the no-load RTT
			b.at = now
		}
		b.sum, b.n = 0, 0
	}
	if b.rtt == 0 {
		b.rtt, b.at = rtt, now // until the first window completes
	}
	// The first samples may all come from a busy sink (the configured
	// initial limit can be past the knee), so the first probe runs as soon
	// as two windows are in; later ones when the no-load RTT gets old.
	first := !b.probed && b.windows >= 2 && *limit >= 4*float64(p.Min)
	if p.BaselineWindow > 0 && (first || now.Sub(b.at) > p.BaselineWindow) {
		b.probed = true
		b.probing, b.saved, b.probeStart = true, *limit, now
		b.probeLimit = math.Max(float64(p.Min), math.Floor(*limit/4))
		b.probeSum, b.probeN = 0, 0
		*limit = b.probeLimit
		return true
	}
	return false
}

// AIMD is additive-increase / multiplicative-decrease in the manner of
// Vector's adaptive request concurrency. Time is cut in windows of about
// one mean RTT. At the end of a window the limit grows by Step only if the
// limit was actually reached during the window and the window's RTT was no
// worse than its moving average (nor above Tolerance × the no-load RTT); it
// shrinks by Backoff if the window's RTT exceeded mean + RTTDeviation ×
// deviation. An error (drop) shrinks it at once, at most once per window,
// so a burst of errors is one decrease per RTT. Failed operations never
// enter the RTT statistics: a fast failure would make the sink look faster.
//
// The no-load bound is Levee's addition: with Vector's rules alone, under
// sustained saturation the average follows the inflated latency, half the
// windows qualify for growth, and the limit creeps far past the knee.
type AIMD struct {
	p         Params
	limit     float64
	mean, dev float64 // EWMA of window RTTs (seconds) and of their deviation
	warm      bool
	base      baseline

	start   time.Time
	sum     float64
	n       int
	reached bool
	cut     bool
}

// NewAIMD returns an AIMD algorithm starting at initial.
func NewAIMD(initial int, p Params) *AIMD {
	return &AIMD{p: p, limit: clamp(float64(initial), p)}
}

// Limit returns the current limit.
func (a *AIMD) Limit() int { return int(a.limit) }

// SetParams changes the parameters and clamps the limit into the new bounds.
func (a *AIMD) SetParams(p Params) { a.p = p; a.limit = clamp(a.limit, p) }

// RTT returns the moving average and the no-load RTT.
func (a *AIMD) RTT() (time.Duration, time.Duration) { return secs(a.mean), secs(a.base.rtt) }

// Sample records one finished operation.
func (a *AIMD) Sample(now time.Time, rtt time.Duration, inflight int, dropped bool) int {
	if a.start.IsZero() {
		a.start = now
	}
	if dropped {
		if !a.cut {
			a.limit = clamp(a.limit*a.p.Backoff, a.p)
			a.cut = true
		}
	} else if !a.base.observe(now, rtt.Seconds(), inflight, &a.limit, a.p) {
		a.n++
		a.sum += rtt.Seconds()
		if inflight >= int(a.limit) {
			a.reached = true
		}
	}
	if now.Sub(a.start).Seconds() < math.Max(a.mean, a.p.MinWindow.Seconds()) {
		return int(a.limit)
	}
	if a.n > 0 {
		a.endWindow(a.sum / float64(a.n))
	}
	a.start, a.n, a.sum, a.reached, a.cut = now, 0, 0, false, false
	return int(a.limit)
}

// endWindow applies the window's decision and updates the RTT average.
func (a *AIMD) endWindow(cur float64) {
	switch {
	case a.cut:
	case a.warm && cur > a.mean+a.p.RTTDeviation*a.dev:
		a.limit = clamp(a.limit*a.p.Backoff, a.p)
	case a.reached && (!a.warm || cur <= a.mean) && cur <= a.p.Tolerance*a.base.rtt:
		a.limit = clamp(a.limit+a.p.Step, a.p)
	}
	if a.warm {
		a.dev = (1-a.p.EWMAAlpha)*a.dev + a.p.EWMAAlpha*math.Abs(cur-a.mean)
		a.mean = (1-a.p.EWMAAlpha)*a.mean + a.p.EWMAAlpha*cur
	} else {
		a.mean, a.dev, a.warm = cur, cur/4, true
	}
}

// Gradient2 applies the update rule of Netflix concurrency-limits'
// Gradient2: gradient = clamp(Tolerance·longRTT/shortRTT, 0.5, 1),
// newLimit = limit·gradient + Step, smoothed by Smoothing. Latency above
// the tolerated long-term level shrinks the limit (at most halving it per
// sample); steady latency lets it probe upwards by Step. A drop counts as
// gradient 0.5. Samples taken while less than half the limit was in use say
// nothing about capacity and leave the limit alone.
//
// The long RTT is where Levee departs: Netflix keeps an exponential average
// of all samples, which under sustained saturation follows the inflated
// latency and lets the limit creep up to Max; here it is the probed no-load
// RTT (see baseline). Params.EWMA selects Netflix's average, for comparison.
type Gradient2 struct {
	p       Params
	limit   float64
	short   float64 // seconds
	long    float64 // with EWMA; otherwise base.rtt is the long RTT
	samples int
	base    baseline
}

// NewGradient2 returns a Gradient2 algorithm starting at initial.
func NewGradient2(initial int, p Params) *Gradient2 {
	return &Gradient2{p: p, limit: clamp(float64(initial), p)}
}

// Limit returns the current limit.
func (g *Gradient2) Limit() int { return int(g.limit) }

// SetParams changes the parameters and clamps the limit into the new bounds.
func (g *Gradient2) SetParams(p Params) { g.p = p; g.limit = clamp(g.limit, p) }

// RTT returns the last sample's RTT and the long RTT.
func (g *Gradient2) RTT() (time.Duration, time.Duration) {
	if g.p.EWMA {
		return secs(g.short), secs(g.long)
	}
	return secs(g.short), secs(g.base.rtt)
}

// Sample records one finished operation.
func (g *Gradient2) Sample(now time.Time, rtt time.Duration, inflight int, dropped bool) int {
	if dropped {
		g.step(0.5)
		return int(g.limit)
	}
	short := math.Max(rtt.Seconds(), 1e-6)
	g.short = short
	long := g.long
	if g.p.EWMA {
		g.updateEWMA(short)
		long = g.long
	} else {
		if g.base.observe(now, short, inflight, &g.limit, g.p) {
			return int(g.limit)
		}
		long = g.base.rtt
	}
	if float64(inflight) < g.limit/2 {
		return int(g.limit)
	}
	g.step(math.Max(0.5, math.Min(1, g.p.Tolerance*long/short)))
	return int(g.limit)
}

func (g *Gradient2) step(gradient float64) {
	next := g.limit*gradient + g.p.Step
	g.limit = clamp(g.limit*(1-g.p.Smoothing)+next*g.p.Smoothing, g.p)
}

// updateEWMA is Netflix's long RTT: a plain mean over the first LongRTT
// samples, then an exponential average over that many, decayed when it
// has drifted far above the short RTT.
func (g *Gradient2) updateEWMA(short float64) {
	g.samples++
	n := float64(max(g.p.LongRTT, 1))
	if float64(g.samples) < n {
		g.long += (short - g.long) / float64(g.samples)
	} else {
		g.long += (short - g.long) * 2 / (n + 1)
	}
	if g.long/short > 2 {
		g.long *= 0.95
	}
}
