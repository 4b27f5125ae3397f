package loadgen

import "time"

// Point is one reading of a cumulative counter.
type Point struct {
	At    time.Time
	Value float64
}

// RatePoint is the average rate of a counter over the interval that ends At.
type RatePoint struct {
	At      time.Time
	PerSec  float64
	Seconds float64 // length of the interval
}

// Rates turns successive readings of a counter into per-interval rates.
// Readings may be irregular: a missed scrape leaves a gap, and the rate
// across it is the increase over the whole gap divided by its length, not
// a spike. A decrease means the counter was reset (a process restarted);
// the interval then counts the value after the reset as its increase.
func Rates(ps []Point) []RatePoint {
	var out []RatePoint
	for i := 1; i < len(ps); i++ {
		dt := ps[i].At.Sub(ps[i-1].At).Seconds()
		if dt <= 0 {
			continue
		}
		inc := ps[i].Value - ps[i-1].Value
		if inc < 0 {
			inc = ps[i].Value
		}
		out = append(out, RatePoint{At: ps[i].At, PerSec: inc / dt, Seconds: dt})
	}
	return out
}

// MeanRate is the time-weighted mean of rates whose interval ends within
// [from, to]; zero when none does.
func MeanRate(rs []RatePoint, from, to time.Time) float64 {
	sum, secs := 0.0, 0.0
	for _, r := range rs {
		if r.At.Before(from) || r.At.After(to) {
			continue
		}
		sum += r.PerSec * r.Seconds
		secs += r.Seconds
	}
	if secs == 0 {
		return 0
	}
	return sum / secs
}
