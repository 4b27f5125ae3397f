package loadgen

import (
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestIDSet(t *testing.T) {
	s := &IDSet{}
	s.AddRange(0, 3)
	s.AddRange(2, 3) // overlaps 2
	s.Add(100)
	s.Add(63)
	s.Add(64)
	s.AddRange(-1, 5) // negative numbers are not ids
	s.AddRange(7, 0)
	require.EqualValues(t, 8, s.Len())
	for _, n := range []int64{0, 1, 2, 3, 4, 63, 64, 100} {
		require.True(t, s.Has(n), n)
	}
	for _, n := range []int64{-1, 5, 62, 65, 99, 101, 1 << 40} {
		require.False(t, s.Has(n), n)
	}
	require.Equal(t, []Range{{0, 4}, {63, 64}, {100, 100}}, s.Ranges())

	var seen []int64
	s.Each(func(n int64) bool { seen = append(seen, n); return len(seen) < 3 })
	require.Equal(t, []int64{0, 1, 2}, seen)

	round := NewIDSetFromRanges(s.Ranges())
	require.Equal(t, s.Ranges(), round.Ranges())
	require.EqualValues(t, s.Len(), round.Len())
}

func TestIDSetMinus(t *testing.T) {
	a, b := &IDSet{}, &IDSet{}
	a.AddRange(0, 200)
	b.AddRange(0, 100)
	b.AddRange(150, 100) // beyond a as well
	n, sample := a.Minus(b, 5)
	require.EqualValues(t, 50, n)
	require.Equal(t, []int64{100, 101, 102, 103, 104}, sample)
	n, _ = b.Minus(a, 0)
	require.EqualValues(t, 50, n)
	n, _ = a.Minus(a, 10)
	require.Zero(t, n)
}

func TestIDSetConcurrent(t *testing.T) {
	s := &IDSet{}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 1000 {
				s.AddRange(int64(g*100_000+i*100), 100)
			}
		})
	}
	wg.Wait()
	require.EqualValues(t, 8*1000*100, s.Len())
	require.Equal(t, []Range{{0, 8*100_000 - 1}}, s.Ranges())
}
