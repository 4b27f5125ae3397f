package loadgen

import (
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func ptr(f float64) *float64 { return &f }

// fixedRun builds a run from a few figures.
func fixedRun(scenario, variant string, eps, p99, errRate, cpu, rss float64, start time.Time) *Run {
	return &Run{
		Scenario: scenario, Variant: variant, Overrides: variantOverrides(variant), CleanExit: true,
		Result: &Result{
			Load: Load{Mode: ModeClosed, Clients: 100, Duration: 3 * time.Second, Events: 1}, Started: start, Elapsed: 3,
			Completed: int64(eps * 3 / (1 - errRate)), Accepted: int64(eps * 3), AcceptedEvents: int64(eps * 3),
			ReqPerSec: eps / (1 - errRate), AcceptedReqPerSec: eps, EventsPerSec: eps, ErrorRate: errRate,
			Latency: Latency{P50: p99 / 4, P95: p99 / 2, P99: p99, P999: p99 * 2, Max: p99 * 3, Mean: p99 / 3},
			Status:  map[string]Count{"202": {N: int64(eps * 3), Rate: eps}},
			Timeline: []Second{{T: 0, Offered: int64(eps), Completed: int64(eps), Accepted: int64(eps), AcceptedEvents: int64(eps), P99: p99},
				{T: 1, Offered: int64(eps), Completed: int64(eps), Accepted: int64(eps), AcceptedEvents: int64(eps), P99: p99 * 1.5}},
		},
		Observed: &Observed{
			Ingest: Usage{MeanCPU: cpu * 0.7, MaxCPU: cpu, MaxRSSMiB: rss * 0.6}, Worker: Usage{MeanCPU: cpu * 0.3, MaxCPU: cpu / 2, MaxRSSMiB: rss * 0.4},
			Total: Usage{MeanCPU: cpu, MaxCPU: cpu * 1.2, MaxRSSMiB: rss}, SinkRateMean: eps * 0.98, SinkRateMax: eps * 1.1,
			QueueMax: 12, LagP50: ptr(0.02), LagP99: ptr(0.25), Absent: []string{metricDegrade, metricSpool},
			Samples: []Sample{{At: start.Add(time.Second), SinkRate: eps, QueueDepth: 12}},
		},
		Check: &CheckResult{Prefix: scenario + "." + variant, Accepted: int64(eps * 3), Rows: int64(eps * 3), Distinct: int64(eps * 3),
			Drained: true, DrainS: 0.4, PollS: 0.1, OK: true},
	}
}

func fixedReport() *Report {
	start := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	before := fixedRun("peak", VariantBefore, 1500, 420, 0.012, 95, 120, start)
	after := fixedRun("peak", VariantAfter, 21000, 38, 0, 170, 260, start)
	bb := fixedRun("baseline", VariantBefore, 1800, 80, 0, 90, 100, start)
	ba := fixedRun("baseline", VariantAfter, 15000, 9.5, 0, 150, 200, start)
	lost := fixedRun("peak", "no-packing", 9000, 95, 0, 160, 240, start)
	lost.Check.OK, lost.Check.Lost, lost.Check.LostSample = false, 2, []string{"peak.no-packing-7", "peak.no-packing-9"}
	capRun := fixedRun("burst", VariantCapacity, 90000, 30, 0, 180, 250, start)
	return &Report{
		Machine: Machine{NProc: 2, CPUModel: "Test CPU", MemTotal: "24000000 kB", Kernel: "6.1.0", GoVersion: "go1.26.8", NoFile: 20000, LoadAvg: "0.10 0.20 0.30"},
		Command: "bin/loadgen bench -scale 0.01 -scenarios baseline,peak -ablation peak",
		Config: BenchConfig{Scale: 0.01, Events: 1, Size: 256, BurstEvents: 100, Workers: 1, Sink: SinkConfig{Kind: SinkSQLite},
			Ablation: "peak"},
		Scenarios:        []Scenario{Scenarios()[0].Scaled(0.01), Scenarios()[1].Scaled(0.01)},
		Switches:         []string{"batching", "packing"},
		SkippedSwitches:  []string{"adaptive", "degrade"},
		Runs:             []*Run{bb, ba, before, after},
		AblationScenario: "peak",
		Ablation:         []*Run{lost},
		Capacity:         &Capacity{EventsPerSec: 90000, Method: "mean sink-write rate over 2 s with a backlog in the queue", Run: capRun},
		Ceilings: &Ceilings{
			Noop:      []NoopCeiling{{Clients: 100, ReqPerSec: 40000, EventsPerSec: 40000, P99: 6}, {Clients: 1000, ReqPerSec: 35000, EventsPerSec: 35000, P99: 60}},
			JetStream: &JSCeiling{Tool: "natscli", Msgs: 50000, MsgBytes: 256, Publishers: 4, MsgsPerSec: 166543},
		},
		Started:  start,
		Finished: start.Add(47 * time.Second),
	}
}

func TestReportMarkdownGolden(t *testing.T) {
	got := fixedReport().Markdown()
	golden := filepath.Join("testdata", "report.golden.md")
	if *update {
		require.NoError(t, os.MkdirAll("testdata", 0o755))
		require.NoError(t, os.WriteFile(golden, []byte(got), 0o644))
	}
	want, err := os.ReadFile(golden)
	require.NoError(t, err, "run go test -run TestReportMarkdownGolden -update to create it")
	require.Equal(t, string(want), got)
}

func TestReportFailuresAndReference(t *testing.T) {
	r := fixedReport()
	require.Equal(t, "peak", r.referenceScenario())
	require.Equal(t, []string{"peak/no-packing: count check failed: lost 2, duplicates 0, unexpected 0"}, r.Failures())
	q, where := r.peakQPS(VariantAfter)
	require.Equal(t, 21000.0, q)
	require.Equal(t, "peak", where)

	r.Runs = r.Runs[:2] // no peak: the first scenario with both variants
	require.Equal(t, "baseline", r.referenceScenario())
}

func TestFormatters(t *testing.T) {
	tests := []struct{ got, want string }{
		{fmtRate(1234567.4), "1,234,567"},
		{fmtRate(123.5), "124"},
		{fmtRate(12.345), "12.3"},
		{fmtRate(1.234), "1.23"},
		{fmtRate(-1500), "-1,500"},
		{fmtMs(0.123), "0.12 ms"},
		{fmtMs(12.34), "12.3 ms"},
		{fmtMs(1234), "1.23 s"},
		{fmtPct(0.0123), "1.23%"},
		{fmtRatio(300, 100), "×3.00 (+200%)"},
		{fmtRatio(1, 0), "n/a"},
		{fmtChange(10, 100), "-90.0% (×0.10)"},
		{fmtPP(0, 0.012), "-1.20 pp"},
	}
	for _, tc := range tests {
		require.Equal(t, tc.want, tc.got)
	}
}

func TestWriteReportDrawsCharts(t *testing.T) {
	dir := t.TempDir()
	r := fixedReport()
	r.Runs, r.Ablation, r.Capacity = r.Runs[3:], nil, nil // one run's charts are enough
	require.NoError(t, WriteReport(dir, r))
	for _, f := range []string{"report.md", "results.json", "peak-after-rates.png", "peak-after-depth.png", "peak-after-p99.png"} {
		st, err := os.Stat(filepath.Join(dir, f))
		require.NoError(t, err, f)
		require.Positive(t, st.Size(), f)
	}
}
