package degrade

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type spoolMetrics struct {
	appended, replayed    prometheus.Counter
	full, errors, corrupt prometheus.Counter
	fsyncSeconds          prometheus.Histogram
	groupRecords          prometheus.Histogram
}

// newSpoolMetrics registers the spool's metrics. Its depth gauges read s
// at scrape time, so no code path that changes the spool has to update them.
func newSpoolMetrics(reg prometheus.Registerer, s *Spool) (*spoolMetrics, error) {
	bytes := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "levee_spool_bytes",
		Help: "Bytes in the spool not yet replayed to the queue."},
		func() float64 { _, b := s.Len(); return float64(b) })
	records := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "levee_spool_records",
		Help: "Records (one per spooled request) in the spool not yet replayed."},
		func() float64 { n, _ := s.Len(); return float64(n) })
	capacity := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "levee_spool_capacity_bytes",
		Help: "degrade.spool.max_bytes: appends beyond it are refused."},
		func() float64 { return float64(s.opts.MaxBytes) })
	m := &spoolMetrics{
		appended: prometheus.NewCounter(prometheus.CounterOpts{Name: "levee_spool_appended_records_total",
			Help: "Records appended and fsynced."}),
		replayed: prometheus.NewCounter(prometheus.CounterOpts{Name: "levee_spool_replayed_records_total",
			Help: "Records replayed to the queue and removed from the spool."}),
		full: prometheus.NewCounter(prometheus.CounterOpts{Name: "levee_spool_full_total",
			Help: "Appends refused because the spool was full."}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{Name: "levee_spool_write_errors_total",
			Help: "Failed spool writes or fsyncs (each fails a whole group of appends)."}),
		corrupt: prometheus.NewCounter(prometheus.CounterOpts{Name: "levee_spool_corrupt_bytes_total",
			Help: "Bytes skipped by the reader because they did not verify."}),
		fsyncSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "levee_spool_fsync_duration_seconds",
			Help:    "Time to write and fsync one group of appends.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1}}),
		groupRecords: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "levee_spool_group_commit_records",
			Help:    "Appends sharing one fsync (group commit).",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024}}),
	}
	for _, c := range []prometheus.Collector{bytes, records, capacity, m.appended, m.replayed,
		m.full, m.errors, m.corrupt, m.fsyncSeconds, m.groupRecords} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("degrade: register metrics: %w", err)
		}
	}
	return m, nil
}
