package loadgen

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestRates(t *testing.T) {
	t0 := time.Unix(1700000000, 0)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	tests := []struct {
		name string
		in   []Point
		want []float64 // per-second rates
		secs []float64
	}{
		{"regular", []Point{{at(0), 0}, {at(1), 100}, {at(2), 300}}, []float64{100, 200}, []float64{1, 1}},
		{"gap of two missed scrapes is averaged, not a spike", []Point{{at(0), 0}, {at(1), 100}, {at(4), 400}}, []float64{100, 100}, []float64{1, 3}},
		{"irregular intervals", []Point{{at(0), 0}, {at(0.5), 50}, {at(2), 200}}, []float64{100, 100}, []float64{0.5, 1.5}},
		{"counter reset counts the value after it", []Point{{at(0), 500}, {at(1), 600}, {at(2), 40}}, []float64{100, 40}, []float64{1, 1}},
		{"duplicate timestamp skipped", []Point{{at(0), 0}, {at(0), 10}, {at(1), 110}}, []float64{100}, []float64{1}},
		{"single point has no rate", []Point{{at(0), 5}}, nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rs := Rates(tc.in)
			require.Len(t, rs, len(tc.want))
			for i := range rs {
				require.InDelta(t, tc.want[i], rs[i].PerSec, 1e-9)
				require.InDelta(t, tc.secs[i], rs[i].Seconds, 1e-9)
			}
		})
	}
}

func TestMeanRateIsTimeWeighted(t *testing.T) {
	t0 := time.Unix(1700000000, 0)
	rs := Rates([]Point{{t0, 0}, {t0.Add(time.Second), 100}, {t0.Add(4 * time.Second), 1000}})
	// 100 over 1 s, then 900 over 3 s: 1000 over 4 s.
	require.InDelta(t, 250, MeanRate(rs, t0, t0.Add(4*time.Second)), 1e-9)
	require.InDelta(t, 100, MeanRate(rs, t0, t0.Add(time.Second)), 1e-9)
	require.Zero(t, MeanRate(rs, t0.Add(10*time.Second), t0.Add(20*time.Second)))
}
