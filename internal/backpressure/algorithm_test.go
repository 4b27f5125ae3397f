package backpressure

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var (
	t0   = time.Unix(1_700_000_000, 0)
	base = 20 * time.Millisecond
)

func at(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }

func params() Params {
	return Params{Min: 1, Max: 64, Step: 1, Tolerance: 1.2, BaselineWindow: 5 * time.Second,
		Backoff: 0.9, RTTDeviation: 2.5, EWMAAlpha: 0.4, MinWindow: time.Millisecond,
		Smoothing: 0.2, LongRTT: 600}
}

var algorithms = map[string]func(initial int, p Params) Algorithm{
	"gradient2": func(i int, p Params) Algorithm { return NewGradient2(i, p) },
	"aimd":      func(i int, p Params) Algorithm { return NewAIMD(i, p) },
}

// Against a sink whose latency rises past a concurrency knee, the limit
// settles near the knee and the sink delivers at least 90% of its capacity.
func TestConvergesNearKnee(t *testing.T) {
	for name, mk := range algorithms {
		for _, knee := range []int{2, 4, 8, 16} {
			sink := &simSink{knee: knee, base: base}
			tr := simulate(mk(4, params()), sink, t0, 120*time.Second)
			_, _, mean := tr.window(at(60), at(120))
			throughput := float64(tr.completed(at(60), at(120))) / 60
			capacity := float64(knee) / base.Seconds()
			t.Logf("%s knee=%d: mean limit %.1f, throughput %.0f/s of %.0f/s", name, knee, mean, throughput, capacity)
			require.GreaterOrEqual(t, mean, 0.75*float64(knee), "%s knee=%d", name, knee)
			require.LessOrEqual(t, mean, 2*float64(knee)+2, "%s knee=%d", name, knee)
			require.GreaterOrEqual(t, throughput, 0.9*capacity, "%s knee=%d", name, knee)
		}
	}
}

// A moving-average reference follows the inflated latency under sustained
// saturation and lets the limit creep far past the knee: Netflix's Gradient2
// long RTT, and AIMD without the no-load bound. This is why Levee measures
// against a probed no-load RTT.
func TestMovingAverageReferenceCreeps(t *testing.T) {
	p := params()
	p.EWMA, p.Tolerance = true, 1.5
	tr := simulate(NewGradient2(4, p), &simSink{knee: 4, base: base}, t0, 120*time.Second)
	_, _, mean := tr.window(at(60), at(120))
	require.Greater(t, mean, 0.9*float64(p.Max), "gradient2 with EWMA")

	p = params()
	p.Tolerance = 1e9 // no no-load bound: Vector's rules alone
	tr = simulate(NewAIMD(4, p), &simSink{knee: 2, base: base}, t0, 120*time.Second)
	_, _, mean = tr.window(at(60), at(120))
	require.Greater(t, mean, 4*2.0, "aimd without the no-load bound")
}

// A latency step-up (the sink becomes 3× slower) makes the limit back off
// within a few RTTs; when the sink recovers, so does the limit.
func TestBacksOffOnLatencyStep(t *testing.T) {
	for name, mk := range algorithms {
		for _, knee := range []int{4, 16} {
			sink := &simSink{knee: knee, base: base, slowFrom: at(60), slowTo: at(90), slow: 3}
			tr := simulate(mk(4, params()), sink, t0, 120*time.Second)
			_, _, before := tr.window(at(40), at(60))
			// A few RTTs: at the new latency one RTT is about 60-80 ms.
			require.LessOrEqual(t, float64(tr.limitAt(at(60.5))), 0.9*before, "%s knee=%d backs off", name, knee)
			_, _, after := tr.window(at(100), at(120))
			require.GreaterOrEqual(t, after, 0.75*float64(knee), "%s knee=%d recovers", name, knee)
		}
	}
}

// A burst of errors makes the limit back off at once; it recovers after.
func TestBacksOffOnErrorBurst(t *testing.T) {
	for name, mk := range algorithms {
		for _, knee := range []int{4, 16} {
			sink := &simSink{knee: knee, base: base, failFrom: at(60), failTo: at(61)}
			tr := simulate(mk(4, params()), sink, t0, 90*time.Second)
			_, _, before := tr.window(at(40), at(60))
			require.Positive(t, tr.failed)
			require.LessOrEqual(t, float64(tr.limitAt(at(60.5))), 0.8*before, "%s knee=%d backs off", name, knee)
			_, _, after := tr.window(at(70), at(90))
			require.GreaterOrEqual(t, after, 0.75*float64(knee), "%s knee=%d recovers", name, knee)
		}
	}
}

// Whatever the samples, the limit stays within its bounds.
func TestStaysWithinBounds(t *testing.T) {
	p := params()
	p.Min, p.Max = 3, 10
	for name, mk := range algorithms {
		rng := rand.New(rand.NewPCG(1, 2))
		a := mk(100, p) // an initial limit out of bounds is clamped
		require.Equal(t, 10, a.Limit(), name)
		now := t0
		for range 100_000 {
			now = now.Add(time.Duration(rng.IntN(50)) * time.Millisecond)
			rtt := time.Duration(rng.ExpFloat64() * float64(base))
			if rng.IntN(20) == 0 {
				rtt *= 50
			}
			l := a.Sample(now, rtt, rng.IntN(20), rng.IntN(30) == 0)
			require.GreaterOrEqual(t, l, p.Min, name)
			require.LessOrEqual(t, l, p.Max, name)
		}
		p2 := p
		p2.Max = 5
		a.SetParams(p2)
		require.LessOrEqual(t, a.Limit(), 5, name)
	}
}

// Starting from a configured limit, not from 1: the first samples do not
// collapse it when the sink is healthy.
func TestStartsFromConfiguredLimit(t *testing.T) {
	for name, mk := range algorithms {
		a := mk(12, params())
		require.Equal(t, 12, a.Limit())
		tr := simulate(a, &simSink{knee: 16, base: base}, t0, 2*time.Second)
		// The first probe dips to a quarter for a moment; then the limit is
		// back where it started or above, not rebuilt from 1.
		_, _, mean := tr.window(t0, at(2))
		require.GreaterOrEqual(t, mean, 10.0, name)
		require.GreaterOrEqual(t, tr.limitAt(at(2)), 12, name)
	}
}
