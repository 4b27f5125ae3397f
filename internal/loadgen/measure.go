package loadgen

import (
	"context"
	"time"

	"go.uber.org/zap"
)

// Measure runs load while a sampler watches t, then (when chk is not nil)
// checks the sink, and fills run with what it measured. Failures are
// recorded in run.Error.
func Measure(ctx context.Context, run *Run, load Load, t Targets, chk *CheckConfig, log *zap.Logger) {
	sctx, stopSampling := context.WithCancel(ctx)
	series := make(chan *Series, 1)
	go func() { series <- NewSampler(t, time.Second, log).Run(sctx) }()
	// The sampler keeps going through the count check, so that the charts
	// show the queue draining; CPU and memory are summarised over the load
	// (first request to last answer).
	defer func() {
		stopSampling()
		ser := <-series
		if run.Result != nil {
			end := run.Result.Started.Add(time.Duration(run.Result.Elapsed * float64(time.Second)))
			o := ser.Observe(run.Result.Started, end)
			run.Observed = &o
		}
	}()
	gen, err := NewGenerator(load, log)
	if err != nil {
		run.Error = err.Error()
		return
	}
	res, err := gen.Run(ctx)
	run.Result = res
	if err != nil {
		run.Error = err.Error()
		return
	}
	if chk == nil {
		return
	}
	chk.Prefix = load.IDPrefix
	run.Check, err = NewChecker(*chk, log).Check(ctx, gen.Accepted(), gen.Unknown(), res.LastAccepted)
	if err != nil {
		run.Error = err.Error()
	}
}
