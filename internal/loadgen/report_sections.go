package loadgen

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

func (r *Report) allRuns() []*Run {
	all := slices.Clone(r.Runs)
	if r.Capacity != nil && r.Capacity.Run != nil {
		all = append(all, r.Capacity.Run)
	}
	return append(all, r.Ablation...)
}

func (r *Report) writeDetails(w writer) {
	w("## 明细 / Every run\n\n")
	w("| scenario | variant | req/s | events/s | p50 | p95 | p99 | p99.9 | max | errors | dropped by generator | status (count, per s) | 202 paths | sink rows/s mean / max | queue max | spool max | backlog max | lag p50 / p99 | CPU ingest / worker (mean %%) | host CPU mean (all processes) | RSS max ingest / worker |\n")
	w("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, x := range r.allRuns() {
		if x.Result == nil {
			w("| %s | %s | %s ||||||||||||||||||\n", x.Scenario, x.Variant, x.Error)
			continue
		}
		res, o, l := x.Result, observedOrZero(x), x.Result.Latency
		w("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %d | %s | %s | %s / %s | %s | %s | %s | %s | %s / %s | %s | %s / %s |\n",
			x.Scenario, x.Variant, fmtRate(res.ReqPerSec), fmtRate(res.EventsPerSec),
			fmtMs(l.P50), fmtMs(l.P95), fmtMs(l.P99), fmtMs(l.P999), fmtMs(l.Max), fmtPct(res.ErrorRate), res.Dropped,
			fmtStatus(res.Status), fmtPaths(res.Paths), fmtRate(o.SinkRateMean), fmtRate(o.SinkRateMax), fmtCount(o.QueueMax), fmtCount(o.SpoolMax), fmtCount(o.BacklogMax),
			fmtLag(o), fmtCPU(o.Ingest.MeanCPU), fmtCPU(o.Worker.MeanCPU), fmtCPU(o.Host.MeanCPU), fmtMiB(o.Ingest.MaxRSSMiB), fmtMiB(o.Worker.MaxRSSMiB))
	}
	w("\nreq/s counts every answered request; events/s only accepted (202) events. Sink rows/s is the workers' ")
	w("`levee_sink_rows_total{result=\"inserted\"}` plus, on the direct path, ingest's accepted direct events, over the load window. ")
	w("Queue: messages not yet delivered to a worker (a message holds a pack of events). Backlog: events ingest accepted and the sink does not hold yet.\n\n")
}

func fmtStatus(m map[string]Count) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s: %s (%s/s)", k, thousands(m[k].N), fmtRate(m[k].Rate)))
	}
	return strings.Join(parts, "; ")
}

func fmtPaths(m map[string]int64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, k+": "+thousands(m[k]))
	}
	return strings.Join(parts, "; ")
}

func fmtLag(o Observed) string {
	if o.LagP50 == nil || o.LagP99 == nil {
		return "n/a"
	}
	return fmtSec(*o.LagP50) + " / " + fmtSec(*o.LagP99)
}

func (r *Report) writeBurst(w writer) {
	var burst *Scenario
	for i := range r.Scenarios {
		if r.Scenarios[i].Burst {
			burst = &r.Scenarios[i]
		}
	}
	if burst == nil {
		return
	}
	w("## 突发 / Burst\n\n")
	c := r.Capacity
	if c == nil || c.EventsPerSec <= 0 {
		w("The sink capacity could not be measured, so the burst did not run.\n\n")
		return
	}
	ph := BurstPhases(burst.Duration, r.Config.Scale, c.EventsPerSec, r.Config.BurstEvents)
	w("Sink capacity: **%s events/s** (%s; closed loop, 64 clients, %d events/request, optimized pipeline).\n\n",
		fmtRate(c.EventsPerSec), c.Method, r.Config.BurstEvents)
	w("Arrival profile (open loop, at most %d requests in flight): %s req/s (%s events/s) for %s, **%s req/s (%s events/s) for %s**, then %s req/s for %s.\n\n",
		burst.Clients, fmtRate(ph[0].Rate), fmtRate(ph[0].Rate*float64(r.Config.BurstEvents)), ph[0].Duration,
		fmtRate(ph[1].Rate), fmtRate(ph[1].Rate*float64(r.Config.BurstEvents)), ph[1].Duration, fmtRate(ph[2].Rate), ph[2].Duration)
	w("| | before | after |\n|---|---|---|\n")
	b, a := r.run(burst.Name, VariantBefore), r.run(burst.Name, VariantAfter)
	row := func(name string, f func(*Run) string) {
		w("| %s | %s | %s |\n", name, cell(b, f), cell(a, f))
	}
	row("accepted events/s (whole run)", func(x *Run) string { return fmtRate(x.Result.EventsPerSec) })
	row("p99 whole run", func(x *Run) string { return fmtMs(x.Result.Latency.P99) })
	row("highest per-second p99 during the 5× stretch", func(x *Run) string { return fmtMs(maxP99(x.Result, ph[0].Duration, ph[0].Duration+ph[1].Duration)) })
	row("highest per-second p99 after it", func(x *Run) string {
		return fmtMs(maxP99(x.Result, ph[0].Duration+ph[1].Duration, burst.Duration+time.Hour))
	})
	row("error rate", func(x *Run) string { return fmtPct(x.Result.ErrorRate) })
	row("dropped by generator (all slots busy)", func(x *Run) string { return thousands(x.Result.Dropped) })
	row("queue depth max (messages)", func(x *Run) string { return fmtCount(observedOrZero(x).QueueMax) })
	row("spool max (events)", func(x *Run) string { return fmtCount(observedOrZero(x).SpoolMax) })
	row("backlog max (events accepted, not yet written)", func(x *Run) string { return fmtCount(observedOrZero(x).BacklogMax) })
	row("202 paths (requests)", func(x *Run) string { return fmtPaths(x.Result.Paths) })
	row("degrade mode max (levee_degrade_mode)", func(x *Run) string { return fmt.Sprintf("%g", observedOrZero(x).DegradeMax) })
	row("drain: last 202 → last row", func(x *Run) string {
		if x.Check == nil {
			return "n/a"
		}
		return fmt.Sprintf("%.1f s", x.Check.DrainS)
	})
	w("\n")
	for _, x := range []*Run{b, a} {
		if x != nil && x.Result != nil {
			w("![burst %s: offered, accepted and sink-write rate](%s)\n\n", x.Variant, ChartFile(x, ChartRates))
		}
	}
}

func cell(x *Run, f func(*Run) string) string {
	if x == nil || x.Result == nil {
		return "n/a"
	}
	return f(x)
}

// maxP99 is the highest per-second p99 of the seconds in [from, to).
func maxP99(res *Result, from, to time.Duration) float64 {
	m := 0.0
	for _, s := range res.Timeline {
		t := time.Duration(s.T) * time.Second
		if t >= from.Truncate(time.Second) && t < to {
			m = max(m, s.P99)
		}
	}
	return m
}

func (r *Report) writeAblation(w writer) {
	if r.AblationScenario == "" {
		return
	}
	w("## 消融 / Ablation (scenario %s)\n\n", r.AblationScenario)
	base := r.run(r.AblationScenario, VariantAfter)
	for _, x := range r.Ablation {
		if x.Variant == VariantAfter {
			base = x
		}
	}
	w("| variant | switched off | events/s | P99 | error rate | CPU mean | events/s vs all on | P99 vs all on |\n|---|---|---|---|---|---|---|---|\n")
	for _, x := range append([]*Run{base}, r.Ablation...) {
		if x == nil || x.Result == nil || (x != base && x.Variant == VariantAfter) {
			continue
		}
		off := "— (all on)"
		if x != base {
			off = "`optimization." + strings.TrimPrefix(x.Variant, "no-") + "`"
		}
		vsQ, vsP := "", ""
		if base != nil && base.Result != nil && x != base {
			vsQ, vsP = fmtRatio(x.Result.EventsPerSec, base.Result.EventsPerSec), fmtChange(x.Result.Latency.P99, base.Result.Latency.P99)
		}
		w("| %s | %s | %s | %s | %s | %s | %s | %s |\n", x.Variant, off, fmtRate(x.Result.EventsPerSec), fmtMs(x.Result.Latency.P99),
			fmtPct(x.Result.ErrorRate), fmtCPU(observedOrZero(x).Total.MeanCPU), vsQ, vsP)
	}
	w("\n")
	if len(r.SkippedSwitches) > 0 {
		w("Not measured: %s — not config keys of this build (absent from `ingest -h`).\n\n", "`optimization."+strings.Join(r.SkippedSwitches, "`, `optimization.")+"`")
	}
}
