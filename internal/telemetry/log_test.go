package telemetry

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/levee-dev/levee/internal/config"
)

func policy(t *testing.T) (*Logging, *observer.ObservedLogs, *time.Time) {
	t.Helper()
	level := zap.NewAtomicLevelAt(zapcore.DebugLevel)
	core, logs := observer.New(level)
	l := NewLoggingCore(core, level, config.Log{WarnBurst: 5, WarnInterval: time.Second, DebugSample: 100}, "test")
	now := time.Unix(1_700_000_000, 0)
	l.warn.now = func() time.Time { return now }
	return l, logs, &now
}

// 10,000 WARNs of one message in a second: the burst is written, then one
// line with the count of the others once the interval is over.
func TestWarnIsRateLimitedWithSuppressionCount(t *testing.T) {
	l, logs, now := policy(t)
	log := l.Logger.With(zap.String("component", "x"))
	for i := range 10_000 {
		log.Warn("publish failed", zap.Int("i", i))
		*now = now.Add(50 * time.Microsecond) // 10,000 in half a second
	}
	require.Equal(t, 5, logs.FilterMessage("publish failed").Len(), "only the burst so far")
	*now = now.Add(time.Second)
	l.warn.flush(false)
	lines := logs.FilterMessage("publish failed").All()
	require.Len(t, lines, 6)
	last := lines[5].ContextMap()
	require.EqualValues(t, 9_995, last["suppressed"])
	require.Equal(t, "x", last["component"], "the count keeps the logger's fields")

	// Another message has its own budget.
	log.Warn("spool slow")
	require.Equal(t, 1, logs.FilterMessage("spool slow").Len())
	// A new interval starts a new burst.
	for range 7 {
		log.Warn("publish failed")
	}
	require.Len(t, logs.FilterMessage("publish failed").All(), 11)
	*now = now.Add(2 * time.Second)
	log.Warn("publish failed") // the next occurrence reports the previous interval's count
	lines = logs.FilterMessage("publish failed").All()
	require.EqualValues(t, 2, lines[len(lines)-2].ContextMap()["suppressed"])
}

// ERROR is never limited.
func TestErrorIsNeverLimited(t *testing.T) {
	l, logs, _ := policy(t)
	for range 5000 {
		l.Logger.Error("sink write failed")
	}
	require.Equal(t, 5000, logs.FilterMessage("sink write failed").Len())
}

// DEBUG is sampled: the first 10 of a message per second, then 1 in 100.
func TestDebugIsSampled(t *testing.T) {
	l, logs, _ := policy(t)
	for range 10_010 {
		l.Logger.Debug("request")
	}
	n := logs.FilterMessage("request").Len()
	require.InDelta(t, 10+100, n, 2, "got %d", n)
	// INFO is not sampled.
	for range 1000 {
		l.Logger.Info("x")
	}
	require.Equal(t, 1000, logs.FilterMessage("x").Len())
}

// The summary line appears each interval with rates computed over it.
func TestSummaryLine(t *testing.T) {
	reg := prometheus.NewRegistry()
	events := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "levee_ingest_events_total"}, []string{"outcome", "path"})
	rows := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "levee_sink_rows_total"}, []string{"result"})
	mode := prometheus.NewGauge(prometheus.GaugeOpts{Name: "levee_degrade_mode"})
	reg.MustRegister(events, rows, mode)
	core, logs := observer.New(zapcore.InfoLevel)
	s := NewSummary(reg, zap.New(core), 10*time.Second)
	t0 := time.Unix(1_700_000_000, 0)
	s.Write(t0)
	require.Zero(t, logs.Len(), "the first call is the baseline")
	events.WithLabelValues("accepted", "queue").Add(400)
	events.WithLabelValues("accepted", "spool").Add(100)
	events.WithLabelValues("rejected", "none").Add(7)
	rows.WithLabelValues("inserted").Add(300)
	rows.WithLabelValues("duplicate").Add(9)
	mode.Set(1)
	s.Write(t0.Add(10 * time.Second))
	require.Equal(t, 1, logs.Len())
	f := logs.All()[0].ContextMap()
	require.Equal(t, "summary", logs.All()[0].Message)
	require.Equal(t, 50.0, f["accepted_events_per_s"])
	require.Equal(t, 0.7, f["rejected_events_per_s"])
	require.Equal(t, 30.0, f["written_rows_per_s"])
	require.Equal(t, 1.0, f["mode"])
	require.NotContains(t, f, "queue_depth", "metrics the binary lacks are left out")

	ctx, cancel := context.WithCancel(context.Background())
	s2 := NewSummary(reg, zap.New(core), 20*time.Millisecond)
	done := make(chan struct{})
	go func() { _ = s2.Run(ctx); close(done) }()
	require.Eventually(t, func() bool { return logs.FilterMessage("summary").Len() >= 3 }, 5*time.Second, 5*time.Millisecond)
	cancel()
	<-done
}
