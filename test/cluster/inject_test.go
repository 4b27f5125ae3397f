package cluster

import (
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
)

// killWorker waits until worker 1 is writing a batch (its write pool is
// busy), kills it with SIGKILL and starts it again 3 s later. The messages
// it held come back to the other workers after worker.ack_wait.
func (f *faultRunner) killWorker(ft *fault) {
	w := f.tp.workers[0]
	deadline := time.Now().Add(10 * time.Second)
	var m map[string]float64
	busy := false
	for !busy && time.Now().Before(deadline) {
		m = f.s.scrapeNow(w.proc)
		busy = sum(m, "levee_pool_running", `pool="write"`) > 0
	}
	ft.at = time.Now()
	w.kill9()
	ft.note = fmt.Sprintf("killed %s with a write in progress: %v, holding %.0f fetched events not yet written",
		w.name, busy, sum(m, "levee_worker_outstanding_events"))
	time.Sleep(3 * time.Second)
	ready := f.tp.startWorker(0)
	ft.note += fmt.Sprintf("; restarted after 3 s, ready in %v", ready.Round(time.Millisecond))
}

// killLeader kills the NATS node that leads the EVENTS stream and starts it
// again 5 s later (on the same store), once another node leads.
func (f *faultRunner) killLeader(ft *fault, js jetstream.JetStream) {
	leader, _ := waitLeader(f.t, js, "EVENTS", "", 10*time.Second)
	n := f.tp.nats.node(leader)
	require.NotNil(f.t, n, "leader %q is none of ours", leader)
	ft.at = time.Now()
	n.p.kill9()
	next, elected := waitLeader(f.t, js, "EVENTS", leader, 30*time.Second)
	time.Sleep(time.Until(ft.at.Add(5 * time.Second)))
	n.p.start()
	healthy := f.tp.nats.waitHealthy(n, 60*time.Second)
	ft.note = fmt.Sprintf("killed leader %s; %s leads after %v; %s restarted at 5 s, healthy (JetStream current) %v later",
		leader, next, elected.Round(time.Millisecond), leader, healthy.Round(time.Millisecond))
}

// pausePostgres stops every PostgreSQL process for 20 s. Recovery is
// measured from the resume: while the database is stopped nothing can be
// written, by definition.
func (f *faultRunner) pausePostgres(ft *fault) {
	before := f.s.total("worker", "levee_breaker_transitions_total", `to="open"`)
	ft.at = time.Now()
	require.NoError(f.t, f.tp.pg.Pause()) // the postmaster and every backend
	time.Sleep(20 * time.Second)
	require.NoError(f.t, f.tp.pg.Resume())
	ft.from = time.Now()
	ps := f.s.snapshot()
	ft.note = fmt.Sprintf("rows written while paused: %.0f; breaker opened %.0f times",
		valueAt(ps, getRows, ft.from)-valueAt(ps, getRows, ft.at.Add(time.Second)),
		f.s.total("worker", "levee_breaker_transitions_total", `to="open"`)-before)
}

// killIngest kills ingest replica 1 while the clients post; those whose
// connection breaks send the same request to replica 2. Replica 1 is
// started again 5 s later, on its own spool.
func (f *faultRunner) killIngest(ft *fault) {
	in := f.tp.ingests[0]
	f.s.scrapeNow(in.proc)
	before := f.s.load.stats()
	ft.at = time.Now()
	in.kill9()
	time.Sleep(5 * time.Second)
	ready := f.tp.startIngest(0)
	after := f.s.load.stats()
	ft.note = fmt.Sprintf("connection errors %d (each retried on the other replica); restarted after 5 s, ready in %v",
		after.ConnErrors-before.ConnErrors, ready.Round(time.Millisecond))
}
