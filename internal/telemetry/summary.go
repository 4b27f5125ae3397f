package telemetry

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"
)

// summaryItem is one figure of the summary line: a metric's value, or its
// rate per second over the interval, summed over the series whose labels
// match.
type summaryItem struct {
	field  string
	metric string
	match  map[string]string
	rate   bool
}

// summaryItems are read from whichever binary's registry has them; the
// others are left out.
var summaryItems = []summaryItem{
	{field: "requests_per_s", metric: "levee_ingest_requests_total", rate: true},
	{field: "accepted_events_per_s", metric: "levee_ingest_events_total", match: map[string]string{"outcome": "accepted"}, rate: true},
	{field: "spooled_events_per_s", metric: "levee_ingest_spooled_events_total", rate: true},
	{field: "rejected_events_per_s", metric: "levee_ingest_events_total", match: map[string]string{"outcome": "rejected"}, rate: true},
	{field: "mode", metric: "levee_degrade_mode"},
	{field: "spool_records", metric: "levee_spool_records"},
	{field: "spool_bytes", metric: "levee_spool_bytes"},
	{field: "publish_inflight_events", metric: "levee_publish_inflight_events"},
	{field: "admission_limit", metric: "levee_limiter_limit", match: map[string]string{"limiter": "admission"}},
	{field: "written_rows_per_s", metric: "levee_sink_rows_total", match: map[string]string{"result": "inserted"}, rate: true},
	{field: "queue_depth", metric: "levee_consumer_pending_messages"},
	{field: "sink_limit", metric: "levee_limiter_limit", match: map[string]string{"limiter": "sink"}},
	{field: "outstanding_events", metric: "levee_worker_outstanding_events"},
	{field: "breaker", metric: "levee_breaker_state"},
	{field: "sink_errors_per_s", metric: "levee_sink_errors_total", rate: true},
	{field: "dead_lettered_per_s", metric: "levee_dlq_events_total", rate: true},
}

// Summary writes one INFO line every interval with the figures an operator
// looks at first (rates, mode, depths, limits), read from the registry: the
// log carries a periodic picture instead of a line per event.
type Summary struct {
	reg      prometheus.Gatherer
	log      *zap.Logger
	interval time.Duration
	last     map[string]float64
	lastAt   time.Time
}

// NewSummary returns a summary of reg's metrics written to log.
func NewSummary(reg prometheus.Gatherer, log *zap.Logger, interval time.Duration) *Summary {
	return &Summary{reg: reg, log: log.With(zap.String("component", "summary")), interval: interval}
}

// Run writes the summary every interval until ctx ends; a zero interval
// writes none.
func (s *Summary) Run(ctx context.Context) error {
	if s.interval <= 0 {
		<-ctx.Done()
		return nil
	}
	s.Write(time.Now()) // the baseline for the first rates
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-t.C:
			s.Write(now)
		}
	}
}

// Write gathers the metrics and writes the summary line; the first call
// only records the baseline of the rates.
func (s *Summary) Write(now time.Time) {
	mfs, err := s.reg.Gather()
	if err != nil {
		return
	}
	byName := make(map[string]*dto.MetricFamily, len(mfs))
	for _, mf := range mfs {
		byName[mf.GetName()] = mf
	}
	values := map[string]float64{}
	var fields []zap.Field
	for _, it := range summaryItems {
		mf, ok := byName[it.metric]
		if !ok {
			continue
		}
		v, ok := sum(mf, it.match)
		if !ok {
			continue
		}
		values[it.field] = v
		if !it.rate {
			fields = append(fields, zap.Float64(it.field, v))
			continue
		}
		if s.last != nil { // a series missing at the baseline had not counted anything yet
			secs := now.Sub(s.lastAt).Seconds()
			fields = append(fields, zap.Float64(it.field, round((v-s.last[it.field])/max(secs, 1e-9))))
		}
	}
	first := s.last == nil
	s.last, s.lastAt = values, now
	if !first {
		s.log.Info("summary", fields...)
	}
}

func sum(mf *dto.MetricFamily, match map[string]string) (float64, bool) {
	var total float64
	found := false
	for _, m := range mf.GetMetric() {
		if !matches(m, match) {
			continue
		}
		found = true
		switch {
		case m.Counter != nil:
			total += m.Counter.GetValue()
		case m.Gauge != nil:
			total += m.Gauge.GetValue()
		}
	}
	return total, found
}

func matches(m *dto.Metric, match map[string]string) bool {
	for k, want := range match {
		found := false
		for _, lp := range m.GetLabel() {
			if lp.GetName() == k && lp.GetValue() == want {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func round(v float64) float64 { return float64(int64(v*10+0.5)) / 10 }
