package worker_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/levee-dev/levee/internal/config"
	"github.com/levee-dev/levee/internal/event"
	"github.com/levee-dev/levee/internal/queue"
	"github.com/levee-dev/levee/internal/worker"
)

// timedSink records the latency of every write.
type timedSink struct {
	worker.Sink
	mu  sync.Mutex
	lat []time.Duration
}

func (s *timedSink) Write(ctx context.Context, evs []event.Event) (int, error) {
	start := time.Now()
	n, err := s.Sink.Write(ctx, evs)
	s.mu.Lock()
	s.lat = append(s.lat, time.Since(start))
	s.mu.Unlock()
	return n, err
}

func (s *timedSink) p99() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := slices.Clone(s.lat)
	slices.Sort(l)
	if len(l) == 0 {
		return 0
	}
	return l[len(l)*99/100]
}

// slotSink is a sink with a fixed number of service slots in front of the
// real database: up to slots writes proceed at once, each holding its slot
// for hold plus the real write; more wait in line. Beyond slots concurrent
// writes, throughput is flat and only the wait grows: a sink with a knee.
type slotSink struct {
	worker.Sink
	slots chan struct{}
	hold  time.Duration
}

func newSlotSink(s worker.Sink, slots int, hold time.Duration) *slotSink {
	return &slotSink{Sink: s, slots: make(chan struct{}, slots), hold: hold}
}

func (s *slotSink) Write(ctx context.Context, evs []event.Event) (int, error) {
	select {
	case s.slots <- struct{}{}:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	defer func() { <-s.slots }()
	time.Sleep(s.hold)
	return s.Sink.Write(ctx, evs)
}

// preload publishes n events straight to the stream.
func (e *env) preload(n int) {
	e.t.Helper()
	nc, js := e.connect(jetstream.WithPublishAsyncTimeout(10 * time.Second))
	defer nc.Close()
	pub, err := queue.NewPublisher(js, e.cfg.NATS.Stream.SubjectsPrefix, 4, queue.SettingsFrom(e.cfg), e.log, prometheus.NewRegistry())
	require.NoError(e.t, err)
	var wg sync.WaitGroup
	for c := range 8 {
		wg.Go(func() {
			for i := c * 1000; i < n; i += 8 * 1000 {
				evs := decodeBulk(e.t, bulk("b", i, min(1000, n-i)))
				require.NoError(e.t, pub.Publish(context.Background(), evs))
			}
		})
	}
	wg.Wait()
	require.NoError(e.t, pub.Close(context.Background()))
}

// BenchmarkSinkConcurrency compares the adaptive sink limit with static
// limits against PostgreSQL behind 4 service slots of 20 ms (a knee at 4
// concurrent writes): throughput (events/s) and p99 sink-write latency for
// the same backlog.
//
//	go test -run '^$' -bench BenchmarkSinkConcurrency -benchtime 1x ./internal/worker/
func BenchmarkSinkConcurrency(b *testing.B) {
	const events = 1_200_000
	cases := []struct {
		name     string
		adaptive bool
		alg      string
		limit    int
	}{
		{"static-1", false, "", 1}, {"static-2", false, "", 2}, {"static-4", false, "", 4},
		{"static-8", false, "", 8}, {"static-16", false, "", 16},
		{"adaptive-gradient2", true, "gradient2", 8}, {"adaptive-aimd", true, "aimd", 8},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			for range b.N {
				e := newEnv(b, "postgres", func(cfg *config.Config) {
					cfg.Batch.MaxRows = 500
					cfg.Optimization.Adaptive = c.adaptive
					cfg.Worker.MaxInflightBatches = c.limit
					cfg.Backpressure.MaxLimit = 16
					if c.alg != "" {
						cfg.Backpressure.Algorithm = c.alg
					}
				})
				e.preload(events)
				ts := &timedSink{Sink: newSlotSink(e.sink, 4, 20*time.Millisecond)}
				start := time.Now()
				w := e.startWorker(ts)
				require.Eventually(b, func() bool {
					n, err := e.sink.Count(context.Background())
					return err == nil && n == events
				}, 5*time.Minute, 20*time.Millisecond)
				took := time.Since(start)
				limit := value(b, w, "levee_limiter_limit", "limiter", "sink")
				w.stop(b)
				b.ReportMetric(float64(events)/took.Seconds(), "events/s")
				b.ReportMetric(float64(ts.p99().Microseconds())/1000, "p99-write-ms")
				b.ReportMetric(limit, "final-limit")
				fmt.Printf("%-20s %8.0f events/s  p99 write %6.1f ms  final limit %2.0f\n",
					c.name, float64(events)/took.Seconds(), float64(ts.p99().Microseconds())/1000, limit)
			}
		})
	}
}
