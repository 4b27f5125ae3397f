package loadgen

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"time"

	"go.uber.org/zap"
)

// CeilingConfig configures the ceiling measurements.
type CeilingConfig struct {
	Self      string          // this executable, run as "noop-server"
	Dir       string          // scratch directory
	Clients   []int           // concurrencies of the no-op HTTP ceiling
	Durations []time.Duration // of each no-op measurement, by Clients index; missing = Duration
	Duration  time.Duration   // of each no-op and COPY measurement
	Events    int
	Size      int
	NATSURL   string // JetStream server; "" = start a pipeline from BinDir for its embedded server
	BinDir    string
	NATSBin   string // natscli; "" = built-in publisher
	JSMsgs    int
	Workers   int
	PGDSN     string // "" = no COPY ceiling
}

// Ceilings are what this machine can do at most on each stage, measured
// without the pipeline around it.
type Ceilings struct {
	Noop      []NoopCeiling `json:"noop_http,omitempty"`
	NoopError string        `json:"noop_http_error,omitempty"`
	JetStream *JSCeiling    `json:"jetstream_publish,omitempty"`
	JSError   string        `json:"jetstream_publish_error,omitempty"`
	Copy      []CopyCeiling `json:"postgres_copy,omitempty"`
	CopyError string        `json:"postgres_copy_error,omitempty"`
}

// RunCeilings measures the no-op HTTP, JetStream publish and (with a DSN)
// PostgreSQL COPY ceilings one after the other. A failed measurement is
// reported in the result, not returned.
func RunCeilings(ctx context.Context, cfg CeilingConfig, log *zap.Logger) *Ceilings {
	log = log.With(zap.String("component", "ceilings"))
	c := &Ceilings{}
	log.Info("no-op HTTP ceiling", zap.Ints("clients", cfg.Clients), zap.Duration("each", cfg.Duration))
	var err error
	durs := make([]time.Duration, len(cfg.Clients))
	for i := range durs {
		durs[i] = cfg.Duration
		if i < len(cfg.Durations) {
			durs[i] = cfg.Durations[i]
		}
	}
	c.Noop, err = NoopCeilings(ctx, cfg.Self, filepath.Join(cfg.Dir, "noop"), cfg.Clients, durs, cfg.Events, cfg.Size, log)
	if err != nil {
		c.NoopError = err.Error()
	}
	c.JetStream, err = jsCeiling(ctx, cfg, log)
	if err != nil {
		c.JSError = err.Error()
	}
	if cfg.PGDSN != "" {
		for _, n := range []int{1, 4} {
			log.Info("PostgreSQL COPY ceiling", zap.Int("conns", n))
			cc, err := PostgresCopyCeiling(ctx, cfg.PGDSN, n, cfg.Duration, cfg.Size)
			if err != nil {
				c.CopyError = err.Error()
				break
			}
			c.Copy = append(c.Copy, *cc)
		}
	}
	return c
}

// jsCeiling measures JetStream against cfg.NATSURL, or against the embedded
// server of a pipeline started for the purpose.
func jsCeiling(ctx context.Context, cfg CeilingConfig, log *zap.Logger) (*JSCeiling, error) {
	url := cfg.NATSURL
	if url == "" {
		dir := filepath.Join(cfg.Dir, "jetstream")
		p := NewPipeline(PipelineConfig{BinDir: cfg.BinDir, Dir: dir, Workers: cfg.Workers,
			Overrides: variantOverrides(VariantAfter)}, log)
		if err := p.Start(ctx); err != nil {
			return nil, err
		}
		defer func() {
			if err := p.Stop(); err != nil {
				log.Warn("stop pipeline of the JetStream ceiling", zap.Error(err))
			}
			os.RemoveAll(dir)
		}()
		url = "nats://" + p.NATS
	}
	log.Info("JetStream publish ceiling", zap.String("nats", url), zap.Int("msgs", cfg.JSMsgs), zap.Bool("natscli", cfg.NATSBin != ""))
	return JetStreamCeiling(ctx, url, cfg.NATSBin, cfg.JSMsgs, log)
}

// ceilings runs the no-op ceiling at the concurrency of each selected
// closed-loop scenario, for as long as the scenario runs (at most 20 s).
func (b *Bench) ceilings(ctx context.Context) *Ceilings {
	var clients []int
	var durs []time.Duration
	for _, s := range b.cfg.Scenarios {
		if !s.Burst && !slices.Contains(clients, s.Clients) {
			clients = append(clients, s.Clients)
			durs = append(durs, min(s.Scaled(b.cfg.Scale).Duration, 20*time.Second))
		}
	}
	dir, err := os.MkdirTemp(b.cfg.WorkDir, "loadgen-ceilings-")
	if err != nil {
		return &Ceilings{NoopError: err.Error(), JSError: err.Error()}
	}
	defer os.RemoveAll(dir)
	dsn := ""
	if b.cfg.Sink.Kind == SinkPostgres {
		dsn = b.cfg.Sink.PGDSN
	}
	return RunCeilings(ctx, CeilingConfig{
		Self: b.cfg.Self, Dir: dir, Clients: clients, Durations: durs, Duration: scaled(20*time.Second, b.cfg.Scale, time.Second),
		Events: b.cfg.Events, Size: b.cfg.Size, BinDir: b.cfg.BinDir, NATSBin: b.cfg.NATSBin,
		JSMsgs: max(int(1e6*b.cfg.Scale), 50_000), Workers: b.cfg.Workers, PGDSN: dsn,
	}, b.root)
}
