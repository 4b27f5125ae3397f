package loadgen

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
)

// WriteJSON writes v as indented JSON.
func WriteJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("loadgen: encode: %w", err)
	}
	return nil
}

// WriteJSONFile writes v as indented JSON to path.
func WriteJSONFile(path string, v any) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("loadgen: %w", err)
	}
	if err := WriteJSON(f, v); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("loadgen: %w", err)
	}
	return nil
}

// ReadRun reads a run written by WriteJSONFile.
func ReadRun(path string) (*Run, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("loadgen: %w", err)
	}
	var r Run
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("loadgen: %s: %w", path, err)
	}
	if r.Result == nil {
		return nil, fmt.Errorf("loadgen: %s: no result", path)
	}
	return &r, nil
}

// WriteText writes a run as text for a terminal.
func (r *Run) WriteText(w io.Writer) {
	p := func(format string, a ...any) { fmt.Fprintf(w, format, a...) }
	res := r.Result
	if res == nil {
		p("no result: %s\n", r.Error)
		return
	}
	l := res.Load
	if l.Mode == ModeOpen {
		p("load: open loop, ≤ %d in flight, %d phase(s), %s", l.Clients, len(l.phases()), l.Length())
	} else {
		p("load: closed loop, %d clients, %s", l.Clients, l.Length())
	}
	p(", %d event(s)/request, ~%d B/event → %s (ids %s-<n>)\n", l.Events, l.Size, l.Target, l.IDPrefix)
	p("sent %s requests in %.2f s: %s req/s; accepted %s req/s = %s events/s; dropped by generator %s\n",
		thousands(res.Completed), res.Elapsed, fmtRate(res.ReqPerSec), fmtRate(res.AcceptedReqPerSec), fmtRate(res.EventsPerSec), thousands(res.Dropped))
	lt := res.Latency
	p("latency: p50 %s  p95 %s  p99 %s  p99.9 %s  max %s  (error rate %s)\n", fmtMs(lt.P50), fmtMs(lt.P95), fmtMs(lt.P99), fmtMs(lt.P999), fmtMs(lt.Max), fmtPct(res.ErrorRate))
	p("status: %s\npaths: %v\n", fmtStatus(res.Status), res.Paths)
	if o := r.Observed; o != nil && len(o.Samples) > 0 {
		p("pipeline: sink rows/s mean %s max %s; queue max %s; spool max %s; lag p50/p99 %s\n",
			fmtRate(o.SinkRateMean), fmtRate(o.SinkRateMax), fmtCount(o.QueueMax), fmtCount(o.SpoolMax), fmtLag(*o))
		p("cpu (%% of a core) ingest mean %s max %s, worker mean %s max %s; rss max ingest %s worker %s\n",
			fmtCPU(o.Ingest.MeanCPU), fmtCPU(o.Ingest.MaxCPU), fmtCPU(o.Worker.MeanCPU), fmtCPU(o.Worker.MaxCPU), fmtMiB(o.Ingest.MaxRSSMiB), fmtMiB(o.Worker.MaxRSSMiB))
	}
	if c := r.Check; c != nil {
		c.WriteText(w)
	}
	p("per second: t offered dropped accepted-events p99\n")
	for _, s := range res.Timeline {
		p("  %3d %7d %7d %9d %s\n", s.T, s.Offered, s.Dropped, s.AcceptedEvents, fmtMs(s.P99))
	}
	if r.Error != "" {
		p("error: %s\n", r.Error)
	}
}

// WriteText writes the check result as one line.
func (c *CheckResult) WriteText(w io.Writer) {
	verdict := "OK"
	if !c.OK {
		verdict = "FAILED"
	}
	fmt.Fprintf(w, "count check %s: accepted %s, rows %s, lost %d %v, duplicates %d, unexpected %d %v, unknown outcome %d, foreign %d, drained %v, drain %.2f s\n",
		verdict, thousands(c.Accepted), thousands(c.Rows), c.Lost, c.LostSample, c.Duplicates, c.Unexpected, c.UnexpectedSample,
		c.UnknownOutcome, c.Foreign, c.Drained, c.DrainS)
}

// WriteText writes the ceilings as text.
func (c *Ceilings) WriteText(w io.Writer) {
	for _, n := range c.Noop {
		fmt.Fprintf(w, "no-op HTTP, %d clients: %s req/s = %s events/s, p99 %s, errors %s\n",
			n.Clients, fmtRate(n.ReqPerSec), fmtRate(n.EventsPerSec), fmtMs(n.P99), fmtPct(n.ErrorRate))
	}
	if js := c.JetStream; js != nil {
		fmt.Fprintf(w, "JetStream async publish (%s, %d publishers, %d B): %s msgs/s\n", js.Tool, js.Publishers, js.MsgBytes, fmtRate(js.MsgsPerSec))
	}
	for _, cc := range c.Copy {
		fmt.Fprintf(w, "PostgreSQL COPY, %d conn(s): %s rows/s\n", cc.Conns, fmtRate(cc.RowsPerSec))
	}
	for _, e := range []string{c.NoopError, c.JSError, c.CopyError} {
		if e != "" {
			fmt.Fprintf(w, "error: %s\n", e)
		}
	}
}
