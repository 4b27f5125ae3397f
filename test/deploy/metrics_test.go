package deploy

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
)

// scrape is one binary's /metrics, parsed.
type scrape struct {
	binary   string
	text     []byte
	families map[string]*dto.MetricFamily
}

// TestMetricNames builds and starts the real ingest and worker (embedded
// NATS, SQLite, everything under a temporary directory, loopback ports),
// posts one event, waits until the worker has written it, and scrapes both
// admin listeners. Then:
//   - promtool check metrics must find nothing to say about levee_ metrics
//     (what it says about the Go and process collectors is logged);
//   - every metric the alert rules and the dashboard query exists in the
//     scrape of the binary their job label names (in either when they do
//     not say), with the label names they match and group on, and a series
//     with each label value they select with = (limiter="sink", ...).
func TestMetricNames(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs both binaries")
	}
	scrapes := scrapeBinaries(t)

	pt := promtool(t)
	for _, s := range scrapes {
		// Exit status 3 means lint findings, one "metric_name problem" line
		// each; anything else is promtool failing to read the scrape.
		out, err := runErr("", s.text, time.Minute, pt, "check", "metrics")
		var levee []string
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			switch {
			case line == "":
			case !lintLineRE.MatchString(line):
				t.Errorf("promtool check metrics (%s): unexpected output %q (exit: %v)", s.binary, line, err)
			case strings.HasPrefix(line, "levee_"):
				levee = append(levee, line)
			default:
				t.Logf("promtool check metrics (%s, not a levee_ metric): %s", s.binary, line)
			}
		}
		require.Empty(t, levee, "promtool check metrics on %s's /metrics", s.binary)
	}

	byJob := map[string]*scrape{"levee-ingest": scrapes[0], "levee-worker": scrapes[1]}
	for _, r := range alertRules(t) {
		t.Run("alert "+r.Alert, func(t *testing.T) { checkExpr(t, r.Expr, byJob) })
	}
	for title, exprs := range dashboardExprs(t) {
		t.Run("panel "+title, func(t *testing.T) {
			for _, e := range exprs {
				checkExpr(t, e, byJob)
			}
		})
	}
}

var lintLineRE = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]* \S`)

// targetLabels are added by Prometheus to every scraped series.
var targetLabels = map[string]bool{"job": true, "instance": true}

// checkExpr checks the metric names and label names of one expression.
func checkExpr(t *testing.T, expr string, byJob map[string]*scrape) {
	t.Helper()
	sels, grouping, err := promQLRefs(expr)
	require.NoError(t, err)
	require.NotEmpty(t, sels, "no metric in %q", expr)
	known := map[string]bool{"le": true, "job": true, "instance": true}
	for _, sel := range sels {
		if sel.name == "up" { // made by Prometheus for each target
			for _, m := range sel.matchers {
				require.True(t, targetLabels[m.label], "up has no label %s", m.label)
			}
			continue
		}
		candidates := jobScrapes(sel, byJob)
		var labels map[string]bool
		for _, s := range candidates {
			if l, ok := s.labels(sel.name); ok {
				labels = l
				break
			}
		}
		require.NotNil(t, labels, "%s: not exposed by %s (in %q)", sel.name, names(candidates), expr)
		for _, m := range sel.matchers {
			require.True(t, labels[m.label] || targetLabels[m.label], "%s has no label %q (in %q)", sel.name, m.label, expr)
			if m.op == "=" && !targetLabels[m.label] && !afterFailure[sel.name+"/"+m.label+"="+m.value] {
				require.True(t, hasValue(candidates, sel.name, m.label, m.value),
					"no %s series has %s=%q (in %q)", sel.name, m.label, m.value, expr)
			}
		}
		for l := range labels {
			known[l] = true
		}
	}
	for _, g := range grouping {
		require.True(t, known[g], "grouping label %q is on none of the metrics of %q", g, expr)
	}
}

// afterFailure lists the label values a selector may use that no series
// has in a scrape after one successful event: they appear on the first
// failure.
var afterFailure = map[string]bool{
	"levee_sink_write_duration_seconds_bucket/result=error": true,
	"levee_sink_write_duration_seconds_count/result=error":  true,
}

// hasValue reports whether a series of name (a family, or a histogram's
// _bucket, _sum or _count) in one of the scrapes has label=value.
func hasValue(ss []*scrape, name, label, value string) bool {
	for _, s := range ss {
		mf := s.families[name]
		for _, sfx := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(name, sfx); ok && mf == nil {
				mf = s.families[base]
			}
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					return true
				}
			}
		}
	}
	return false
}

// jobScrapes: the binaries a selector can come from, by its job matcher.
func jobScrapes(sel selector, byJob map[string]*scrape) []*scrape {
	for _, m := range sel.matchers {
		if m.label == "job" && m.op == "=" && byJob[m.value] != nil {
			return []*scrape{byJob[m.value]}
		}
	}
	var all []*scrape
	for _, job := range []string{"levee-ingest", "levee-worker"} {
		all = append(all, byJob[job])
	}
	return all
}

func names(ss []*scrape) string {
	var n []string
	for _, s := range ss {
		n = append(n, s.binary)
	}
	return strings.Join(n, " or ")
}

// labels returns the label names of a series name as Prometheus stores it:
// histograms are name_bucket (with le), name_sum and name_count.
func (s *scrape) labels(name string) (map[string]bool, bool) {
	mf, ok := s.families[name]
	suffix := ""
	if !ok {
		for _, sfx := range []string{"_bucket", "_sum", "_count"} {
			base, cut := strings.CutSuffix(name, sfx)
			f := s.families[base]
			if cut && f != nil && (f.GetType() == dto.MetricType_HISTOGRAM || (f.GetType() == dto.MetricType_SUMMARY && sfx != "_bucket")) {
				mf, ok, suffix = f, true, sfx
				break
			}
		}
	}
	if !ok {
		return nil, false
	}
	labels := map[string]bool{}
	if suffix == "_bucket" {
		labels["le"] = true
	}
	for _, m := range mf.GetMetric() {
		for _, lp := range m.GetLabel() {
			labels[lp.GetName()] = true
		}
	}
	return labels, true
}

// scrapeBinaries runs ingest and worker and returns their scrapes, in that
// order. Both are stopped with SIGTERM when the test ends.
func scrapeBinaries(t *testing.T) []*scrape {
	t.Helper()
	root := repoRoot(t)
	dir := t.TempDir()
	for _, b := range []string{"ingest", "worker"} {
		run(t, root, nil, 5*time.Minute, goTool(t), "build", "-o", filepath.Join(dir, b), "./cmd/"+b)
	}
	ports := freePorts(t, 4)
	public, ingestAdmin, natsPort, workerAdmin := ports[0], ports[1], ports[2], ports[3]
	cfg := fmt.Sprintf(`
ingest: {listen: "127.0.0.1:%d", admin_listen: "127.0.0.1:%d"}
nats: {url: "", embedded: {listen: "127.0.0.1:%d", store_dir: %q}}
worker: {admin_listen: "127.0.0.1:%d"}
degrade: {spool: {dir: %q}}
sink: {kind: sqlite, sqlite: {path: %q}}
log: {level: warn}
`, public, ingestAdmin, natsPort, filepath.Join(dir, "nats"), workerAdmin,
		filepath.Join(dir, "spool"), filepath.Join(dir, "levee.db"))
	cfgFile := filepath.Join(dir, "levee.yaml")
	require.NoError(t, os.WriteFile(cfgFile, []byte(cfg), 0o600))

	ingestURL := fmt.Sprintf("http://127.0.0.1:%d", ingestAdmin)
	workerURL := fmt.Sprintf("http://127.0.0.1:%d", workerAdmin)
	start(t, dir, filepath.Join(dir, "ingest"), cfgFile)
	waitReady(t, ingestURL+"/readyz")
	start(t, dir, filepath.Join(dir, "worker"), cfgFile)
	waitReady(t, workerURL+"/readyz")

	resp, err := http.Post(fmt.Sprintf("http://127.0.0.1:%d/v1/events", public), "application/json",
		strings.NewReader(`{"type":"deploy.test","data":{"n":1}}`))
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusAccepted, resp.StatusCode, string(body))

	var worker *scrape
	require.Eventually(t, func() bool {
		worker = get(t, "worker", workerURL+"/metrics")
		return counter(worker, "levee_sink_rows_total", "result", "inserted") >= 1
	}, 30*time.Second, 100*time.Millisecond, "the worker did not write the event")
	return []*scrape{get(t, "ingest", ingestURL+"/metrics"), worker}
}

// start runs a binary with only cfgFile as configuration (no LEVEE_*
// variable of the caller's environment) and stops it with SIGTERM, waiting
// at most 30 s, when the test ends. Its output is logged if the test fails.
func start(t *testing.T, dir, bin, cfgFile string) {
	t.Helper()
	cmd := exec.Command(bin, "-config", cfgFile)
	cmd.Dir = dir
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "LEVEE_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	require.NoError(t, cmd.Start())
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("%s exited with %v", filepath.Base(bin), err)
			}
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
			t.Errorf("%s did not stop within 30s of SIGTERM", filepath.Base(bin))
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", filepath.Base(bin), out.String())
		}
	})
}

func waitReady(t *testing.T, url string) {
	t.Helper()
	require.Eventually(t, func() bool {
		resp, err := http.Get(url)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 60*time.Second, 100*time.Millisecond, "%s never answered 200", url)
}

func get(t *testing.T, binary, url string) *scrape {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	text, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	p := expfmt.NewTextParser(model.LegacyValidation)
	families, err := p.TextToMetricFamilies(bytes.NewReader(text))
	require.NoError(t, err, "%s /metrics", binary)
	return &scrape{binary: binary, text: text, families: families}
}

// counter is the value of the series of a counter with label=value.
func counter(s *scrape, name, label, value string) float64 {
	for _, m := range s.families[name].GetMetric() {
		for _, lp := range m.GetLabel() {
			if lp.GetName() == label && lp.GetValue() == value {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// freePorts returns n distinct loopback ports that were free a moment ago.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		ln.Close()
	}
	return ports
}
