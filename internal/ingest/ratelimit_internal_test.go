package ingest

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The buckets on an explicit clock: the wait reported is the time until
// the next token, and a refused request takes nothing from the bucket.
func TestKeyLimitsAllow(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name      string
		perSecond float64
		burst     int
		at        []time.Duration // request times after t0
		want      []time.Duration // 0 = allowed, else the wait reported
	}{
		{name: "burst then refused", perSecond: 1, burst: 2, at: []time.Duration{0, 0, 0}, want: []time.Duration{0, 0, time.Second}},
		{name: "refusal takes no token", perSecond: 1, burst: 1,
			at:   []time.Duration{0, 500 * time.Millisecond, 999 * time.Millisecond, time.Second},
			want: []time.Duration{0, 500 * time.Millisecond, time.Millisecond, 0}},
		{name: "slow rate", perSecond: 0.1, burst: 1, at: []time.Duration{0, time.Second}, want: []time.Duration{0, 9 * time.Second}},
		{name: "fast rate refills", perSecond: 100, burst: 1, at: []time.Duration{0, 10 * time.Millisecond, 10 * time.Millisecond},
			want: []time.Duration{0, 0, 10 * time.Millisecond}},
		{name: "unlimited", perSecond: 0, burst: 1, at: []time.Duration{0, 0, 0, 0}, want: []time.Duration{0, 0, 0, 0}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var l keyLimits
			l.apply([]string{"ci"}, tc.perSecond, tc.burst)
			for i, at := range tc.at {
				wait, ok := l.allow("ci", t0.Add(at))
				require.Equal(t, tc.want[i] == 0, ok, "request %d", i)
				require.InDelta(t, tc.want[i], wait, float64(time.Microsecond), "request %d", i)
			}
		})
	}
}

func TestKeyLimitsApply(t *testing.T) {
	var l keyLimits
	now := time.Now()
	l.apply([]string{"ci", "ops"}, 1, 1)
	_, ok := l.allow("ci", now)
	require.True(t, ok)
	_, ok = l.allow("ci", now)
	require.False(t, ok, "ci's bucket is empty")

	l.apply([]string{"ci", "ops", "new"}, 1, 1) // a reload adding a key
	_, ok = l.allow("ci", now)
	require.False(t, ok, "ci's bucket survived the reload")
	_, ok = l.allow("new", now)
	require.True(t, ok)

	l.apply([]string{"ci", "ops"}, 1, 5) // a larger burst applies to the existing bucket
	require.Equal(t, 5, l.buckets["ci"].Burst())
	require.Len(t, l.buckets, 2, "the bucket of a removed name is dropped")

	l.apply([]string{"ci"}, 0, 5)
	require.Nil(t, l.buckets, "rate 0: no limit")
	for range 10 {
		_, ok = l.allow("ci", now)
		require.True(t, ok)
	}
	_, ok = l.allow("unknown", now)
	require.True(t, ok, "a name without a bucket is not limited")
}

func TestRetryAfter(t *testing.T) {
	for _, tc := range []struct{ wait, want time.Duration }{
		{0, time.Second},
		{time.Millisecond, time.Second},
		{time.Second, time.Second},
		{time.Second + time.Nanosecond, 2 * time.Second},
		{9*time.Second + 500*time.Millisecond, 10 * time.Second},
	} {
		require.Equal(t, tc.want, retryAfter(tc.wait), "wait %s", tc.wait)
	}
}
