package e2e

import (
	"bufio"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// scrapeNames returns the levee_ metric names a running binary exposes.
func scrapeNames(t *testing.T, addr string) map[string]bool {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	names := map[string]bool{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "# TYPE levee_"); ok {
			names["levee_"+strings.Fields(rest)[0]] = true
		}
	}
	return names
}

// Every metric the binaries register is documented: the metric tables of
// the README and of docs/design.md §5 name each one.
func TestEveryMetricIsDocumented(t *testing.T) {
	dir := t.TempDir()
	public, admin, wadmin, nats := freePort(t), freePort(t), freePort(t), freePort(t)
	common := []string{"-nats.embedded.listen", nats, "-sink.sqlite.path", filepath.Join(dir, "db")}
	start(t, "ingest", append([]string{"-ingest.listen", public, "-ingest.admin_listen", admin,
		"-nats.embedded.store_dir", filepath.Join(dir, "nats"), "-degrade.spool.dir", filepath.Join(dir, "spool")}, common...)...)
	waitReady(t, public)
	start(t, "worker", append([]string{"-worker.admin_listen", wadmin}, common...)...)
	waitReady(t, wadmin)
	postEvents(t, public, 0, 10)
	time.Sleep(500 * time.Millisecond)

	names := scrapeNames(t, admin)
	for n := range scrapeNames(t, wadmin) {
		names[n] = true
	}
	require.Greater(t, len(names), 40)
	for _, doc := range []string{"../../README.md", "../../docs/design.md"} {
		b, err := os.ReadFile(doc)
		require.NoError(t, err)
		for n := range names {
			require.Contains(t, string(b), "`"+n+"`", "%s does not document %s", doc, n)
		}
	}
}
