package loadgen

import (
	"context"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"
)

const workerExposition = `# HELP levee_consumer_pending_messages Messages in the stream not yet delivered to a worker (queue depth), from consumer info.
# TYPE levee_consumer_pending_messages gauge
levee_consumer_pending_messages 1234
# HELP levee_sink_rows_total Events written to the sink, by result (inserted, duplicate: the id was already stored).
# TYPE levee_sink_rows_total counter
levee_sink_rows_total{result="duplicate"} 7
levee_sink_rows_total{result="inserted"} 653614
# HELP levee_worker_lag_seconds End-to-end lag: time from an event's receipt by ingest to its row being committed.
# TYPE levee_worker_lag_seconds histogram
levee_worker_lag_seconds_bucket{le="0.01"} 0
levee_worker_lag_seconds_bucket{le="0.1"} 50
levee_worker_lag_seconds_bucket{le="1"} 90
levee_worker_lag_seconds_bucket{le="10"} 100
levee_worker_lag_seconds_bucket{le="+Inf"} 100
levee_worker_lag_seconds_sum 31.5
levee_worker_lag_seconds_count 100
# HELP go_goroutines Number of goroutines that currently exist.
# TYPE go_goroutines gauge
go_goroutines 42
`

const ingestExposition = `# TYPE levee_ingest_events_total counter
levee_ingest_events_total{outcome="accepted",path="direct"} 500
levee_ingest_events_total{outcome="accepted",path="queue"} 1000
levee_ingest_events_total{outcome="rejected",path="none"} 3
# TYPE levee_spool_events gauge
levee_spool_events 17
`

func TestExposition(t *testing.T) {
	e, err := ParseExposition(strings.NewReader(workerExposition))
	require.NoError(t, err)
	tests := []struct {
		name  string
		match []string
		want  float64
		found bool
	}{
		{metricPending, nil, 1234, true},
		{metricRows, []string{"result", "inserted"}, 653614, true},
		{metricRows, nil, 653621, true}, // every series summed
		{metricRows, []string{"result", "nope"}, 0, false},
		{metricSpool, nil, 0, false}, // absent
		{"go_goroutines", nil, 42, true},
	}
	for _, tc := range tests {
		v, ok := e.Value(tc.name, tc.match...)
		require.Equal(t, tc.found, ok, "%s %v", tc.name, tc.match)
		require.Equal(t, tc.want, v, "%s %v", tc.name, tc.match)
	}
	bs, ok := e.Buckets(metricLag)
	require.True(t, ok)
	require.Equal(t, []Bucket{{0.01, 0}, {0.1, 50}, {1, 90}, {10, 100}, {math.Inf(1), 100}}, bs)
	_, ok = e.Buckets(metricPending) // a gauge is not a histogram
	require.False(t, ok)

	_, err = ParseExposition(strings.NewReader("not a metric line {"))
	require.Error(t, err)
}

func TestBucketQuantile(t *testing.T) {
	bs := []Bucket{{0.01, 0}, {0.1, 50}, {1, 90}, {10, 100}, {math.Inf(1), 100}}
	require.InDelta(t, 0.1, BucketQuantile(0.5, bs), 1e-9)    // rank 50 = top of the 0.01–0.1 bucket
	require.InDelta(t, 0.055, BucketQuantile(0.25, bs), 1e-9) // halfway into it
	require.InDelta(t, 5.5, BucketQuantile(0.95, bs), 1e-9)   // halfway into 1–10
	require.InDelta(t, 10, BucketQuantile(1, bs), 1e-9)       // top
	require.True(t, math.IsNaN(BucketQuantile(0.5, []Bucket{{1, 0}, {math.Inf(1), 0}})))
	inf := []Bucket{{1, 10}, {math.Inf(1), 20}}
	require.InDelta(t, 1, BucketQuantile(0.99, inf), 1e-9) // in +Inf: the largest finite bound

	later := []Bucket{{0.1, 60}, {1, 150}, {math.Inf(1), 160}}
	earlier := []Bucket{{0.1, 50}, {1, 90}, {math.Inf(1), 100}}
	d := SubBuckets(later, earlier)
	require.Equal(t, []Bucket{{0.1, 10}, {1, 60}, {math.Inf(1), 60}}, d)
	require.Equal(t, []Bucket{{0.1, 110}, {1, 240}, {math.Inf(1), 260}}, AddBuckets(later, earlier))
}

func TestSamplerReadsServices(t *testing.T) {
	var rows atomic.Int64
	worker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		n := rows.Add(1000)
		_, _ = w.Write([]byte(strings.Replace(workerExposition, "653614", strconv.FormatInt(n, 10), 1)))
	}))
	defer worker.Close()
	ingest := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte(ingestExposition))
	}))
	defer ingest.Close()
	host := func(s *httptest.Server) string { return strings.TrimPrefix(s.URL, "http://") }

	s := NewSampler(Targets{IngestAdmin: host(ingest), WorkerAdmins: []string{host(worker)}}, 50*time.Millisecond, zaptest.NewLogger(t))
	ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
	defer cancel()
	ser := s.Run(ctx)
	require.NotEmpty(t, ser.Samples)
	last := ser.Samples[len(ser.Samples)-1]
	require.Equal(t, 1234.0, last.QueueDepth)
	require.Equal(t, 17.0, last.SpoolEvents)
	require.Greater(t, last.SinkRate, 0.0) // rows grow 1000 per scrape
	// Workers' inserted rows plus ingest's direct path (500).
	require.Zero(t, (int64(last.SinkRows)-500)%1000)
	require.LessOrEqual(t, int64(last.SinkRows)-500, rows.Load())
	o := ser.Observe(time.Time{}, time.Now().Add(time.Hour))
	require.Equal(t, []string{metricDegrade}, o.Absent)
	require.Equal(t, 1234.0, o.QueueMax)
}
