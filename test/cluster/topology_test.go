package cluster

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/levee-dev/levee/internal/pgtest"
)

// ingestProc is one ingest replica: its public and admin addresses and its
// own spool directory.
type ingestProc struct {
	*proc
	public, admin string
}

// workerProc is one worker; its metrics are on admin.
type workerProc struct {
	*proc
	admin string
}

// topology is the deployment: a 3-node NATS cluster, PostgreSQL, ingest
// replicas and workers, all on loopback.
type topology struct {
	t       *testing.T
	dir     string
	config  string
	nats    *natsCluster
	pg      *pgtest.Server
	dsn     string
	ingests []*ingestProc
	workers []*workerProc
}

// topologyOpts shape one topology.
type topologyOpts struct {
	ingests, workers int
	replicas         int    // nats.stream.replicas
	syncInterval     string // of the nats-server nodes
	extraYAML        string // appended top-level sections (none the base config sets)
}

// baseConfig is the config file shared by every ingest and worker; what
// differs between replicas (listen addresses, spool dir) is given by flags.
const baseConfig = `# Levee config of test/cluster: every process reads it; flags add the
# per-process listen addresses and spool directory.
nats:
  url: %q
  stream:
    replicas: %d
sink:
  kind: postgres
  postgres:
    dsn: %q
log:
  level: info
  summary_interval: 5s
reload:
  interval: 0s
%s`

// newTopology starts PostgreSQL and the NATS cluster, writes the config and
// prepares (but does not start) the ingest and worker processes.
func newTopology(t *testing.T, o topologyOpts) *topology {
	t.Helper()
	dir := t.TempDir()
	if keep := os.Getenv("LEVEE_CLUSTER_LOGS"); keep != "" {
		// Keep configs, logs and stores for inspection.
		require.NoError(t, os.MkdirAll(keep, 0o755))
		var err error
		dir, err = os.MkdirTemp(keep, strings.ReplaceAll(t.Name(), "/", "_")+"-")
		require.NoError(t, err)
		t.Logf("process logs and stores under %s", dir)
	}
	tp := &topology{t: t, dir: dir, config: filepath.Join(dir, "levee.yaml")}
	pg, err := pgtest.Start()
	require.NoError(t, err)
	tp.pg = pg
	t.Cleanup(func() {
		_ = pg.Resume() // a paused server would not stop
		pg.Stop()
	})
	tp.dsn = pg.Database(t)
	tp.nats = startNATSCluster(t, dir, o.syncInterval)
	yaml := fmt.Sprintf(baseConfig, tp.nats.urls(), o.replicas, tp.dsn, o.extraYAML)
	require.NoError(t, os.WriteFile(tp.config, []byte(yaml), 0o644))
	for i := range o.ingests {
		tp.addIngest(i)
	}
	for i := range o.workers {
		tp.addWorker(i)
	}
	return tp
}

func (tp *topology) addIngest(i int) {
	a := freePorts(tp.t, 2)
	name := fmt.Sprintf("ingest-%d", i+1)
	p := newProc(tp.t, tp.dir, name, "ingest", "-config", tp.config,
		"-ingest.listen", a[0], "-ingest.admin_listen", a[1],
		"-degrade.spool.dir", filepath.Join(tp.dir, name+"-spool"))
	tp.ingests = append(tp.ingests, &ingestProc{proc: p, public: a[0], admin: a[1]})
}

func (tp *topology) addWorker(i int) {
	a := freePorts(tp.t, 1)
	p := newProc(tp.t, tp.dir, fmt.Sprintf("worker-%d", i+1), "worker", "-config", tp.config,
		"-worker.admin_listen", a[0])
	tp.workers = append(tp.workers, &workerProc{proc: p, admin: a[0]})
}

// startIngest starts replica i and waits for its /readyz.
func (tp *topology) startIngest(i int) time.Duration {
	in := tp.ingests[i]
	start := time.Now()
	in.start()
	waitReady(tp.t, in.public, "/readyz", 60*time.Second)
	return time.Since(start)
}

// startWorker starts worker i and waits for its /readyz.
func (tp *topology) startWorker(i int) time.Duration {
	w := tp.workers[i]
	start := time.Now()
	w.start()
	waitReady(tp.t, w.admin, "/readyz", 60*time.Second)
	return time.Since(start)
}

// startAll starts the ingest replicas first (they create the stream), then
// the workers.
func (tp *topology) startAll() {
	for i := range tp.ingests {
		tp.startIngest(i)
	}
	for i := range tp.workers {
		tp.startWorker(i)
	}
}

// publicURLs are the base URLs clients post to.
func (tp *topology) publicURLs() []string {
	var u []string
	for _, in := range tp.ingests {
		u = append(u, "http://"+in.public)
	}
	return u
}

// stopAll stops workers and ingest replicas with SIGTERM and requires each to
// exit cleanly; the NATS nodes get SIGINT (SIGTERM is lame-duck mode).
func (tp *topology) stopAll() {
	tp.t.Helper()
	for _, w := range tp.workers {
		require.NoError(tp.t, w.stop(syscall.SIGTERM, 45*time.Second))
	}
	for _, in := range tp.ingests {
		require.NoError(tp.t, in.stop(syscall.SIGTERM, 30*time.Second))
	}
	for _, n := range tp.nats.nodes {
		require.NoError(tp.t, n.p.stop(syscall.SIGINT, 30*time.Second))
	}
}

// pgProcs returns the PostgreSQL server's processes: the postmaster (its
// pid is the first line of postmaster.pid) and its children. Each child
// calls setsid, so the postmaster's process group holds only itself.
func pgProcs(pg *pgtest.Server) ([]int, error) {
	b, err := os.ReadFile(filepath.Join(pg.Dir, "data", "postmaster.pid"))
	if err != nil {
		return nil, err
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pm, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil {
		return nil, err
	}
	pids := []int{pm}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid …; comm may hold spaces and parentheses.
		_, rest, ok := strings.Cut(string(stat[bytes.LastIndexByte(stat, ')')+1:]), " ")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) > 1 && f[1] == strconv.Itoa(pm) {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}
