package loadgen

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Scenario is one row of the load-test plan (seed section 9.1).
type Scenario struct {
	Name     string        `json:"name"`
	Title    string        `json:"title"` // the seed's name for it
	Clients  int           `json:"clients"`
	Duration time.Duration `json:"duration"`
	Burst    bool          `json:"burst,omitempty"` // open loop: low rate, a 5× jump, low rate again
}

// Burst profile: BurstLow × the sink's measured capacity, then BurstHigh ×
// for BurstPeak, then BurstLow again; the rest of Duration is split between
// the two low stretches (1:3, so the drain after the peak is visible).
const (
	BurstLow  = 0.5
	BurstHigh = 5.0
	BurstPeak = 60 * time.Second
)

// Scenarios returns the plan's scenarios at full length.
func Scenarios() []Scenario {
	return []Scenario{
		{Name: "baseline", Title: "基准测试 / baseline", Clients: 100, Duration: 5 * time.Minute},
		{Name: "peak", Title: "峰值测试 / peak", Clients: 1000, Duration: 10 * time.Minute},
		{Name: "extreme", Title: "极限测试 / extreme", Clients: 5000, Duration: 5 * time.Minute},
		{Name: "burst", Title: "突发测试 / burst (open loop)", Clients: 5000, Duration: 5 * time.Minute, Burst: true},
	}
}

// SelectScenarios returns the scenarios named in the comma-separated list
// ("" or "all" = every one), in plan order.
func SelectScenarios(list string) ([]Scenario, error) {
	all := Scenarios()
	if list == "" || list == "all" {
		return all, nil
	}
	var names []string
	for n := range strings.SplitSeq(list, ",") {
		if n = strings.TrimSpace(n); n != "" {
			names = append(names, n)
		}
	}
	var out []Scenario
	for _, s := range all {
		if slices.Contains(names, s.Name) {
			out = append(out, s)
		}
	}
	for _, n := range names {
		if !slices.ContainsFunc(all, func(s Scenario) bool { return s.Name == n }) {
			return nil, fmt.Errorf("loadgen: unknown scenario %q (want baseline, peak, extreme, burst)", n)
		}
	}
	return out, nil
}

// scaled multiplies d by f, never below floor.
func scaled(d time.Duration, f float64, floor time.Duration) time.Duration {
	return max(time.Duration(float64(d)*f), floor)
}

// Scaled returns the scenario with its duration multiplied by f.
func (s Scenario) Scaled(f float64) Scenario {
	s.Duration = scaled(s.Duration, f, 500*time.Millisecond)
	return s
}

// BurstPhases returns the open-loop profile of the burst scenario for a
// sink capacity in events/s and events per request; scale applies to the
// peak's length like to every duration.
func BurstPhases(total time.Duration, scale, capacity float64, events int) []Phase {
	peak := min(scaled(BurstPeak, scale, 200*time.Millisecond), total/2)
	rest := total - peak
	pre := rest / 4
	low := BurstLow * capacity / float64(max(events, 1))
	high := BurstHigh * capacity / float64(max(events, 1))
	return []Phase{{Rate: low, Duration: pre}, {Rate: high, Duration: peak}, {Rate: low, Duration: rest - pre}}
}
