package cluster

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The figures of docs/cluster.md. Not run in CI; run with
//
//	LEVEE_CLUSTER_BENCH=1 go test -count=1 -v -timeout 30m -run Bench ./test/cluster/
func benchOnly(t *testing.T) {
	if os.Getenv("LEVEE_CLUSTER_BENCH") == "" {
		t.Skip("a measurement, not a test: set LEVEE_CLUSTER_BENCH=1")
	}
}

const (
	benchClients = 16
	benchEvents  = 100 // per request
	benchWarm    = 3 * time.Second
)

// benchFor is each measured run's length (LEVEE_CLUSTER_BENCH_SECONDS, default 20).
func benchFor() time.Duration {
	if s, err := strconv.Atoi(os.Getenv("LEVEE_CLUSTER_BENCH_SECONDS")); err == nil && s > 0 {
		return time.Duration(s) * time.Second
	}
	return 20 * time.Second
}

// End-to-end throughput of the loopback cluster with 1, 2 and 3 workers
// and 1 and 2 ingest replicas (and R1 against R3): clients post bulk
// requests of 100 events back to back for benchFor; the figure is the rows
// the sink gained in that window per second.
func TestBenchThroughput(t *testing.T) {
	benchOnly(t)
	for _, r := range []struct{ ingests, workers, replicas int }{
		{2, 1, 3}, {2, 2, 3}, {2, 3, 3}, {1, 3, 3}, {2, 3, 1},
	} {
		t.Run(fmt.Sprintf("ingest=%d/workers=%d/R%d", r.ingests, r.workers, r.replicas), func(t *testing.T) {
			tp := newTopology(t, topologyOpts{ingests: r.ingests, workers: r.workers, replicas: r.replicas, syncInterval: "2m"})
			tp.startAll()
			benchRun(t, tp)
			tp.stopAll()
		})
	}
}

// benchRun loads tp and reports throughput, worker shares and CPU use.
func benchRun(t *testing.T, tp *topology) {
	t.Logf("load average before: %s", loadavg())
	l := newLoader(tp.publicURLs(), "bench", benchEvents, benchEvents, 0)
	s := newSampler(tp, l)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	swg := s.run(ctx, 250*time.Millisecond)
	stop := make(chan struct{})
	lwg := l.run(benchClients, stop)
	time.Sleep(benchWarm)

	s.sample(ctx)
	p0, cpu0, st0, lat0 := last(s), cpuTimes(tp), l.stats(), l.latNanos.Load()
	fetched0, rows0 := s.perProcess("worker", "levee_worker_fetched_messages_total"), s.perProcess("worker", "levee_sink_rows_total", `result="inserted"`)
	time.Sleep(benchFor())
	s.sample(ctx)
	p1, cpu1, st1, lat1 := last(s), cpuTimes(tp), l.stats(), l.latNanos.Load()
	fetched1, rows1 := s.perProcess("worker", "levee_worker_fetched_messages_total"), s.perProcess("worker", "levee_sink_rows_total", `result="inserted"`)
	close(stop)
	waitGroup(t, lwg, time.Minute, "clients")
	secs := p1.at.Sub(p0.at).Seconds()
	drainStart := time.Now()
	c := waitSink(t, tp.dsn, l, 3*time.Minute)
	drain := time.Since(drainStart)
	s.sample(ctx)
	cancel()
	swg.Wait()

	reqs := st1.Status202 - st0.Status202
	t.Logf("window %.1f s: 202'd %.0f events/s (%d requests, mean latency %v), written %.0f rows/s; backlog at the end %.0f events, drained in %v; 503 %d, connection errors %d",
		secs, (p1.accepted-p0.accepted)/secs, reqs, time.Duration((lat1-lat0)/max(reqs, 1)).Round(time.Millisecond),
		(p1.rows-p0.rows)/secs, p1.accepted-p1.rows, drain.Round(100*time.Millisecond), st1.Status503, st1.ConnErrors)
	var names []string
	for n := range fetched1 {
		names = append(names, n)
	}
	sort.Strings(names)
	var share []string
	totalF, totalR := 0.0, 0.0
	for _, n := range names {
		totalF += fetched1[n] - fetched0[n]
		totalR += rows1[n] - rows0[n]
	}
	for _, n := range names {
		share = append(share, fmt.Sprintf("%s %.0f%% of messages (%.0f), %.0f%% of rows",
			n, 100*(fetched1[n]-fetched0[n])/totalF, fetched1[n]-fetched0[n], 100*(rows1[n]-rows0[n])/totalR))
	}
	t.Logf("worker shares: %s", strings.Join(share, "; "))
	t.Logf("CPU in the window (cores): %s; load average after: %s", cpuReport(cpu0, cpu1, secs), loadavg())
	require.Zero(t, c.lost)
	require.Equal(t, c.rows, c.distinct)
}

// loadavg is the first three fields of /proc/loadavg: on a shared machine,
// other work skews the figures.
func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func last(s *sampler) point {
	ps := s.snapshot()
	return ps[len(ps)-1]
}

// cpuTimes reads the user+system CPU seconds of every process of the
// topology, and of this test process (the clients), by role.
func cpuTimes(tp *topology) map[string]float64 {
	m := map[string]float64{"clients (test)": procCPU(os.Getpid())}
	add := func(role string, p *proc) {
		p.mu.Lock()
		pid := p.cmd.Process.Pid
		p.mu.Unlock()
		m[role] += procCPU(pid)
	}
	for _, n := range tp.nats.nodes {
		add("nats ×3", n.p)
	}
	for _, in := range tp.ingests {
		add(fmt.Sprintf("ingest ×%d", len(tp.ingests)), in.proc)
	}
	for _, w := range tp.workers {
		add(fmt.Sprintf("worker ×%d", len(tp.workers)), w.proc)
	}
	if pids, err := pgProcs(tp.pg); err == nil {
		for _, pid := range pids {
			m["postgres"] += procCPU(pid)
		}
	}
	return m
}

// procCPU is utime+stime of a process in seconds (clock ticks of 1/100 s).
func procCPU(pid int) float64 {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	// After "pid (comm) ": state is field 0, utime 11, stime 12.
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	s, _ := strconv.ParseFloat(f[12], 64)
	return (u + s) / 100
}

func cpuReport(a, b map[string]float64, secs float64) string {
	var keys []string
	for k := range b {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []string
	total := 0.0
	for _, k := range keys {
		d := (b[k] - a[k]) / secs
		total += d
		out = append(out, fmt.Sprintf("%s %.2f", k, d))
	}
	return fmt.Sprintf("%s; total %.2f of 2", strings.Join(out, ", "), total)
}
