package cluster

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
)

// natsCLI finds the nats CLI (natscli) for `nats bench`, or "".
func natsCLI() string {
	if p, err := exec.LookPath("nats"); err == nil {
		return p
	}
	if home, err := os.UserHomeDir(); err == nil {
		if p := filepath.Join(home, "go", "bin", "nats"); fileExists(p) {
			return p
		}
	}
	return ""
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// natsBench runs `nats bench` with args and logs its result lines.
func natsBench(t *testing.T, cli, servers string, args ...string) {
	t.Helper()
	args = append(append([]string{"bench"}, args...), "--no-progress", "-s", servers)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput()
	require.NoError(t, err, "%s", out)
	var keep []string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "msgs/sec") || strings.Contains(line, "stats:") {
			keep = append(keep, strings.TrimSpace(line))
		}
	}
	t.Logf("nats %s\n%s", strings.Join(args[:len(args)-3], " "), strings.Join(keep, "\n"))
}

// asyncPublish publishes n messages of size bytes to a new stream of the
// given replicas with the client's async publish (4096 in flight), as
// ingest does, and returns messages per second.
func asyncPublish(t *testing.T, url string, replicas, n, size int) float64 {
	t.Helper()
	nc, err := nats.Connect(url)
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	name := fmt.Sprintf("PUB_R%d_%d", replicas, size)
	_, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{strings.ToLower(name)},
		Storage: jetstream.FileStorage, Replicas: replicas})
	require.NoError(t, err)
	defer js.DeleteStream(context.Background(), name) //nolint:errcheck
	data := make([]byte, size)
	start := time.Now()
	for range n {
		_, err := js.PublishAsync(strings.ToLower(name), data, jetstream.WithStallWait(time.Minute))
		require.NoError(t, err)
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		t.Fatal("publishes not acknowledged within 2 minutes")
	}
	return float64(n) / time.Since(start).Seconds()
}

// The cost of R3 against R1 on the same 3-node loopback cluster: the
// client's async publish (what ingest uses), and `nats bench` when the
// nats CLI is installed.
func TestBenchPublishReplicas(t *testing.T) {
	benchOnly(t)
	dir := t.TempDir()
	c := startNATSCluster(t, dir, "2m")
	url := c.urls()
	for _, size := range []int{1024, 16 << 10} {
		n := 200_000
		if size > 1024 {
			n = 30_000
		}
		t.Logf("load average before: %s", loadavg())
		r1 := asyncPublish(t, url, 1, n, size)
		r3 := asyncPublish(t, url, 3, n, size)
		t.Logf("async publish, %d messages of %d B: R1 %.0f msgs/s (%.1f MB/s), R3 %.0f msgs/s (%.1f MB/s): R3 = %.0f%% of R1",
			n, size, r1, r1*float64(size)/1e6, r3, r3*float64(size)/1e6, 100*r3/r1)
	}
	cli := natsCLI()
	if cli == "" {
		t.Log("nats CLI not found: no `nats bench` figures")
		return
	}
	for _, r := range []string{"1", "3"} {
		natsBench(t, cli, url, "js", "pub", "async", "bench.r"+r, "--create", "--purge", "--stream", "benchr"+r,
			"--replicas", r, "--storage", "file", "--msgs", "200000", "--size", "1KB", "--clients", "2")
	}
}

// The embedded single-node default with nats.embedded.sync_interval "2m"
// (the default) and "always": an ingest alone, bulk requests of 100 events
// back to back, then `nats bench` against its embedded server.
func TestBenchEmbeddedSync(t *testing.T) {
	benchOnly(t)
	for _, si := range []string{"2m", "always"} {
		t.Run("sync_interval="+si, func(t *testing.T) {
			dir := t.TempDir()
			a := freePorts(t, 3)
			conf := filepath.Join(dir, "levee.yaml")
			require.NoError(t, os.WriteFile(conf, []byte(fmt.Sprintf(`ingest: {listen: %q, admin_listen: %q}
nats: {embedded: {listen: %q, store_dir: %q, sync_interval: %q}}
degrade: {spool: {dir: %q}}
sink: {sqlite: {path: %q}}
`, a[0], a[1], a[2], filepath.Join(dir, "nats"), si, filepath.Join(dir, "spool"), filepath.Join(dir, "levee.db"))), 0o644))
			p := newProc(t, dir, "ingest", "ingest", "-config", conf)
			p.start()
			waitReady(t, a[0], "/readyz", 60*time.Second)

			t.Logf("load average before: %s", loadavg())
			l := newLoader([]string{"http://" + a[0]}, "sync", benchEvents, benchEvents, 0)
			stop := make(chan struct{})
			lwg := l.run(benchClients, stop)
			time.Sleep(benchWarm)
			e0, st0, lat0, t0 := l.accEvts.Load(), l.stats(), l.latNanos.Load(), time.Now()
			time.Sleep(benchFor() / 2)
			e1, st1, lat1, t1 := l.accEvts.Load(), l.stats(), l.latNanos.Load(), time.Now()
			close(stop)
			waitGroup(t, lwg, time.Minute, "clients")
			reqs := st1.Status202 - st0.Status202
			t.Logf("ingest, embedded NATS, sync_interval %s: %.0f events/s answered 202, mean latency %v, paths %v",
				si, float64(e1-e0)/t1.Sub(t0).Seconds(), time.Duration((lat1-lat0)/max(reqs, 1)).Round(100*time.Microsecond), st1.Paths)
			if cli := natsCLI(); cli != "" {
				natsBench(t, cli, "nats://"+a[2], "js", "pub", "sync", "bench.sync", "--create", "--stream", "benchsync",
					"--storage", "file", "--msgs", "3000", "--size", "1KB")
				natsBench(t, cli, "nats://"+a[2], "js", "pub", "async", "bench.async", "--create", "--stream", "benchasync",
					"--storage", "file", "--msgs", "20000", "--size", "1KB")
			}
			require.NoError(t, p.stop(syscall.SIGTERM, 30*time.Second))
		})
	}
}
