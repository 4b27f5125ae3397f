package loadgen

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// hdrEps is the relative precision of 3 significant digits, with margin.
const hdrEps = 0.002

func TestRecorderPercentiles(t *testing.T) {
	t0 := time.Unix(1700000000, 0)
	uniform := func() []int64 {
		v := make([]int64, 20_000)
		for i := range v {
			v[i] = int64(i + 1)
		}
		return v
	}
	constant := func() []int64 {
		v := make([]int64, 1000)
		for i := range v {
			v[i] = 4200
		}
		return v
	}
	bimodal := func() []int64 {
		v := make([]int64, 0, 10_000)
		for i := range 10_000 {
			if i%10 == 0 {
				v = append(v, 200_000) // 10% at 200 ms
			} else {
				v = append(v, 1_000) // 90% at 1 ms
			}
		}
		return v
	}
	tests := []struct {
		name   string
		micros []int64
		want   Latency // ms
	}{
		{"uniform 1..20000 µs", uniform(), Latency{P50: 10, P95: 19, P99: 19.8, P999: 19.98, Max: 20, Mean: 10.0005}},
		{"constant 4.2 ms", constant(), Latency{P50: 4.2, P95: 4.2, P99: 4.2, P999: 4.2, Max: 4.2, Mean: 4.2}},
		{"bimodal 90% 1 ms, 10% 200 ms", bimodal(), Latency{P50: 1, P95: 200, P99: 200, P999: 200, Max: 200, Mean: 20.9}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := NewRecorder(t0)
			for _, us := range tc.micros {
				r.Done(Outcome{Intended: t0, End: t0.Add(time.Duration(us) * time.Microsecond), Status: 202, Events: 1})
			}
			got := r.Tally().Latency
			require.InEpsilon(t, tc.want.P50, got.P50, hdrEps, "p50")
			require.InEpsilon(t, tc.want.P95, got.P95, hdrEps, "p95")
			require.InEpsilon(t, tc.want.P99, got.P99, hdrEps, "p99")
			require.InEpsilon(t, tc.want.P999, got.P999, hdrEps, "p99.9")
			require.InEpsilon(t, tc.want.Max, got.Max, hdrEps, "max")
			require.InEpsilon(t, tc.want.Mean, got.Mean, hdrEps, "mean")
		})
	}
}

func TestRecorderTimelineAndStatus(t *testing.T) {
	t0 := time.Unix(1700000000, 0)
	r := NewRecorder(t0)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	r.Offered(at(0.1))
	r.Done(Outcome{Intended: at(0.1), End: at(0.2), Status: 202, Events: 10, Path: "queue"})
	r.Offered(at(0.3))
	r.Done(Outcome{Intended: at(0.3), End: at(0.4), Status: 503, Events: 10})
	r.Dropped(at(2.5)) // nothing in second 1: a gap
	r.Offered(at(2.6))
	r.Done(Outcome{Intended: at(2.6), End: at(2.7), ErrClass: "timeout", Events: 10})

	tl := r.Tally()
	require.Len(t, tl.Timeline, 3)
	require.Equal(t, Second{T: 1}, tl.Timeline[1])
	require.EqualValues(t, 2, tl.Timeline[0].Offered)
	require.EqualValues(t, 10, tl.Timeline[0].AcceptedEvents)
	require.EqualValues(t, 1, tl.Timeline[0].Errors)
	require.InEpsilon(t, 100, tl.Timeline[0].P99, 0.01)
	require.EqualValues(t, 1, tl.Timeline[2].Dropped)
	require.Equal(t, map[string]int64{"202": 1, "503": 1, "error:timeout": 1}, tl.Status)
	require.Equal(t, map[string]int64{"queue": 1}, tl.Paths)
	require.EqualValues(t, 3, tl.Offered)
	require.EqualValues(t, 1, tl.Dropped)
	require.EqualValues(t, 3, tl.Completed)
	require.EqualValues(t, 1, tl.Accepted)
	require.Equal(t, at(0.2), tl.LastAccepted)

	res := newResult(Load{Events: 10}, t0, 3*time.Second, tl, &IDSet{}, &IDSet{})
	require.InDelta(t, 2.0/3, res.ErrorRate, 1e-9)
	require.InDelta(t, 10.0/3, res.EventsPerSec, 1e-9)
	require.InDelta(t, 1.0/3, res.Status["503"].Rate, 1e-9)
}
