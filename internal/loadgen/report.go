package loadgen

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Report is everything one `loadgen bench` measured; results.json is its
// JSON encoding and report.md its rendering.
type Report struct {
	Machine          Machine     `json:"machine"`
	Command          string      `json:"command"`
	Config           BenchConfig `json:"config"`
	Scenarios        []Scenario  `json:"scenarios"` // as run, scaled
	Switches         []string    `json:"ablation_switches"`
	SkippedSwitches  []string    `json:"skipped_switches"` // not config keys of this build
	Ceilings         *Ceilings   `json:"ceilings,omitempty"`
	Capacity         *Capacity   `json:"burst_capacity,omitempty"`
	Runs             []*Run      `json:"runs"`
	AblationScenario string      `json:"ablation_scenario,omitempty"`
	Ablation         []*Run      `json:"ablation,omitempty"`
	Started          time.Time   `json:"started"`
	Finished         time.Time   `json:"finished"`
}

func (r *Report) finish() *Report {
	r.Finished = time.Now()
	return r
}

// run returns the run of scenario and variant, or nil.
func (r *Report) run(scenario, variant string) *Run {
	for _, x := range r.Runs {
		if x.Scenario == scenario && x.Variant == variant {
			return x
		}
	}
	return nil
}

// Failures lists the runs that failed (error, unclean exit, count check).
func (r *Report) Failures() []string {
	var out []string
	all := slices.Concat(r.Runs, r.Ablation)
	if r.Capacity != nil && r.Capacity.Run != nil {
		all = append(all, r.Capacity.Run)
	}
	for _, x := range all {
		if x.Failed() {
			out = append(out, fmt.Sprintf("%s/%s: %s", x.Scenario, x.Variant, failure(x)))
		}
	}
	return out
}

func failure(x *Run) string {
	switch {
	case x.Error != "":
		return x.Error
	case x.Check == nil:
		return "no count check"
	case !x.Check.OK:
		msg := fmt.Sprintf("count check failed: lost %d, duplicates %d, unexpected %d", x.Check.Lost, x.Check.Duplicates, x.Check.Unexpected)
		if !x.Check.Drained {
			msg += fmt.Sprintf(" (the sink stopped short of the accepted count within the drain timeout")
			if o := observedOrZero(x); o.SpoolEnd > 0 {
				msg += fmt.Sprintf("; the spool still held %s events", fmtCount(o.SpoolEnd))
			}
			msg += ")"
		}
		return msg
	case !x.CleanExit:
		return "unclean exit"
	}
	return ""
}

// referenceScenario is the scenario of table 1.1: peak when it ran, else
// the first one with both variants measured.
func (r *Report) referenceScenario() string {
	ok := func(name string) bool {
		b, a := r.run(name, VariantBefore), r.run(name, VariantAfter)
		return b != nil && a != nil && b.Result != nil && a.Result != nil
	}
	if ok("peak") {
		return "peak"
	}
	for _, s := range r.Scenarios {
		if ok(s.Name) {
			return s.Name
		}
	}
	return ""
}

// peakQPS returns the highest accepted events/s of a variant over the
// closed-loop scenarios (they share one request shape; the burst's bulk
// requests would not compare) and the scenario it was reached in.
func (r *Report) peakQPS(variant string) (float64, string) {
	best, where := 0.0, ""
	for _, x := range r.Runs {
		if x.Variant == variant && x.Result != nil && x.Result.Load.Mode == ModeClosed && x.Result.EventsPerSec > best {
			best, where = x.Result.EventsPerSec, x.Scenario
		}
	}
	return best, where
}

// Markdown renders the report in the shape of the seed template.
func (r *Report) Markdown() string {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	w("# Levee 压测报告 / load-test report: before and after\n\n")
	w("Every figure below was measured by `loadgen bench` in this run; nothing is estimated or copied. ")
	w("**Before** = `optimization.enabled: false` (ingest writes each request synchronously to the sink, path `direct`); ")
	w("**after** = `optimization.enabled: true` (JetStream queue, packing, batched worker writes).\n\n")
	r.writeMachine(w)
	r.writeTable11(w)
	r.writeScenarios(w)
	r.writeTable92(w)
	r.writeDetails(w)
	r.writeBurst(w)
	r.writeAblation(w)
	r.writeCeilings(w)
	r.writeChecks(w)
	r.writeMethod(w)
	return b.String()
}

type writer func(format string, a ...any)

func (r *Report) writeMachine(w writer) {
	m := r.Machine
	w("## 机器 / Machine\n\n| | |\n|---|---|\n")
	w("| nproc | %d |\n| CPU | %s |\n| memory | %s |\n| kernel | %s |\n| Go | %s |\n| RLIMIT_NOFILE | %d |\n| load average at start | %s |\n",
		m.NProc, m.CPUModel, m.MemTotal, m.Kernel, m.GoVersion, m.NoFile, m.LoadAvg)
	w("| sink | %s, %d worker(s) |\n| scale | %g (every duration × %g) |\n", r.Config.Sink.Kind, r.Config.Workers, r.Config.Scale, r.Config.Scale)
	w("| request | %d event(s) per request (burst: %d), ~%d bytes per event |\n", r.Config.Events, r.Config.BurstEvents, r.Config.Size)
	w("| started | %s (%s) |\n\n", r.Started.UTC().Format(time.RFC3339), r.Finished.Sub(r.Started).Round(time.Second))
	w("Command line:\n\n```\n%s\n```\n\n", r.Command)
	w("The generator, ingest, NATS and the workers share this machine's %d cores; every CPU figure is in %% of one core. ", m.NProc)
	w("The host CPU column of the run table counts every process on the machine: what it shows beyond loadgen, ingest and the workers was other work that skewed the run.\n\n")
}

func (r *Report) writeTable11(w writer) {
	w("## 1.1 问题现象 / Problem metrics\n\n")
	ref := r.referenceScenario()
	if ref == "" {
		w("No scenario has both a before and an after measurement.\n\n")
		return
	}
	bq, bs := r.peakQPS(VariantBefore)
	aq, as := r.peakQPS(VariantAfter)
	b, a := r.run(ref, VariantBefore), r.run(ref, VariantAfter)
	w("| 指标 / metric | 优化前 / before | 优化后 / after | 差距 / gap |\n|------|--------|--------|------|\n")
	w("| 峰值 QPS / Peak QPS (accepted events/s) | %s | %s | %s |\n", fmtRate(bq), fmtRate(aq), fmtRatio(aq, bq))
	w("| P99 延迟 / P99 latency | %s | %s | %s |\n", fmtMs(b.Result.Latency.P99), fmtMs(a.Result.Latency.P99), fmtChange(a.Result.Latency.P99, b.Result.Latency.P99))
	w("| 错误率 / error rate | %s | %s | %s |\n", fmtPct(b.Result.ErrorRate), fmtPct(a.Result.ErrorRate), fmtPP(a.Result.ErrorRate, b.Result.ErrorRate))
	bo, ao := observedOrZero(b), observedOrZero(a)
	w("| CPU 使用率 / CPU (ingest+worker, mean, %% of one core) | %s | %s | %s |\n", fmtCPU(bo.Total.MeanCPU), fmtCPU(ao.Total.MeanCPU), fmtPPRaw(ao.Total.MeanCPU, bo.Total.MeanCPU))
	w("| 内存使用 / memory (max RSS, ingest+worker) | %s | %s | %s |\n\n", fmtMiB(bo.Total.MaxRSSMiB), fmtMiB(ao.Total.MaxRSSMiB), fmtRatio(ao.Total.MaxRSSMiB, bo.Total.MaxRSSMiB))
	w("Peak QPS is the highest over the closed-loop scenarios (before: %s, after: %s); the other rows are from scenario **%s**. ", bs, as, ref)
	w("Latency is client-side, from the intended send time to the end of the answer.\n\n")
}

func observedOrZero(r *Run) Observed {
	if r == nil || r.Observed == nil {
		return Observed{}
	}
	return *r.Observed
}

func (r *Report) writeScenarios(w writer) {
	w("## 9.1 场景 / Scenarios\n\n| # | 场景 / scenario | 并发 / concurrency | 持续时间 / duration | load |\n|---|------|------|----------|------|\n")
	for i, s := range r.Scenarios {
		load := fmt.Sprintf("closed loop, %d event(s)/request", r.Config.Events)
		conc := fmt.Sprint(s.Clients)
		if s.Burst {
			load = fmt.Sprintf("open loop, %g× → %g× → %g× the sink capacity, %d events/request", BurstLow, BurstHigh, BurstLow, r.Config.BurstEvents)
			conc = fmt.Sprintf("≤ %d in flight", s.Clients)
		}
		w("| %d | %s | %s | %s | %s |\n", i+1, s.Title, conc, s.Duration, load)
	}
	w("\n")
}

func (r *Report) writeTable92(w writer) {
	w("## 9.2 结果 / Results (before → after)\n\n")
	for _, s := range r.Scenarios {
		b, a := r.run(s.Name, VariantBefore), r.run(s.Name, VariantAfter)
		w("### %s\n\n", s.Title)
		if b == nil || a == nil || b.Result == nil || a.Result == nil {
			w("Not measured: %s\n\n", joinErr(errOf(b), errOf(a)))
			continue
		}
		br, ar := b.Result, a.Result
		w("| 指标 / metric | 优化前 / before | 优化后 / after | 提升 / improvement |\n|------|--------|--------|------|\n")
		w("| QPS (accepted events/s) | %s | %s | %s |\n", fmtRate(br.EventsPerSec), fmtRate(ar.EventsPerSec), fmtRatio(ar.EventsPerSec, br.EventsPerSec))
		w("| P99 | %s | %s | %s |\n", fmtMs(br.Latency.P99), fmtMs(ar.Latency.P99), fmtChange(ar.Latency.P99, br.Latency.P99))
		w("| 错误率 / error rate | %s | %s | %s |\n\n", fmtPct(br.ErrorRate), fmtPct(ar.ErrorRate), fmtPP(ar.ErrorRate, br.ErrorRate))
		for _, x := range []*Run{b, a} {
			w("![%s %s: offered, accepted and sink-write rate](%s) ", x.Scenario, x.Variant, ChartFile(x, ChartRates))
			w("![%s %s: queue and spool depth](%s) ", x.Scenario, x.Variant, ChartFile(x, ChartDepth))
			w("![%s %s: p99 per second](%s)\n\n", x.Scenario, x.Variant, ChartFile(x, ChartP99))
		}
	}
}

func errOf(r *Run) string {
	if r == nil {
		return "not run"
	}
	return r.Error
}
