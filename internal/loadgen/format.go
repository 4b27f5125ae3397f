package loadgen

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// fmtRate formats a rate: thousands separators from 100 up, decimals below.
func fmtRate(v float64) string {
	switch {
	case math.IsNaN(v) || math.IsInf(v, 0):
		return "n/a"
	case math.Abs(v) >= 100:
		return thousands(int64(math.Round(v)))
	case math.Abs(v) >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}

func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// fmtMs formats a latency given in milliseconds.
func fmtMs(ms float64) string {
	switch {
	case ms >= 1000:
		return strconv.FormatFloat(ms/1000, 'f', 2, 64) + " s"
	case ms >= 10:
		return strconv.FormatFloat(ms, 'f', 1, 64) + " ms"
	}
	return strconv.FormatFloat(ms, 'f', 2, 64) + " ms"
}

// fmtSec formats seconds.
func fmtSec(s float64) string { return fmtMs(s * 1000) }

// fmtPct formats a fraction as a percentage.
func fmtPct(f float64) string { return strconv.FormatFloat(100*f, 'f', 2, 64) + "%" }

// fmtCPU formats CPU in % of one core.
func fmtCPU(pct float64) string { return strconv.FormatFloat(pct, 'f', 0, 64) + "%" }

// fmtMiB formats a size in MiB.
func fmtMiB(m float64) string { return strconv.FormatFloat(m, 'f', 0, 64) + " MiB" }

// fmtRatio formats after/before as "×r (+p%)" for a higher-is-better value.
func fmtRatio(after, before float64) string {
	if before <= 0 {
		return "n/a"
	}
	r := after / before
	return fmt.Sprintf("×%.2f (%+.0f%%)", r, 100*(r-1))
}

// fmtChange formats the relative change of a lower-is-better value.
func fmtChange(after, before float64) string {
	if before <= 0 {
		return "n/a"
	}
	return fmt.Sprintf("%+.1f%% (×%.2f)", 100*(after-before)/before, after/before)
}

// fmtPP formats the difference of two fractions in percentage points.
func fmtPP(after, before float64) string {
	return fmt.Sprintf("%+.2f pp", 100*(after-before))
}

// fmtPPRaw formats the difference of two percentages in percentage points.
func fmtPPRaw(after, before float64) string {
	return fmt.Sprintf("%+.0f pp", after-before)
}

// fmtCount formats a count (a depth, a number of events).
func fmtCount(v float64) string { return thousands(int64(math.Round(v))) }
