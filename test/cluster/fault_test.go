package cluster

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The fault test's load: 8 clients, 20-50 events per request, paced to
// about faultRate events/s in total, well under what two cores sustain, so
// that a backlog built during a fault can drain while the load goes on.
const (
	faultClients = 8
	faultRate    = 3000
	window       = time.Second // rate window for the recovery time
	baseline     = 4 * time.Second
)

// faultYAML: shorter timeouts than the defaults so that each fault plays
// out within the test's time: a killed worker's messages come back after
// 10 s (not 30 s), a write to a hung database fails after 5 s and the
// breaker probes every 2 s.
const faultYAML = `worker:
  ack_wait: 10s
  nak_delay: 500ms
  write_timeout: 5s
degrade:
  normal_after: 3s
  breaker:
    open_for: 2s
`

// fault is one injected fault and what the rates did around it.
type fault struct {
	name         string
	at           time.Time // injection
	from         time.Time // recovery is measured from here: the injection, or the end of a pause
	bound        time.Duration
	baseAcc      float64 // 202'd events/s over the baseline before the fault
	baseRows     float64 // rows/s written over the baseline before the fault
	accRec       time.Duration
	rowsRec      time.Duration
	accLow       float64
	rowsLow      float64
	accOK, rowOK bool
	redelivered  float64       // growth of fetched − published from the injection to the end of the settle after it
	worstLat     time.Duration // highest 1-s mean latency of the 202 answers, from the injection to recovery
	note         string
}

// Under continuous load from clients spread over two ingest replicas, four
// faults in turn: kill -9 of a worker mid-batch, kill -9 of the NATS node
// leading the stream, PostgreSQL stopped for 20 s, kill -9 of an ingest
// replica. Every event answered 202 ends up in PostgreSQL exactly once,
// every 503 carries Retry-After, and after each fault the rates are back
// to half their level before it within a bound.
func TestFaultsUnderLoad(t *testing.T) {
	began := time.Now()
	tp := newTopology(t, topologyOpts{ingests: 2, workers: 3, replicas: 3, syncInterval: "2m", extraYAML: faultYAML})
	tp.startAll()
	js := tp.nats.connect()
	t.Logf("topology up in %v: nats %s; ingest %v", time.Since(began).Round(time.Millisecond), tp.nats.urls(), tp.publicURLs())

	interval := time.Second * faultClients * 35 / faultRate
	l := newLoader(tp.publicURLs(), "cf", 20, 50, interval)
	s := newSampler(tp, l)
	ctx, cancel := context.WithCancel(context.Background())
	swg := s.run(ctx, 250*time.Millisecond)
	stop := make(chan struct{})
	lwg := l.run(faultClients, stop)
	stopLoad := func() {
		select {
		case <-stop:
			return
		default:
		}
		close(stop)
		waitGroup(t, lwg, 2*time.Minute, "clients")
	}
	t.Cleanup(func() { stopLoad(); cancel(); swg.Wait() })
	loadStart := time.Now()

	f := &faultRunner{t: t, tp: tp, s: s}
	f.settle(5 * time.Second)
	f.run("worker kill -9 mid-batch", 15*time.Second, f.killWorker)
	f.run("NATS stream leader kill -9", 30*time.Second, func(ft *fault) { f.killLeader(ft, js) })
	f.run("PostgreSQL paused 20 s", 20*time.Second, f.pausePostgres)
	f.run("ingest kill -9", 15*time.Second, f.killIngest)
	stopLoad()
	loadFor := time.Since(loadStart)
	c := waitSink(t, tp.dsn, l, 2*time.Minute)
	// A message whose rows were committed but whose ack was lost comes back
	// after its AckWait back-off; wait for the stream to be empty, so that
	// the counts are final.
	var sc serverCounts
	require.Eventually(t, func() bool {
		sc = readServerCounts(t, js, "EVENTS", "levee-worker")
		return sc.left == 0 && sc.ackPending == 0
	}, time.Minute, 250*time.Millisecond, "the stream still holds messages")
	time.Sleep(time.Second) // the last counters
	s.sample(context.Background())
	cancel()
	swg.Wait()
	dups := duplicateIDs(t, tp.dsn)

	st := l.stats()
	fetched, published := s.total("worker", "levee_worker_fetched_messages_total"), s.total("ingest", "levee_publish_messages_total", `result="ok"`)
	t.Logf("load: %d clients for %v, %d requests (%d sends, %d events sent): 202 %d (%d events; paths %v), 503 %d (without Retry-After %d), other statuses %d %v, connection errors %d, retried %d, gave up %d",
		faultClients, loadFor.Round(time.Second), st.Requests, st.Sends, st.EventsSent, st.Status202, st.Events202, st.Paths,
		st.Status503, st.Missing503RetryAfter, st.OtherStatus, st.Other, st.ConnErrors, st.Retried, st.GaveUp)
	t.Logf("sink: rows %d, distinct %d, duplicate ids %d, lost %d, extra (landed without a 202) %d", c.rows, c.distinct, dups, c.lost, c.extra)
	t.Logf("redelivery: fetched %.0f − published %.0f = %.0f messages (sink rows already present: %.0f; DLQ %.0f); server: stored %d, delivered %d (%d more), left %d",
		fetched, published, fetched-published, s.total("worker", "levee_sink_rows_total", `result="duplicate"`),
		s.total("worker", "levee_dlq_events_total"), sc.stored, sc.delivered, int64(sc.delivered)-int64(sc.stored), sc.left)
	t.Logf("spooled events by reason: admission %.0f, unreachable %.0f, publish_error %.0f; replayed records %.0f; breaker opened %.0f times; fetched per worker %v",
		s.total("ingest", "levee_ingest_spooled_events_total", `reason="admission"`),
		s.total("ingest", "levee_ingest_spooled_events_total", `reason="unreachable"`),
		s.total("ingest", "levee_ingest_spooled_events_total", `reason="publish_error"`),
		s.total("ingest", "levee_spool_replayed_records_total"),
		s.total("worker", "levee_breaker_transitions_total", `to="open"`),
		s.perProcess("worker", "levee_worker_fetched_messages_total"))
	f.report(loadStart)

	require.Zero(t, c.lost, "events answered 202 missing from PostgreSQL")
	require.Equal(t, c.rows, c.distinct, "an id stored twice")
	require.Zero(t, dups, "duplicate ids in the table")
	require.Equal(t, st.Events202, c.distinct-c.extra, "every 202'd event found once")
	require.Zero(t, st.Missing503RetryAfter, "every 503 carries Retry-After")
	require.Zero(t, st.OtherStatus, "no status other than 202 and 503: %v", st.Other)
	require.Zero(t, st.GaveUp, "every request was answered 202 within its retries")
	require.Zero(t, s.total("worker", "levee_dlq_events_total"), "nothing dead-lettered")
	for _, ft := range f.faults {
		require.True(t, ft.accOK && ft.rowOK, "%s: rates did not come back to half their baseline", ft.name)
		require.LessOrEqual(t, max(ft.accRec, ft.rowsRec), ft.bound, "%s: recovery slower than %v", ft.name, ft.bound)
	}
	tp.stopAll()
	t.Logf("test took %v", time.Since(began).Round(time.Second))
}

// faultRunner injects faults one at a time and measures each.
type faultRunner struct {
	t      *testing.T
	tp     *topology
	s      *sampler
	faults []*fault
}

// settle waits (up to 30 s) until the sink has caught up with the clients,
// then lets the pipeline run undisturbed for at least the baseline window,
// so that the next fault's baseline holds no catch-up of the last one.
func (f *faultRunner) settle(d time.Duration) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		ps := f.s.snapshot()
		if n := len(ps); n > 0 && ps[n-1].accepted-ps[n-1].rows < faultRate/2 { // under half a second behind
			break
		}
		if time.Now().After(deadline) {
			f.t.Logf("backlog did not drain within 30 s; going on")
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	time.Sleep(max(d, baseline+time.Second))
}

// run measures the baseline, injects a fault, waits for the rates to come
// back (up to 60 s), and settles.
func (f *faultRunner) run(name string, bound time.Duration, inject func(*fault)) {
	f.t.Helper()
	ft := &fault{name: name, bound: bound}
	ps := f.s.snapshot()
	now := ps[len(ps)-1].at
	ft.baseAcc = rate(ps, getAccepted, now.Add(-baseline), now)
	ft.baseRows = rate(ps, getRows, now.Add(-baseline), now)
	f.t.Logf("%s: baseline %.0f events/s answered 202, %.0f rows/s written", name, ft.baseAcc, ft.baseRows)
	redelivered := func() float64 { ps := f.s.snapshot(); p := ps[len(ps)-1]; return p.fetched - p.published }
	r0 := redelivered()
	inject(ft)
	if ft.from.IsZero() {
		ft.from = ft.at
	}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		time.Sleep(250 * time.Millisecond)
		ps := f.s.snapshot()
		ft.accRec, ft.accLow, ft.accOK = recovery(ps, getAccepted, ft.from, ft.baseAcc, 0.5, window)
		ft.rowsRec, ft.rowsLow, ft.rowOK = recovery(ps, getRows, ft.from, ft.baseRows, 0.5, window)
		if ft.accOK && ft.rowOK && time.Since(ft.at) > 10*time.Second {
			break
		}
	}
	ft.worstLat = worstLatency(f.s.snapshot(), ft.at, ft.from.Add(max(ft.accRec, ft.rowsRec)), window)
	f.t.Logf("%s: 202 rate back to ≥50%% after %v (lowest %.0f/s, worst 1-s mean latency %v), sink rate after %v (lowest %.0f/s); %s",
		name, ft.accRec.Round(10*time.Millisecond), ft.accLow, ft.worstLat.Round(time.Millisecond),
		ft.rowsRec.Round(10*time.Millisecond), ft.rowsLow, ft.note)
	f.faults = append(f.faults, ft)
	f.settle(3 * time.Second)
	ft.redelivered = redelivered() - r0
}

// report prints the fault table and the rates per second.
func (f *faultRunner) report(start time.Time) {
	var b strings.Builder
	fmt.Fprintf(&b, "\n| fault | at | baseline 202/s | baseline rows/s | 202 rate ≥50%% after | worst 1-s mean latency | sink rate ≥50%% after | bound | redelivered msgs |\n|---|---|---|---|---|---|---|---|---|\n")
	for _, ft := range f.faults {
		fmt.Fprintf(&b, "| %s | %.1f s | %.0f | %.0f | %v (low %.0f/s) | %v | %v (low %.0f/s) | %v | %.0f |\n", ft.name,
			ft.at.Sub(start).Seconds(), ft.baseAcc, ft.baseRows, ft.accRec.Round(10*time.Millisecond), ft.accLow,
			ft.worstLat.Round(time.Millisecond), ft.rowsRec.Round(10*time.Millisecond), ft.rowsLow, ft.bound, ft.redelivered)
	}
	f.t.Log(b.String())
	ps := f.s.snapshot()
	b.Reset()
	b.WriteString("\nper second: 202'd events/s, rows written/s, mean latency of the 202 answers")
	marks := map[int]string{}
	for _, ft := range f.faults {
		marks[int(ft.at.Sub(start).Seconds())] += " ← " + ft.name
		if ft.from != ft.at {
			marks[int(ft.from.Sub(start).Seconds())] += " ← end of " + ft.name
		}
	}
	for s := 1; start.Add(time.Duration(s) * time.Second).Before(ps[len(ps)-1].at); s++ {
		to := start.Add(time.Duration(s) * time.Second)
		fmt.Fprintf(&b, "\n%4d s %7.0f %7.0f %8v%s", s, rate(ps, getAccepted, to.Add(-time.Second), to),
			rate(ps, getRows, to.Add(-time.Second), to), meanLatency(ps, to.Add(-time.Second), to).Round(time.Millisecond), marks[s-1])
	}
	f.t.Log(b.String())
}

func waitGroup(t *testing.T, wg interface{ Wait() }, d time.Duration, what string) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
		t.Errorf("%s did not finish within %v", what, d)
	}
}
