package worker

import (
	"fmt"

	"github.com/panjf2000/ants/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/levee-dev/levee/internal/batch"
)

type metrics struct {
	fetched      prometheus.Counter
	messages     *prometheus.CounterVec
	inProgress   prometheus.Counter
	flushes      *prometheus.CounterVec
	batchRows    prometheus.Histogram
	batchBytes   prometheus.Histogram
	writeSeconds *prometheus.HistogramVec
	rows         *prometheus.CounterVec
	sinkErrors   *prometheus.CounterVec
	lag          prometheus.Histogram
	dlq          *prometheus.CounterVec
	pending      prometheus.Gauge
	ackPending   prometheus.Gauge
	redelivered  prometheus.Gauge
	streamBytes  prometheus.Gauge
	streamMsgs   prometheus.Gauge
	streamMax    prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer, w *Worker) (*metrics, error) {
	m := &metrics{
		fetched: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "levee_worker_fetched_messages_total",
			Help: "Messages fetched from the consumer.",
		}),
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "levee_worker_messages_total",
			Help: "Messages settled, by result (acked, nakked, dead_lettered).",
		}, []string{"result"}),
		inProgress: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "levee_worker_in_progress_total",
			Help: "InProgress signals sent for messages waiting longer than half the AckWait.",
		}),
		flushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "levee_batch_flushes_total",
			Help: "Batches flushed, by trigger (rows, bytes, linger, shutdown, unbatched).",
		}, []string{"reason"}),
		batchRows: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "levee_batch_size_rows",
			Help:    "Events per flushed batch.",
			Buckets: []float64{1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000},
		}),
		batchBytes: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "levee_batch_size_bytes",
			Help:    "Bytes per flushed batch.",
			Buckets: prometheus.ExponentialBuckets(256, 4, 9),
		}),
		writeSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "levee_sink_write_duration_seconds",
			Help:    "Time of one sink write (a batch), by result (ok, error).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"result"}),
		rows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "levee_sink_rows_total",
			Help: "Events written to the sink, by result (inserted, duplicate: the id was already stored).",
		}, []string{"result"}),
		sinkErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "levee_sink_errors_total",
			Help: "Failed sink writes, by kind (unavailable, data: refused for its content).",
		}, []string{"kind"}),
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "levee_worker_lag_seconds",
			Help:    "End-to-end lag: time from an event's receipt by ingest to its row being committed.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600},
		}),
		dlq: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "levee_dlq_events_total",
			Help: "Events and messages sent to the dead-letter stream, by reason (undecodable, invalid_event, sink_rejected).",
		}, []string{"reason"}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "levee_consumer_pending_messages",
			Help: "Messages in the stream not yet delivered to a worker (queue depth), from consumer info.",
		}),
		ackPending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "levee_consumer_ack_pending_messages",
			Help: "Messages delivered and not yet acknowledged, from consumer info.",
		}),
		redelivered: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "levee_consumer_redelivered_messages",
			Help: "Messages delivered more than once and not yet acknowledged, from consumer info.",
		}),
	}
	m.streamBytes = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "levee_stream_bytes",
		Help: "Bytes stored in the EVENTS stream (messages not yet acknowledged), from stream info.",
	})
	m.streamMsgs = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "levee_stream_messages",
		Help: "Messages stored in the EVENTS stream, from stream info.",
	})
	m.streamMax = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "levee_stream_max_bytes",
		Help: "The EVENTS stream's max_bytes: past it, publishes are refused (DiscardNew) and ingest spools.",
	})
	outstanding := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "levee_worker_outstanding_events",
		Help: "Events fetched by this worker and not yet written (or dead-lettered).",
	}, func() float64 { return float64(w.outstanding.Load()) })
	collectors := []prometheus.Collector{
		m.fetched, m.messages, m.inProgress, m.flushes, m.batchRows, m.batchBytes, m.writeSeconds,
		m.rows, m.sinkErrors, m.lag, m.dlq, m.pending, m.ackPending, m.redelivered, outstanding,
		m.streamBytes, m.streamMsgs, m.streamMax,
		poolCollector{"decode": w.decode, "write": w.write},
	}
	for _, c := range collectors {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("worker: register metrics: %w", err)
		}
	}
	for _, r := range []string{"acked", "nakked", "dead_lettered"} {
		m.messages.WithLabelValues(r)
	}
	for _, r := range append(batch.Reasons, reasonUnbatched) {
		m.flushes.WithLabelValues(string(r))
	}
	for _, r := range []string{"inserted", "duplicate"} {
		m.rows.WithLabelValues(r)
	}
	for _, r := range []string{"ok", "error"} {
		m.writeSeconds.WithLabelValues(r)
	}
	for _, k := range []string{"unavailable", "data"} {
		m.sinkErrors.WithLabelValues(k)
	}
	for _, r := range []string{dlqUndecodable, dlqInvalidEvent, dlqSinkRejected} {
		m.dlq.WithLabelValues(r)
	}
	return m, nil
}

var (
	poolRunningDesc  = prometheus.NewDesc("levee_pool_running", "Busy goroutines of an ants pool (decode, write).", []string{"pool"}, nil)
	poolWaitingDesc  = prometheus.NewDesc("levee_pool_waiting", "Tasks blocked waiting for a goroutine of an ants pool.", []string{"pool"}, nil)
	poolCapacityDesc = prometheus.NewDesc("levee_pool_capacity", "Size of an ants pool; the write pool's size is the sink concurrency limit.", []string{"pool"}, nil)
)

// poolCollector reads the ants pools' counters at scrape time.
type poolCollector map[string]*ants.Pool

func (c poolCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- poolRunningDesc
	ch <- poolWaitingDesc
	ch <- poolCapacityDesc
}

func (c poolCollector) Collect(ch chan<- prometheus.Metric) {
	for name, p := range c {
		ch <- prometheus.MustNewConstMetric(poolRunningDesc, prometheus.GaugeValue, float64(p.Running()), name)
		ch <- prometheus.MustNewConstMetric(poolWaitingDesc, prometheus.GaugeValue, float64(p.Waiting()), name)
		ch <- prometheus.MustNewConstMetric(poolCapacityDesc, prometheus.GaugeValue, float64(p.Cap()), name)
	}
}
