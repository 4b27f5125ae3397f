package loadgen

import (
	"flag"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// RunFlags are the flags of `loadgen run`.
type RunFlags struct {
	Load         Load
	IngestAdmin  string
	WorkerAdmins string // comma-separated host:port
	IngestPIDs   string // comma-separated
	WorkerPIDs   string
	Sink         SinkConfig // Kind "" = no count check
	DrainTimeout time.Duration
	JSON         bool
	Out          string
}

// Register defines the flags on fs.
func (f *RunFlags) Register(fs *flag.FlagSet) {
	l := &f.Load
	fs.StringVar(&l.Target, "target", "http://127.0.0.1:8080", "base URL of the ingest API")
	fs.StringVar(&l.Mode, "mode", ModeClosed, "closed (clients post back-to-back) or open (fixed arrival rate)")
	fs.IntVar(&l.Clients, "clients", 100, "closed loop: concurrent clients; open loop: bound on requests in flight")
	fs.Float64Var(&l.Rate, "rate", 1000, "open loop: requests per second")
	fs.DurationVar(&l.Duration, "duration", 30*time.Second, "how long to send")
	fs.IntVar(&l.Events, "events", 1, "events per request (1 = single, 100 = bulk)")
	fs.IntVar(&l.Size, "size", 256, "approximate bytes per encoded event (the data is padded)")
	fs.StringVar(&l.APIKey, "api-key", "", "API key, sent as X-API-Key")
	fs.StringVar(&l.IDPrefix, "id-prefix", "lg"+strconv.FormatInt(time.Now().UnixNano(), 36), "event ids are <prefix>-<n>")
	fs.DurationVar(&l.Timeout, "timeout", 30*time.Second, "per-request timeout")
	fs.StringVar(&f.IngestAdmin, "ingest-admin", "", "ingest admin host:port to sample /metrics from")
	fs.StringVar(&f.WorkerAdmins, "worker-admin", "", "worker admin host:port list (comma-separated) to sample /metrics from")
	fs.StringVar(&f.IngestPIDs, "ingest-pid", "", "ingest process id(s) to sample CPU and RSS of (comma-separated)")
	fs.StringVar(&f.WorkerPIDs, "worker-pid", "", "worker process id(s) to sample CPU and RSS of (comma-separated)")
	registerSink(fs, &f.Sink, "")
	fs.DurationVar(&f.DrainTimeout, "drain-timeout", 2*time.Minute, "count check: how long to wait for the sink to catch up")
	fs.BoolVar(&f.JSON, "json", false, "print the result as JSON")
	fs.StringVar(&f.Out, "out", "", "also write the JSON result to this file (input of `loadgen check`)")
}

func registerSink(fs *flag.FlagSet, s *SinkConfig, def string) {
	fs.StringVar(&s.Kind, "sink", def, "sink to count-check: sqlite or postgres (empty = no check)")
	fs.StringVar(&s.SQLitePath, "sqlite-path", "data/levee.db", "SQLite sink file")
	fs.StringVar(&s.PGDSN, "pg-dsn", "", "PostgreSQL sink DSN")
	fs.StringVar(&s.Table, "table", "events", "sink table")
}

// Targets returns what to sample.
func (f *RunFlags) Targets() (Targets, error) {
	t := Targets{IngestAdmin: f.IngestAdmin, WorkerAdmins: splitList(f.WorkerAdmins)}
	var err error
	if t.IngestPIDs, err = parseInts("ingest-pid", f.IngestPIDs); err != nil {
		return t, err
	}
	t.WorkerPIDs, err = parseInts("worker-pid", f.WorkerPIDs)
	return t, err
}

// Check returns the count-check configuration, or nil without -sink.
func (f *RunFlags) Check() *CheckConfig {
	if f.Sink.Kind == "" {
		return nil
	}
	return &CheckConfig{Sink: f.Sink, DrainTimeout: f.DrainTimeout}
}

// CheckFlags are the flags of `loadgen check`.
type CheckFlags struct {
	Results      string
	Sink         SinkConfig
	DrainTimeout time.Duration
	JSON         bool
}

// Register defines the flags on fs.
func (f *CheckFlags) Register(fs *flag.FlagSet) {
	fs.StringVar(&f.Results, "results", "", "JSON result of `loadgen run -out FILE` (accepted ids, prefix)")
	registerSink(fs, &f.Sink, SinkSQLite)
	fs.DurationVar(&f.DrainTimeout, "drain-timeout", 2*time.Minute, "how long to wait for the sink to catch up")
	fs.BoolVar(&f.JSON, "json", false, "print the result as JSON")
}

// BenchFlags are the flags of `loadgen bench`.
type BenchFlags struct {
	Config    BenchConfig
	Scenarios string
	NATSBin   string
	Overrides listFlag
}

// Register defines the flags on fs.
func (f *BenchFlags) Register(fs *flag.FlagSet) {
	c := &f.Config
	fs.StringVar(&c.BinDir, "bin-dir", "bin", "directory with the ingest and worker binaries")
	fs.StringVar(&c.Out, "out", "report", "report directory (report.md, results.json, charts)")
	fs.StringVar(&f.Scenarios, "scenarios", "all", "comma-separated subset of baseline,peak,extreme,burst")
	fs.Float64Var(&c.Scale, "scale", 1, "multiply every duration (0.01 = CI smoke: 3-6 s per scenario)")
	fs.IntVar(&c.Events, "events", 1, "events per request in the closed-loop scenarios")
	fs.IntVar(&c.Size, "size", 256, "approximate bytes per event")
	fs.IntVar(&c.BurstEvents, "burst-events", 100, "events per request in the burst and its capacity measurement")
	fs.IntVar(&c.Workers, "workers", 1, "worker processes")
	fs.StringVar(&c.Sink.Kind, "sink", SinkSQLite, "sqlite (a fresh file per run) or postgres (table "+benchTable+", dropped per run)")
	fs.StringVar(&c.Sink.PGDSN, "pg-dsn", "", "PostgreSQL DSN for -sink postgres")
	fs.DurationVar(&c.StatementDelay, "pg-statement-delay", 0, "with -sink postgres: delay every INSERT statement by this much (a slow sink)")
	fs.StringVar(&c.Ablation, "ablation", "", "also run this scenario with each optimization switched off alone")
	fs.BoolVar(&c.NoCeilings, "no-ceilings", false, "skip the ceiling measurements")
	fs.StringVar(&f.NATSBin, "nats-bin", "auto", `natscli for the JetStream ceiling: a path, "auto" (nats on PATH) or "none" (built-in publisher)`)
	fs.DurationVar(&c.DrainTimeout, "drain-timeout", 2*time.Minute, "count check: how long to wait for the sink to catch up")
	fs.DurationVar(&c.Timeout, "timeout", 30*time.Second, "per-request timeout")
	fs.Var(&f.Overrides, "set", "config override key=value for every pipeline (repeatable), e.g. -set batch.max_rows=500")
	fs.StringVar(&c.WorkDir, "workdir", "", "parent directory of the runs' scratch directories (default: the system temp dir)")
	fs.BoolVar(&c.Keep, "keep", false, "keep every run's scratch directory (logs, config, sink)")
}

// Resolve completes the config from the flags: scenarios, natscli, overrides.
func (f *BenchFlags) Resolve() (BenchConfig, error) {
	c := f.Config
	var err error
	if c.Scenarios, err = SelectScenarios(f.Scenarios); err != nil {
		return c, err
	}
	c.NATSBin = natsBin(f.NATSBin)
	c.Overrides = f.Overrides
	if c.Sink.Kind == SinkPostgres && c.Sink.PGDSN == "" {
		return c, fmt.Errorf("loadgen: -sink postgres needs -pg-dsn")
	}
	return c, nil
}

func natsBin(v string) string {
	switch v {
	case "none", "":
		return ""
	case "auto":
		p, _ := exec.LookPath("nats")
		return p
	}
	return v
}

// CeilingFlags are the flags of `loadgen ceilings`.
type CeilingFlags struct {
	Config  CeilingConfig
	Clients string
	NATSBin string
	JSON    bool
}

// Register defines the flags on fs.
func (f *CeilingFlags) Register(fs *flag.FlagSet) {
	c := &f.Config
	fs.StringVar(&f.Clients, "clients", "100,1000,5000", "concurrencies of the no-op HTTP ceiling")
	fs.DurationVar(&c.Duration, "duration", 20*time.Second, "length of each no-op and COPY measurement")
	fs.IntVar(&c.Events, "events", 1, "events per request")
	fs.IntVar(&c.Size, "size", 256, "approximate bytes per event")
	fs.StringVar(&c.NATSURL, "nats-url", "", "NATS server for the JetStream ceiling (empty = start ingest from -bin-dir for its embedded server)")
	fs.StringVar(&c.BinDir, "bin-dir", "bin", "directory with the ingest and worker binaries")
	fs.StringVar(&f.NATSBin, "nats-bin", "auto", `natscli: a path, "auto" (nats on PATH) or "none" (built-in publisher)`)
	fs.IntVar(&c.JSMsgs, "js-msgs", 1_000_000, "messages of the JetStream ceiling")
	fs.StringVar(&c.PGDSN, "pg-dsn", "", "PostgreSQL DSN for the COPY ceiling (empty = skip)")
	fs.BoolVar(&f.JSON, "json", false, "print the result as JSON")
}

// Resolve completes the config from the flags.
func (f *CeilingFlags) Resolve() (CeilingConfig, error) {
	c := f.Config
	var err error
	c.Clients, err = parseInts("clients", f.Clients)
	c.NATSBin = natsBin(f.NATSBin)
	c.Workers = 1
	if err == nil && c.BinDir != "" {
		c.BinDir, err = filepath.Abs(c.BinDir)
	}
	return c, err
}

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func splitList(s string) []string {
	var out []string
	for p := range strings.SplitSeq(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func parseInts(name, s string) ([]int, error) {
	var out []int
	for _, p := range splitList(s) {
		n, err := strconv.Atoi(p)
		if err != nil {
			return nil, fmt.Errorf("loadgen: -%s: %w", name, err)
		}
		out = append(out, n)
	}
	return out, nil
}
