package loadgen

import (
	"math/bits"
	"sync"
)

// IDSet is a set of event numbers n (ids are "<prefix>-<n>", n ≥ 0), kept
// as a bitset: one bit per number up to the largest one added. It is safe
// for concurrent use.
type IDSet struct {
	mu    sync.Mutex
	words []uint64
	count int64
}

// Range is an inclusive run of consecutive numbers, [From, To].
type Range struct {
	From int64 `json:"from"`
	To   int64 `json:"to"`
}

// NewIDSetFromRanges returns a set holding every number of rs.
func NewIDSetFromRanges(rs []Range) *IDSet {
	s := &IDSet{}
	for _, r := range rs {
		s.AddRange(r.From, r.To-r.From+1)
	}
	return s
}

// AddRange adds the n numbers from, from+1, …, from+n-1.
func (s *IDSet) AddRange(from, n int64) {
	if n <= 0 || from < 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.grow(from + n - 1)
	for i := from; i < from+n; i++ {
		w, b := i>>6, uint64(1)<<(i&63)
		if s.words[w]&b == 0 {
			s.words[w] |= b
			s.count++
		}
	}
}

// Add adds one number.
func (s *IDSet) Add(i int64) { s.AddRange(i, 1) }

// grow makes room for number top. Called with mu held.
func (s *IDSet) grow(top int64) {
	need := int(top>>6) + 1
	if need <= len(s.words) {
		return
	}
	if need <= cap(s.words) {
		s.words = s.words[:need]
		return
	}
	w := make([]uint64, need, max(need, 2*cap(s.words)))
	copy(w, s.words)
	s.words = w
}

// Has reports whether i is in the set.
func (s *IDSet) Has(i int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.has(i)
}

func (s *IDSet) has(i int64) bool {
	w := i >> 6
	return i >= 0 && w < int64(len(s.words)) && s.words[w]&(uint64(1)<<(i&63)) != 0
}

// Len returns the number of members.
func (s *IDSet) Len() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.count
}

// Each calls fn for every member in increasing order, until fn returns false.
// fn must not modify the set.
func (s *IDSet) Each(fn func(int64) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for wi, w := range s.words {
		for w != 0 {
			b := bits.TrailingZeros64(w)
			if !fn(int64(wi)<<6 | int64(b)) {
				return
			}
			w &= w - 1
		}
	}
}

// Ranges returns the members as maximal runs of consecutive numbers.
func (s *IDSet) Ranges() []Range {
	var rs []Range
	s.Each(func(i int64) bool {
		if n := len(rs); n > 0 && rs[n-1].To == i-1 {
			rs[n-1].To = i
		} else {
			rs = append(rs, Range{From: i, To: i})
		}
		return true
	})
	return rs
}

// Minus returns how many members of s are not in other, and up to limit of them.
func (s *IDSet) Minus(other *IDSet, limit int) (int64, []int64) {
	var n int64
	var sample []int64
	if s == other {
		return 0, nil
	}
	other.mu.Lock()
	defer other.mu.Unlock()
	s.Each(func(i int64) bool {
		if !other.has(i) {
			n++
			if len(sample) < limit {
				sample = append(sample, i)
			}
		}
		return true
	})
	return n, sample
}
