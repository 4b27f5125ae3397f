// Package e2e tests the ingest and worker binaries as processes, the way a
// user runs them: built from source, configured by a file and flags, fed
// over HTTP, stopped with SIGTERM.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	_ "modernc.org/sqlite"

	"github.com/levee-dev/levee/internal/pgtest"
)

var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "levee-e2e-bin-")
	if err != nil {
		panic(err)
	}
	for _, args := range [][]string{
		{"build", "-o", dir + "/", "../../cmd/ingest", "../../cmd/worker"},
		// nats-server at the version go.mod pins, for tests that stop and
		// restart the queue under the binaries.
		{"build", "-o", dir + "/nats-server", "github.com/nats-io/nats-server/v2"},
	} {
		if out, err := exec.Command("go", args...).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "go %v: %v\n%s", args, err, out)
			os.Exit(1)
		}
	}
	binDir = dir
	code := pgtest.Main(m)
	os.RemoveAll(dir)
	os.Exit(code)
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().String()
}

// proc is a running binary.
type proc struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan error
}

// syncBuffer collects a process's output; the process writes while the
// test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func start(t *testing.T, bin string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, bin), args...)
	cmd.Env = os.Environ()
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	require.NoError(t, cmd.Start())
	p := &proc{cmd: cmd, out: out, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("%s output:\n%s", bin, out.String())
		}
	})
	return p
}

// stop sends SIGTERM and requires a clean exit within 30 s.
func (p *proc) stop(t *testing.T) {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-p.done:
		p.done <- err
		require.NoError(t, err, "exit after SIGTERM")
	case <-time.After(30 * time.Second):
		t.Fatal("process did not exit within 30s of SIGTERM")
	}
}

func waitReady(t *testing.T, addr string) {
	t.Helper()
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}, 30*time.Second, 50*time.Millisecond, "%s/readyz never answered 200", addr)
}

func metricValue(t *testing.T, addr, series string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			require.NoError(t, err)
			return f
		}
	}
	t.Fatalf("series %s not found at %s", series, addr)
	return 0
}

type setup struct {
	dir, config, public, admin, nats, db string
}

func newSetup(t *testing.T) setup {
	dir := t.TempDir()
	s := setup{dir: dir, config: filepath.Join(dir, "levee.yaml"),
		public: freePort(t), admin: freePort(t), nats: freePort(t), db: filepath.Join(dir, "levee.db")}
	yaml := fmt.Sprintf(`
ingest:
  listen: %q
  admin_listen: %q
nats:
  embedded:
    listen: %q
    store_dir: %q
queue:
  pack:
    max_events: 50
worker:
  fetch_max: 2
sink:
  sqlite:
    path: %q
`, s.public, s.admin, s.nats, filepath.Join(dir, "nats"), s.db)
	require.NoError(t, os.WriteFile(s.config, []byte(yaml), 0o644))
	return s
}

func postEvents(t *testing.T, addr string, from, n int) {
	t.Helper()
	var b bytes.Buffer
	for i := from; i < from+n; i++ {
		fmt.Fprintf(&b, `{"id":"e2e-%d","type":"e2e.event","data":{"i":%d}}`+"\n", i, i)
	}
	resp, err := http.Post("http://"+addr+"/v1/events", "application/x-ndjson", &b)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, 202, resp.StatusCode, "%s", body)
}

func rows(t *testing.T, db string) (total, distinct int64) {
	t.Helper()
	d, err := sql.Open("sqlite", "file:"+db+"?mode=ro&_pragma=busy_timeout(5000)")
	require.NoError(t, err)
	defer d.Close()
	err = d.QueryRowContext(context.Background(), "SELECT count(*), count(DISTINCT id) FROM events").Scan(&total, &distinct)
	if err != nil {
		return 0, 0
	}
	return total, distinct
}

// The binaries end to end: events posted before any worker runs wait in
// JetStream; two worker processes share the load; every event lands once;
// SIGTERM stops everything cleanly.
func TestBinariesEndToEnd(t *testing.T) {
	s := newSetup(t)
	ingest := start(t, "ingest", "-config", s.config)
	waitReady(t, s.public)
	waitReady(t, s.admin)

	const total = 20_000
	for i := 0; i < total/2; i += 500 {
		postEvents(t, s.public, i, 500)
	}
	w1 := start(t, "worker", "-config", s.config, "-worker.admin_listen", freePort(t))
	w2admin := freePort(t)
	w2 := start(t, "worker", "-config", s.config, "-worker.admin_listen", w2admin)
	waitReady(t, w1.cmd.Args[len(w1.cmd.Args)-1])
	waitReady(t, w2admin)
	for i := total / 2; i < total; i += 500 {
		postEvents(t, s.public, i, 500)
	}
	require.Eventually(t, func() bool {
		n, _ := rows(t, s.db)
		return n >= total
	}, 60*time.Second, 100*time.Millisecond)
	n, distinct := rows(t, s.db)
	require.EqualValues(t, total, n)
	require.EqualValues(t, total, distinct)

	w1admin := w1.cmd.Args[len(w1.cmd.Args)-1]
	r1 := metricValue(t, w1admin, `levee_sink_rows_total{result="inserted"}`)
	r2 := metricValue(t, w2admin, `levee_sink_rows_total{result="inserted"}`)
	t.Logf("worker 1 inserted %.0f rows, worker 2 inserted %.0f", r1, r2)
	require.Positive(t, r1)
	require.Positive(t, r2)
	require.Equal(t, float64(total), r1+r2)
	require.Equal(t, float64(total), metricValue(t, s.admin, `levee_ingest_events_total{outcome="accepted",path="queue"}`))

	w1.stop(t)
	w2.stop(t)
	ingest.stop(t)
}

// Bad configuration is a startup error that names the key.
func TestConfigErrorsNameTheKey(t *testing.T) {
	s := newSetup(t)
	cases := []struct {
		args []string
		env  string
		want string
	}{
		{args: []string{"-batch.max_rows", "0"}, want: "batch.max_rows"},
		{args: []string{"-sink.kind", "mysql"}, want: "sink.kind"},
		{env: "LEVEE_BATCH__MAX_ROWZ=5", want: "LEVEE_BATCH__MAX_ROWZ"},
		{args: []string{"-batch.linger", "soon"}, want: "linger"},
	}
	for _, bin := range []string{"ingest", "worker"} {
		for _, c := range cases {
			cmd := exec.Command(filepath.Join(binDir, bin), append([]string{"-config", s.config}, c.args...)...)
			if c.env != "" {
				cmd.Env = append(os.Environ(), c.env)
			}
			out, err := cmd.CombinedOutput()
			require.Error(t, err, "%s %v", bin, c.args)
			require.Contains(t, string(out), c.want, "%s %v", bin, c.args)
		}
	}
	bad := filepath.Join(s.dir, "bad.yaml")
	require.NoError(t, os.WriteFile(bad, []byte("batch:\n  max_rowz: 10\n"), 0o644))
	out, err := exec.Command(filepath.Join(binDir, "worker"), "-config", bad).CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), "batch.max_rowz")
}
