package loadgen

import (
	"fmt"
	"slices"
	"strings"
)

func (r *Report) writeCeilings(w writer) {
	c := r.Ceilings
	if c == nil {
		return
	}
	w("## 上限 / Ceilings\n\n")
	w("Each stage alone on this machine, measured in this run, next to what the optimized pipeline did.\n\n")
	w("| ceiling | measured | pipeline (after) | pipeline / ceiling |\n|---|---|---|---|\n")
	for _, n := range c.Noop {
		x := r.afterAt(n.Clients)
		pipe, ratio := "not run", "n/a"
		if x != nil {
			pipe = fmt.Sprintf("%s events/s (%s, p99 %s)", fmtRate(x.Result.EventsPerSec), x.Scenario, fmtMs(x.Result.Latency.P99))
			ratio = fmtFrac(x.Result.EventsPerSec, n.EventsPerSec)
		}
		w("| no-op HTTP server, %d clients, closed loop | %s req/s = %s events/s (p99 %s) | %s | %s |\n",
			n.Clients, fmtRate(n.ReqPerSec), fmtRate(n.EventsPerSec), fmtMs(n.P99), pipe, ratio)
	}
	if c.NoopError != "" {
		w("| no-op HTTP server | failed: %s | | |\n", c.NoopError)
	}
	if js := c.JetStream; js != nil {
		best, where := r.peakQPS(VariantAfter)
		tool := "natscli `nats bench js pub async`"
		if js.Tool != "natscli" {
			tool = "built-in equivalent (nats.go async publish; natscli not found)"
		}
		w("| JetStream async publish: %s, %d publishers, window %d, %d B, file storage | %s msgs/s | %s events/s (%s; events travel packed, many per message) | %s |\n",
			tool, js.Publishers, ceilingWindow, js.MsgBytes, fmtRate(js.MsgsPerSec), fmtRate(best), where, fmtFrac(best, js.MsgsPerSec))
	}
	if c.JSError != "" {
		w("| JetStream async publish | failed: %s | | |\n", c.JSError)
	}
	sink := r.bestSinkRate()
	for _, cc := range c.Copy {
		w("| PostgreSQL COPY, %d connection(s), batches of %d | %s rows/s | %s rows/s (highest 1-s sink-write rate) | %s |\n",
			cc.Conns, cc.BatchRows, fmtRate(cc.RowsPerSec), fmtRate(sink), fmtFrac(sink, cc.RowsPerSec))
	}
	if c.CopyError != "" {
		w("| PostgreSQL COPY | failed: %s | | |\n", c.CopyError)
	}
	if len(c.Copy) == 0 && c.CopyError == "" {
		w("| PostgreSQL COPY | not measured: the sink is %s (run with `-sink postgres`) | | |\n", r.Config.Sink.Kind)
	}
	w("\n")
}

// afterAt returns the after run of a closed-loop scenario with n clients.
func (r *Report) afterAt(n int) *Run {
	for _, s := range r.Scenarios {
		if !s.Burst && s.Clients == n {
			if x := r.run(s.Name, VariantAfter); x != nil && x.Result != nil {
				return x
			}
		}
	}
	return nil
}

func (r *Report) bestSinkRate() float64 {
	best := 0.0
	for _, x := range r.allRuns() {
		best = max(best, observedOrZero(x).SinkRateMax)
	}
	return best
}

func fmtFrac(a, b float64) string {
	if b <= 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2f", a/b)
}

func (r *Report) writeChecks(w writer) {
	w("## 计数校验 / Count check\n\n")
	w("| scenario | variant | accepted | rows | lost | duplicates | unexpected | unknown outcome | drained | drain time | clean exit | ok |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, x := range r.allRuns() {
		c := x.Check
		if c == nil {
			w("| %s | %s | not checked: %s ||||||||| %v | no |\n", x.Scenario, x.Variant, x.Error, x.CleanExit)
			continue
		}
		w("| %s | %s | %s | %s | %d | %d | %d | %d | %v | %.1f s | %v | %s |\n", x.Scenario, x.Variant, thousands(c.Accepted), thousands(c.Rows),
			c.Lost, c.Duplicates, c.Unexpected, c.UnknownOutcome, c.Drained, c.DrainS, x.CleanExit, yesNo(!x.Failed()))
	}
	w("\nUnknown outcome: events of requests that timed out client-side, failed in transport or got a 5xx, found in the sink anyway (allowed, reported apart). ")
	w("Drain time: last 202 → last growth of the row count (polled every 100 ms).\n\n")
	if f := r.Failures(); len(f) > 0 {
		w("**Failures:**\n\n")
		for _, s := range f {
			w("- %s\n", s)
		}
		w("\n")
	}
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "**NO**"
}

func (r *Report) writeMethod(w writer) {
	w("## 方法 / How it was measured\n\n")
	w("- Each run starts fresh services (`ingest` with its embedded NATS JetStream server, %d worker(s), a new %s sink) as child processes on free loopback ports, waits for `/readyz`, and stops them with SIGTERM afterwards; a non-zero exit fails the run.\n", r.Config.Workers, r.Config.Sink.Kind)
	if d := r.Config.StatementDelay; d > 0 {
		w("- The sink is made slow: a statement trigger on the PostgreSQL table delays every INSERT by %s, so a statement per request costs far more than a statement per batch.\n", d)
	}
	w("- Closed loop: N clients post back-to-back on kept-alive connections. Open loop (burst): each request has an intended send time from the arrival rate; latency is measured from it, so a stalled server cannot hide its stall (no coordinated omission); a request due while every in-flight slot is busy is counted as dropped by the generator.\n")
	w("- Latency: HDR histogram, 1 µs resolution, 3 significant digits (per-second p99: 2 digits). Error rate: answers other than 202, and transport errors, over the requests sent.\n")
	w("- Every second: the services' `/metrics` (queue depth `levee_consumer_pending_messages`, spool `levee_spool_events`, sink rows `levee_sink_rows_total{result=\"inserted\"}`, lag histogram `levee_worker_lag_seconds`, `levee_degrade_mode`) and `/proc/<pid>/stat` + `status` (CPU = Δ(utime+stime)/Δwall, RSS = VmRSS). CPU and RSS figures are over the load window; lag p50/p99 are interpolated from the histogram's bucket deltas over the run.\n")
	w("- Count check: every event has the id `<prefix>-<n>`; the accepted numbers are kept in a bitset; after the load the sink is polled until its row count under the prefix stops growing, then every id is compared.\n")
	var absent []string
	derived := ""
	for _, x := range r.allRuns() {
		if s := observedOrZero(x).SpoolSource; s != "" {
			derived = s
		}
		for _, a := range observedOrZero(x).Absent {
			if !slices.Contains(absent, a) {
				absent = append(absent, a)
			}
		}
	}
	if derived != "" {
		w("- `%s` is not exposed; spool depth is derived as `%s` (events spooled and not yet replayed).\n", metricSpool, derived)
	}
	if len(absent) > 0 {
		slices.Sort(absent)
		w("- Series the services did not expose (counted as 0): `%s`.\n", strings.Join(absent, "`, `"))
	}
	w("\n")
}
