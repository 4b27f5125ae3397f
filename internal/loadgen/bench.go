package loadgen

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"go.uber.org/zap"
)

// Variants of a scenario: the rollback switch off ("before": synchronous
// direct writes) and on ("after").
const (
	VariantBefore   = "before"
	VariantAfter    = "after"
	VariantCapacity = "capacity"
)

// AblationSwitches are the optimization.* switches an ablation turns off
// one at a time, when the ingest binary has them.
var ablationCandidates = []string{"packing", "batching", "adaptive", "degrade"}

// BenchConfig configures `loadgen bench`.
type BenchConfig struct {
	BinDir       string        `json:"bin_dir"`
	Out          string        `json:"out"`
	Scenarios    []Scenario    `json:"scenarios"` // at full length; Scale applies
	Scale        float64       `json:"scale"`
	Events       int           `json:"events_per_request"`
	Size         int           `json:"event_bytes"`
	BurstEvents  int           `json:"burst_events_per_request"`
	Workers      int           `json:"workers"`
	Sink         SinkConfig    `json:"sink"`
	Ablation     string        `json:"ablation,omitempty"`
	NoCeilings   bool          `json:"no_ceilings"`
	NATSBin      string        `json:"nats_bin,omitempty"` // natscli, "" = built-in JetStream ceiling
	Self         string        `json:"-"`                  // this executable, for the no-op server
	DrainTimeout time.Duration `json:"drain_timeout"`
	Timeout      time.Duration `json:"request_timeout"`
	Overrides    []string      `json:"overrides,omitempty"` // config overrides for every pipeline
	// StatementDelay slows every INSERT into the PostgreSQL sink table.
	StatementDelay time.Duration `json:"pg_statement_delay,omitempty"`
	WorkDir        string        `json:"-"`    // parent of the pipelines' directories
	Keep           bool          `json:"keep"` // keep the pipelines' directories
	Command        string        `json:"-"`
}

// Run is one scenario run against one pipeline configuration.
type Run struct {
	Scenario  string       `json:"scenario"`
	Variant   string       `json:"variant"`
	Overrides []string     `json:"overrides"`
	Result    *Result      `json:"result,omitempty"`
	Observed  *Observed    `json:"observed,omitempty"`
	Check     *CheckResult `json:"check,omitempty"`
	CleanExit bool         `json:"clean_exit"`
	Dir       string       `json:"dir,omitempty"` // kept when something failed
	Error     string       `json:"error,omitempty"`
}

// Failed reports whether the run failed: an error, an unclean exit or a
// failed count check.
func (r *Run) Failed() bool {
	return r.Error != "" || !r.CleanExit || r.Check == nil || !r.Check.OK
}

// Capacity is the sink's measured write capacity, which sizes the burst.
type Capacity struct {
	EventsPerSec float64 `json:"events_per_s"`
	Method       string  `json:"method"`
	Run          *Run    `json:"run"`
}

// Bench runs the load-test plan.
type Bench struct {
	cfg  BenchConfig
	root *zap.Logger // for the components the bench builds; they name themselves
	log  *zap.Logger
}

// NewBench returns a bench for cfg. It starts nothing.
func NewBench(cfg BenchConfig, log *zap.Logger) (*Bench, error) {
	if cfg.BinDir == "" {
		return nil, errors.New("loadgen: bench needs -bin-dir with the ingest and worker binaries")
	}
	for _, bin := range []string{"ingest", "worker"} {
		if _, err := os.Stat(cfg.BinDir + "/" + bin); err != nil {
			return nil, fmt.Errorf("loadgen: bench: %w", err)
		}
	}
	if cfg.Scale <= 0 {
		return nil, fmt.Errorf("loadgen: scale %v: want > 0", cfg.Scale)
	}
	if cfg.Ablation != "" {
		if _, err := SelectScenarios(cfg.Ablation); err != nil {
			return nil, err
		}
	}
	// The services run in their own directories.
	bin, err := filepath.Abs(cfg.BinDir)
	if err != nil {
		return nil, fmt.Errorf("loadgen: bench: %w", err)
	}
	cfg.BinDir = bin
	cfg.Events, cfg.BurstEvents, cfg.Workers = max(cfg.Events, 1), max(cfg.BurstEvents, 1), max(cfg.Workers, 1)
	return &Bench{cfg: cfg, root: log, log: log.With(zap.String("component", "bench"))}, nil
}

// Run runs ceilings, the burst capacity measurement, every scenario before
// and after, and the ablation, and returns the report. When ctx ends it
// returns what was measured so far with ctx's error.
func (b *Bench) Run(ctx context.Context) (*Report, error) {
	rep := &Report{Machine: ThisMachine(), Command: b.cfg.Command, Config: b.cfg, Started: time.Now()}
	for _, s := range b.cfg.Scenarios {
		rep.Scenarios = append(rep.Scenarios, s.Scaled(b.cfg.Scale))
	}
	switches, err := OptimizationSwitches(ctx, b.cfg.BinDir)
	if err != nil {
		return rep, err
	}
	for _, c := range ablationCandidates {
		if slices.Contains(switches, c) {
			rep.Switches = append(rep.Switches, c)
		} else {
			rep.SkippedSwitches = append(rep.SkippedSwitches, c)
		}
	}
	if !b.cfg.NoCeilings {
		rep.Ceilings = b.ceilings(ctx)
	}
	capacity := 0.0
	if slices.ContainsFunc(rep.Scenarios, func(s Scenario) bool { return s.Burst }) || b.cfg.Ablation == "burst" {
		rep.Capacity = b.capacity(ctx)
		capacity = rep.Capacity.EventsPerSec
	}
	for _, s := range rep.Scenarios {
		for _, v := range []string{VariantBefore, VariantAfter} {
			if ctx.Err() != nil {
				return rep.finish(), ctx.Err()
			}
			rep.Runs = append(rep.Runs, b.runScenario(ctx, s, v, variantOverrides(v), capacity))
		}
	}
	if b.cfg.Ablation != "" {
		if err := b.ablation(ctx, rep, capacity); err != nil {
			return rep.finish(), err
		}
	}
	return rep.finish(), ctx.Err()
}

func variantOverrides(v string) []string {
	return []string{"optimization.enabled=" + strconv.FormatBool(v != VariantBefore)}
}

// ablation runs the chosen scenario with each switch off alone; the "after"
// run of that scenario is the all-on reference.
func (b *Bench) ablation(ctx context.Context, rep *Report, capacity float64) error {
	i := slices.IndexFunc(Scenarios(), func(s Scenario) bool { return s.Name == b.cfg.Ablation })
	if i < 0 {
		return fmt.Errorf("loadgen: ablation scenario %q unknown", b.cfg.Ablation)
	}
	s := Scenarios()[i].Scaled(b.cfg.Scale)
	rep.AblationScenario = s.Name
	if rep.run(s.Name, VariantAfter) == nil {
		rep.Ablation = append(rep.Ablation, b.runScenario(ctx, s, VariantAfter, variantOverrides(VariantAfter), capacity))
	}
	for _, sw := range rep.Switches {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		ov := append(variantOverrides(VariantAfter), "optimization."+sw+"=false")
		rep.Ablation = append(rep.Ablation, b.runScenario(ctx, s, "no-"+sw, ov, capacity))
	}
	return nil
}

// runScenario runs s (already scaled) against a fresh pipeline.
func (b *Bench) runScenario(ctx context.Context, s Scenario, variant string, overrides []string, capacity float64) *Run {
	load := Load{Mode: ModeClosed, Clients: s.Clients, Duration: s.Duration, Events: b.cfg.Events, Size: b.cfg.Size, Timeout: b.cfg.Timeout}
	if s.Burst {
		if capacity <= 0 {
			return &Run{Scenario: s.Name, Variant: variant, Overrides: overrides, Error: "no sink capacity measured; burst skipped"}
		}
		load.Mode, load.Events = ModeOpen, b.cfg.BurstEvents
		load.Phases = BurstPhases(s.Duration, b.cfg.Scale, capacity, b.cfg.BurstEvents)
	}
	return b.runLoad(ctx, s.Name, variant, load, overrides)
}

// capacity measures the sink's write rate with a short closed-loop run of
// bulk requests against the optimized pipeline: the mean sink-write rate
// over the seconds that began and ended with a backlog (events accepted and
// not yet written: the workers were busy throughout), or the highest
// per-second rate if there never was one.
func (b *Bench) capacity(ctx context.Context) *Capacity {
	load := Load{Mode: ModeClosed, Clients: 64, Duration: scaled(20*time.Second, b.cfg.Scale, time.Second),
		Events: b.cfg.BurstEvents, Size: b.cfg.Size, Timeout: b.cfg.Timeout}
	run := b.runLoad(ctx, "burst", VariantCapacity, load, variantOverrides(VariantAfter))
	c := &Capacity{Run: run}
	if run.Observed == nil {
		c.Method = "not measured: " + run.Error
		return c
	}
	c.EventsPerSec, c.Method = capacityOf(run.Observed.Samples)
	if c.EventsPerSec <= 0 && run.Result != nil {
		c.EventsPerSec = run.Result.EventsPerSec
		c.Method = "accepted events/s (no sink metrics)"
	}
	return c
}

func capacityOf(ss []Sample) (float64, string) {
	sum, n, top := 0.0, 0, 0.0
	for i, s := range ss {
		top = max(top, s.SinkRate)
		if i > 0 && ss[i-1].Backlog > 0 && s.Backlog > 0 {
			sum += s.SinkRate
			n++
		}
	}
	if n > 0 {
		return sum / float64(n), fmt.Sprintf("mean sink-write rate over %d s that began and ended with a backlog", n)
	}
	return top, "highest 1-s sink-write rate (never a backlog for a whole second: a lower bound)"
}

// runLoad starts a pipeline with overrides, samples it while the load runs,
// checks the sink, and stops the pipeline.
func (b *Bench) runLoad(ctx context.Context, scenario, variant string, load Load, overrides []string) *Run {
	run := &Run{Scenario: scenario, Variant: variant, Overrides: overrides}
	dir, err := os.MkdirTemp(b.cfg.WorkDir, "loadgen-"+scenario+"-"+variant+"-")
	if err != nil {
		run.Error = err.Error()
		return run
	}
	defer func() {
		if run.Failed() || b.cfg.Keep {
			run.Dir = dir
		} else {
			os.RemoveAll(dir)
		}
	}()
	p := NewPipeline(PipelineConfig{BinDir: b.cfg.BinDir, Dir: dir, Workers: b.cfg.Workers, Sink: b.cfg.Sink,
		Overrides: append(slices.Clone(b.cfg.Overrides), overrides...), StatementDelay: b.cfg.StatementDelay}, b.root)
	if err := p.Start(ctx); err != nil {
		run.Error = err.Error()
		return run
	}
	load.Target = "http://" + p.Public
	load.IDPrefix = scenario + "." + variant + "." + strconv.FormatInt(time.Now().UnixNano(), 36)
	b.log.Info("run", zap.String("scenario", scenario), zap.String("variant", variant), zap.String("mode", load.Mode),
		zap.Int("clients", load.Clients), zap.Duration("length", load.Length()), zap.Strings("overrides", overrides))
	chk := &CheckConfig{Sink: p.Sink(), Prefix: load.IDPrefix, DrainTimeout: b.cfg.DrainTimeout}
	Measure(ctx, run, load, p.Targets(), chk, b.root)
	if err := p.Stop(); err != nil {
		run.Error = joinErr(run.Error, err.Error())
	} else {
		run.CleanExit = true
	}
	b.logRun(run)
	return run
}

func (b *Bench) logRun(r *Run) {
	fields := []zap.Field{zap.String("scenario", r.Scenario), zap.String("variant", r.Variant), zap.Bool("clean_exit", r.CleanExit)}
	if r.Result != nil {
		fields = append(fields, zap.String("events_per_s", fmtRate(r.Result.EventsPerSec)),
			zap.String("p99", fmtMs(r.Result.Latency.P99)), zap.String("errors", fmtPct(r.Result.ErrorRate)),
			zap.Int64("dropped", r.Result.Dropped))
	}
	if r.Check != nil {
		fields = append(fields, zap.Bool("count_ok", r.Check.OK), zap.Int64("lost", r.Check.Lost),
			zap.Int64("duplicates", r.Check.Duplicates), zap.String("drain", fmt.Sprintf("%.2fs", r.Check.DrainS)))
	}
	if r.Error != "" {
		b.log.Error("run failed", append(fields, zap.String("error", r.Error))...)
		return
	}
	b.log.Info("run done", fields...)
}

func joinErr(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}
