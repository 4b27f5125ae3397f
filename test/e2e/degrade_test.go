package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/levee-dev/levee/internal/pgtest"
)

// cluster is ingest and a worker as processes, on an external nats-server.
type cluster struct {
	t                     *testing.T
	dir, config           string
	public, admin, wadmin string
	nats                  *natsProc
	ingest, worker        *proc
	read                  sinkReader
	pgDSN                 string
}

// newCluster writes a config for an external NATS and the given sink, with
// extra YAML appended under the top level (it must not repeat a section
// the base config sets; use flags for those).
func newCluster(t *testing.T, sinkYAML string, read sinkReader) *cluster {
	c := &cluster{t: t, dir: t.TempDir(), public: freePort(t), admin: freePort(t), wadmin: freePort(t), read: read}
	c.config = filepath.Join(c.dir, "levee.yaml")
	c.nats = startNATS(t)
	writeConfig(t, c.config, fmt.Sprintf(`
ingest:
  listen: %q
  admin_listen: %q
  max_body_bytes: 262144
nats:
  url: %q
worker:
  admin_listen: %q
  ack_wait: 5s
  nak_delay: 500ms
reload:
  interval: 200ms
degrade:
  spool:
    dir: %q
    max_bytes: 268435456
%s`, c.public, c.admin, c.nats.url(), c.wadmin, filepath.Join(c.dir, "spool"), sinkYAML))
	return c
}

func (c *cluster) startIngest(args ...string) {
	c.ingest = start(c.t, "ingest", append([]string{"-config", c.config}, args...)...)
	waitReady(c.t, c.public)
}

func (c *cluster) startWorker(args ...string) {
	c.worker = start(c.t, "worker", append([]string{"-config", c.config}, args...)...)
	waitReady(c.t, c.wadmin)
}

func sqliteSink(t *testing.T) (string, sinkReader) {
	db := filepath.Join(t.TempDir(), "levee.db")
	return fmt.Sprintf("sink:\n  kind: sqlite\n  sqlite:\n    path: %q\n", db), sqliteReader(db)
}

// JetStream stops while 8 clients post: every post is still answered 202,
// from the spool; once JetStream is back, every accepted event reaches the
// sink exactly once.
func TestQueueDownSpoolsEverything(t *testing.T) {
	sinkYAML, read := sqliteSink(t)
	c := newCluster(t, sinkYAML, read)
	c.startIngest()
	c.startWorker()
	p := newPoster("http://"+c.public, "qd", 20)
	stop := make(chan struct{})
	wg := p.run(8, stop)

	time.Sleep(2 * time.Second)
	c.nats.stop()
	_, before, _ := p.snapshot()
	time.Sleep(5 * time.Second)
	_, during, paths := p.snapshot()
	c.nats.start()
	time.Sleep(3 * time.Second)
	close(stop)
	wg.Wait()

	accepted, status, allPaths := p.snapshot()
	t.Logf("accepted %d events; status %v; paths %v (spool while down: %d requests)", accepted, status, allPaths, paths["spool"])
	require.Equal(t, map[int]int{202: status[202]}, status, "every post answered 202")
	require.Greater(t, during[202]-before[202], 0, "posts kept succeeding while JetStream was down")
	require.Positive(t, paths["spool"])
	requireExactlyOnce(t, p, read, 90*time.Second)
	require.Equal(t, 0.0, metricValue(t, c.admin, "levee_spool_records"), "spool drained")
	c.worker.stop(t)
	c.ingest.stop(t)
}

// When the spool is full, the answer is 503 with Retry-After, and none of
// the events accepted before is lost.
func TestSpoolFullRefusesWith503(t *testing.T) {
	sinkYAML, read := sqliteSink(t)
	c := newCluster(t, sinkYAML, read)
	c.startIngest("-degrade.spool.max_bytes", "4194304")
	c.nats.stop()
	p := newPoster("http://"+c.public, "sf", 200)
	var got503 bool
	for i := 0; i < 2000 && !got503; i++ {
		status, _ := p.postOnce()
		got503 = status == 503
	}
	require.True(t, got503, "the spool filled up")
	accepted, status, paths := p.snapshot()
	t.Logf("accepted %d, status %v, paths %v, Retry-After %v", accepted, status, paths, p.retryHdr[:1])
	require.Equal(t, accepted/200, paths["spool"])
	require.Equal(t, "5", p.retryHdr[0])
	require.Equal(t, 2.0, metricValue(t, c.admin, "levee_degrade_mode"), "critical mode")

	c.nats.start()
	c.startWorker()
	requireExactlyOnce(t, p, read, 90*time.Second)
	// Once drained, requests are accepted again.
	require.Eventually(t, func() bool { s, _ := p.postOnce(); return s == 202 }, 30*time.Second, 200*time.Millisecond)
	c.worker.stop(t)
	c.ingest.stop(t)
}

// kill -9 of ingest while it spools: after a restart, every event it
// answered 202 for lands in the sink exactly once.
func TestIngestKill9WhileSpooling(t *testing.T) {
	sinkYAML, read := sqliteSink(t)
	c := newCluster(t, sinkYAML, read)
	c.startIngest()
	c.nats.stop()
	p := newPoster("http://"+c.public, "k9", 20)
	stop := make(chan struct{})
	wg := p.run(8, stop)
	time.Sleep(2 * time.Second)
	kill9(t, c.ingest) // mid-append for some clients: those got no 202
	close(stop)
	wg.Wait()
	accepted, status, paths := p.snapshot()
	t.Logf("before the kill: accepted %d, status %v, paths %v", accepted, status, paths)
	require.Positive(t, paths["spool"])

	c.nats.start()
	c.startIngest()
	c.startWorker()
	requireExactlyOnce(t, p, read, 90*time.Second)
	c.worker.stop(t)
	c.ingest.stop(t)
}

// PostgreSQL stops for 30 s under load: nothing is lost, the breaker opens
// and closes, and messages are redelivered about once each, not in storms.
func TestPostgresDownBreaker(t *testing.T) {
	pg, err := pgtest.Start()
	require.NoError(t, err)
	defer pg.Stop()
	dsn := pg.Database(t)
	c := newCluster(t, fmt.Sprintf("sink:\n  kind: postgres\n  postgres:\n    dsn: %q\n", dsn), pgReader(dsn))
	c.startIngest()
	c.startWorker("-worker.write_timeout", "3s", "-degrade.breaker.open_for", "2s")
	p := newPoster("http://"+c.public, "pg", 50)
	p.pace = 5 * time.Millisecond // a steady load the sink can absorb; the outage is the test
	stop := make(chan struct{})
	wg := p.run(4, stop)
	// The events the worker holds just before the outage: what may have to
	// be redelivered.
	var holding float64
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		holding = max(holding, metricValue(t, c.wadmin, "levee_worker_outstanding_events"))
	}
	require.NoError(t, pg.Halt())
	time.Sleep(30 * time.Second)
	require.NoError(t, pg.Restart())
	time.Sleep(3 * time.Second)
	close(stop)
	wg.Wait()
	accepted, status, _ := p.snapshot()
	require.Equal(t, map[int]int{202: status[202]}, status, "ingest never noticed")
	requireExactlyOnce(t, p, c.read, 2*time.Minute)

	opened := metricValue(t, c.wadmin, `levee_breaker_transitions_total{to="open"}`)
	closed := metricValue(t, c.wadmin, `levee_breaker_transitions_total{to="closed"}`)
	fetched := metricValue(t, c.wadmin, "levee_worker_fetched_messages_total")
	published := metricValue(t, c.admin, `levee_publish_messages_total{format="pack",result="ok"}`)
	redelivered := fetched - published
	t.Logf("accepted %d events in %.0f messages; fetched %.0f: %.0f redeliveries; breaker opened %.0f, closed %.0f times",
		accepted, published, fetched, redelivered, opened, closed)
	require.GreaterOrEqual(t, opened, 1.0)
	require.GreaterOrEqual(t, closed, 1.0)
	require.Equal(t, 0.0, metricValue(t, c.wadmin, "levee_breaker_state"), "closed again")
	// While the breaker is open nothing is fetched, and a probe fetches one
	// batch: redeliveries stay near the messages in flight when the
	// database went away plus one batch per probe, not a storm (a storm
	// would be every in-flight message redelivered at every probe).
	perMsg := float64(accepted) / published
	inflight := holding / perMsg
	bound := 2 * (inflight + opened*1000/perMsg)
	t.Logf("in flight at the outage: %.0f events, about %.0f messages; a probe batch is about %.0f messages; bound 2 × (%.0f + %.0f probes × %.0f) = %.0f",
		holding, inflight, 1000/perMsg, inflight, opened, 1000/perMsg, bound)
	require.LessOrEqual(t, redelivered, bound)
	c.worker.stop(t)
	c.ingest.stop(t)
}

// Flipping optimization.enabled in the file under load switches between the
// queue and the direct path, live, losing and duplicating nothing.
func TestRollbackSwitchUnderLoad(t *testing.T) {
	sinkYAML, read := sqliteSink(t)
	c := newCluster(t, sinkYAML, read)
	c.startIngest()
	c.startWorker()
	p := newPoster("http://"+c.public, "rb", 20)
	stop := make(chan struct{})
	wg := p.run(4, stop)
	base := readFile(t, c.config)
	time.Sleep(time.Second)
	writeConfig(t, c.config, base+"optimization:\n  enabled: false\n")
	require.Eventually(t, func() bool { _, paths := p.paths2(); return paths["direct"] > 10 }, 20*time.Second, 50*time.Millisecond)
	writeConfig(t, c.config, base+"optimization:\n  enabled: true\n")
	_, pathsAtFlipBack := p.paths2()
	require.Eventually(t, func() bool { _, paths := p.paths2(); return paths["queue"] > pathsAtFlipBack["queue"]+10 }, 20*time.Second, 50*time.Millisecond)
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()
	accepted, status, paths := p.snapshot()
	t.Logf("accepted %d, status %v, paths %v", accepted, status, paths)
	require.Equal(t, map[int]int{202: status[202]}, status)
	requireExactlyOnce(t, p, read, time.Minute)
	require.Contains(t, logText(c.ingest), "config reloaded")
	c.worker.stop(t)
	c.ingest.stop(t)
}

func (p *poster) paths2() (int, map[string]int) {
	a, _, paths := p.snapshot()
	return a, paths
}

func logText(p *proc) string { return p.out.String() }

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return string(b)
}
