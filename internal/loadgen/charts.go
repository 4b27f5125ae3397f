package loadgen

import (
	"fmt"
	"math"
	"path/filepath"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// Charts drawn for every run.
const (
	ChartRates = "rates" // offered vs accepted vs sink-write rate over time
	ChartDepth = "depth" // queue and spool depth over time
	ChartP99   = "p99"   // per-second p99 over time
)

// ChartFile is the file name of a run's chart of kind.
func ChartFile(r *Run, kind string) string {
	return fmt.Sprintf("%s-%s-%s.png", r.Scenario, r.Variant, kind)
}

// series is one named line of a chart.
type series struct {
	name string
	xy   plotter.XYs
}

// WriteCharts draws the three charts of a run into dir. The x axis is
// seconds since the first request.
func WriteCharts(dir string, r *Run) error {
	if r.Result == nil {
		return nil
	}
	res, o := r.Result, observedOrZero(r)
	var offered, accepted, p99, sink, queue, spool, backlog plotter.XYs
	for _, s := range res.Timeline {
		x := float64(s.T) + 0.5
		offered = append(offered, plotter.XY{X: x, Y: float64(s.Offered * int64(res.Load.Events))})
		accepted = append(accepted, plotter.XY{X: x, Y: float64(s.AcceptedEvents)})
		if s.Completed > 0 {
			p99 = append(p99, plotter.XY{X: x, Y: s.P99})
		}
	}
	for _, s := range o.Samples {
		x := s.At.Sub(res.Started).Seconds()
		sink = append(sink, plotter.XY{X: x, Y: s.SinkRate})
		queue = append(queue, plotter.XY{X: x, Y: s.QueueDepth})
		spool = append(spool, plotter.XY{X: x, Y: s.SpoolEvents})
		backlog = append(backlog, plotter.XY{X: x, Y: s.Backlog})
	}
	title := r.Scenario + " / " + r.Variant
	charts := []struct {
		kind, title, y string
		lines          []series
	}{
		{ChartRates, title + ": offered, accepted, written", "events/s",
			[]series{{"offered", offered}, {"accepted (202)", accepted}, {"sink writes", sink}}},
		{ChartDepth, title + ": queue, spool and backlog", "depth",
			[]series{{"queue (messages not yet delivered)", queue}, {"spool (events)", spool}, {"backlog (events accepted, not yet written)", backlog}}},
		{ChartP99, title + ": p99 latency per second", "ms", []series{{"p99", p99}}},
	}
	for _, c := range charts {
		if err := drawChart(filepath.Join(dir, ChartFile(r, c.kind)), c.title, c.y, c.lines); err != nil {
			return err
		}
	}
	return nil
}

func drawChart(path, title, ylabel string, lines []series) error {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "seconds since the first request"
	p.Y.Label.Text = ylabel
	p.X.Min, p.Y.Min = 0, 0
	p.Y.Tick.Marker = readableTicks{}
	p.Add(plotter.NewGrid())
	p.Legend.Top = true
	var args []any
	for _, l := range lines {
		if len(l.xy) == 0 {
			l.xy = plotter.XYs{{X: 0, Y: 0}} // keep the legend entry: a flat line says "none"
		}
		args = append(args, l.name, l.xy)
	}
	if err := plotutil.AddLines(p, args...); err != nil {
		return fmt.Errorf("loadgen: chart %s: %w", filepath.Base(path), err)
	}
	if err := p.Save(9*vg.Inch, 4*vg.Inch, path); err != nil {
		return fmt.Errorf("loadgen: chart %s: %w", filepath.Base(path), err)
	}
	return nil
}

// readableTicks labels the default ticks with thousands separators.
type readableTicks struct{}

func (readableTicks) Ticks(lo, hi float64) []plot.Tick {
	ts := plot.DefaultTicks{}.Ticks(lo, hi)
	for i := range ts {
		if ts[i].Label == "" {
			continue
		}
		if v := ts[i].Value; v == math.Trunc(v) {
			ts[i].Label = thousands(int64(v))
		} else {
			ts[i].Label = strconv.FormatFloat(v, 'g', 4, 64)
		}
	}
	return ts
}
