package backpressure

import (
	"math"
	"time"

	"github.com/levee-dev/levee/internal/config"
)

func paramsFrom(cfg *config.Config, min, max int, step float64) Params {
	b := cfg.Backpressure
	return Params{
		Min: min, Max: max, Step: step,
		Tolerance: b.Tolerance, BaselineWindow: b.BaselineWindow,
		Backoff: b.AIMD.Backoff, RTTDeviation: b.AIMD.RTTDeviation, EWMAAlpha: b.AIMD.EWMAAlpha,
		MinWindow: time.Millisecond,
		Smoothing: b.Gradient2.Smoothing,
	}
}

// WorkerConfig is the configuration of a worker's sink-write limiter: its
// unit is one batch being written.
func WorkerConfig(cfg *config.Config) Config {
	b := cfg.Backpressure
	return Config{
		Algorithm: b.Algorithm,
		Adaptive:  cfg.Optimization.Adaptive,
		Static:    cfg.Worker.MaxInflightBatches,
		Initial:   cfg.Worker.MaxInflightBatches,
		Params:    paramsFrom(cfg, b.MinLimit, b.MaxLimit, b.Step),
	}
}

// IngestConfig is the configuration of the ingest admission gate: its unit
// is one event awaiting a PubAck. Without adaptation the gate lets through
// everything the publisher's own bound (queue.max_inflight_events) admits.
func IngestConfig(cfg *config.Config) Config {
	in := cfg.Backpressure.Ingest
	return Config{
		Algorithm: cfg.Backpressure.Algorithm,
		Adaptive:  cfg.Optimization.Adaptive,
		Static:    min(cfg.Queue.MaxInflightEvents, math.MaxInt32),
		Initial:   in.InitialLimit,
		Params:    paramsFrom(cfg, in.MinLimit, in.MaxLimit, in.Step),
	}
}
