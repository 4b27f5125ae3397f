// Package worker consumes the event stream: it fetches messages, decodes
// them in an ants pool, batches their events, writes each batch to the sink
// and acknowledges a message once every one of its events is committed.
package worker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/panjf2000/ants/v2"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/levee-dev/levee/internal/backpressure"
	"github.com/levee-dev/levee/internal/batch"
	"github.com/levee-dev/levee/internal/config"
	"github.com/levee-dev/levee/internal/degrade"
	"github.com/levee-dev/levee/internal/event"
	"github.com/levee-dev/levee/internal/sink"
)

// Sink is what the worker needs of a database.
type Sink interface {
	Write(ctx context.Context, evs []event.Event) (inserted int, err error)
}

// Settings are the live-tunable parameters of a Worker.
type Settings struct {
	Batch      batch.Limits
	Batching   bool
	PoolSize   int
	Limit      backpressure.Config // concurrent sink writes
	Breaker    degrade.BreakerSettings
	FetchMax   int
	MaxDeliver int
	NakDelay   time.Duration
}

// SettingsFrom extracts the worker settings from a configuration.
func SettingsFrom(cfg *config.Config) Settings {
	return Settings{
		Batch:      batch.Limits{MaxRows: cfg.Batch.MaxRows, MaxBytes: cfg.Batch.MaxBytes, Linger: cfg.Batch.Linger},
		Batching:   cfg.Optimization.Batching,
		PoolSize:   cfg.Worker.PoolSize,
		Limit:      backpressure.WorkerConfig(cfg),
		Breaker:    degrade.BreakerSettingsFrom(cfg),
		FetchMax:   cfg.Worker.FetchMax,
		MaxDeliver: cfg.Worker.MaxDeliver,
		NakDelay:   cfg.Worker.NakDelay,
	}
}

// Options are the fixed parameters of a Worker.
type Options struct {
	AckWait         time.Duration // the consumer's AckWait, for InProgress
	DLQSubject      string        // subject prefix of the dead-letter stream
	ShutdownTimeout time.Duration // time to flush and ack at shutdown
	WriteTimeout    time.Duration // longest sink write before it counts as failed
	FetchWait       time.Duration // longest wait of one fetch request (default 1s)
	MaxAckPending   int           // the consumer's MaxAckPending: the most events held at once
	Stream          string        // the stream's name, for its fill level
}

// item is one event in a batch, with the message it came from.
type item struct {
	ev event.Event
	d  *delivery
}

// Worker runs the consumption pipeline. Every stage is bounded: at most
// about two batches' worth of events per write slot are fetched and not yet
// written (and never more than the sink writes in half an AckWait); the
// decode pool blocks the fetch loop when busy; a full batch waits for a
// write slot. The number of write slots is the sink limiter's limit, which
// adapts to the sink's latency and errors. A slow sink therefore slows
// fetching, and the stream absorbs the difference.
type Worker struct {
	cons jetstream.Consumer
	js   jetstream.JetStream
	sink Sink
	opts Options
	log  *zap.Logger
	m    *metrics

	settings atomic.Pointer[Settings]
	limiter  *backpressure.Limiter // concurrent sink writes
	breaker  *degrade.Breaker
	decode   *ants.Pool
	write    *ants.Pool
	batcher  *batch.Batcher[item]
	single   chan batch.Batch[item] // messages written alone when batching is off
	track    tracker

	outstanding atomic.Int64 // events fetched and not yet settled
	perMsg      atomic.Int64 // moving average of events per message, ×16
	written     atomic.Int64 // events written, for the write rate
	rate        atomic.Int64 // moving average of events written per second
	room        chan struct{}

	decoding sync.WaitGroup
	writing  sync.WaitGroup
	writeCtx context.Context // outlives the fetch context until the shutdown deadline
}

// New returns a worker consuming cons and writing to sink. js publishes to
// the dead-letter stream.
func New(cons jetstream.Consumer, js jetstream.JetStream, sk Sink, s Settings, opts Options, log *zap.Logger, reg prometheus.Registerer) (*Worker, error) {
	if opts.FetchWait <= 0 {
		opts.FetchWait = time.Second
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = 30 * time.Second
	}
	w := &Worker{
		cons: cons, js: js, sink: sk, opts: opts,
		log:    log.With(zap.String("component", "worker")),
		single: make(chan batch.Batch[item]),
		room:   make(chan struct{}, 1),
	}
	w.settings.Store(&s)
	w.perMsg.Store(16)
	var err error
	panicked := ants.WithPanicHandler(func(p any) {
		w.log.Error("panic in pool task; its messages will be redelivered", zap.Any("panic", p))
	})
	if w.decode, err = ants.NewPool(s.PoolSize, panicked); err != nil {
		return nil, fmt.Errorf("worker: decode pool: %w", err)
	}
	if w.limiter, err = backpressure.NewLimiter("sink", s.Limit, reg); err != nil {
		return nil, err
	}
	// The write pool is as large as the limit: tuned whenever it moves.
	if w.write, err = ants.NewPool(w.limiter.Limit(), panicked); err != nil {
		return nil, fmt.Errorf("worker: write pool: %w", err)
	}
	w.limiter.OnChange(func(limit int) { w.write.Tune(limit) })
	if w.breaker, err = degrade.NewBreaker(s.Breaker, sink.IsDataError, log, reg); err != nil {
		return nil, err
	}
	w.batcher = batch.New[item](s.Batch, nil)
	if w.m, err = newMetrics(reg, w); err != nil {
		return nil, err
	}
	return w, nil
}

// Apply changes the live settings: pool sizes, batch limits, switches.
func (w *Worker) Apply(s Settings) {
	w.settings.Store(&s)
	w.decode.Tune(s.PoolSize)
	w.limiter.Configure(s.Limit)
	w.breaker.Apply(s.Breaker)
	w.batcher.SetLimits(s.Batch)
	w.signalRoom()
}

// Run consumes until ctx ends, then stops fetching, flushes and acks what it
// holds within Options.ShutdownTimeout, and releases its pools. Messages it
// could not finish are left unacknowledged and will be redelivered.
func (w *Worker) Run(ctx context.Context) error {
	writeCtx, cancelWrites := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWrites()
	w.writeCtx = writeCtx
	batchCtx, stopBatcher := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBatcher()

	var pipeline, aux sync.WaitGroup
	pipeline.Go(func() { _ = w.batcher.Run(batchCtx) })
	pipeline.Go(w.dispatchWrites)
	auxCtx, stopAux := context.WithCancel(context.WithoutCancel(ctx))
	defer stopAux()
	aux.Go(func() { w.track.keepAlive(auxCtx, w.opts.AckWait, w.m.inProgress) })
	aux.Go(func() { w.pollConsumer(auxCtx) })
	aux.Go(func() { w.measureRate(auxCtx) })

	w.fetchLoop(ctx)

	// Shutdown: no more fetches. Let decoding finish, flush the batcher,
	// wait for the writes, all within the deadline.
	deadline := time.AfterFunc(w.opts.ShutdownTimeout, func() {
		w.log.Warn("shutdown deadline reached; unfinished messages will be redelivered")
		cancelWrites()
	})
	defer deadline.Stop()
	w.decoding.Wait()
	stopBatcher()
	close(w.single)
	pipeline.Wait() // dispatchWrites returns after the last batch was submitted
	w.writing.Wait()
	stopAux() // in-progress signals ran until every write finished
	aux.Wait()
	w.decode.Release()
	w.write.Release()
	return nil
}

// fetchLoop pulls messages while there is room for them.
func (w *Worker) fetchLoop(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		if w.breaker.Open() {
			// The sink is failing: fetching more would only turn into naks.
			// The breaker lets a probe write through after its open time.
			select {
			case <-time.After(100 * time.Millisecond):
			case <-ctx.Done():
			}
			continue
		}
		n := w.fetchSize()
		if n == 0 {
			select {
			case <-w.room:
			case <-time.After(100 * time.Millisecond):
			case <-ctx.Done():
			}
			continue
		}
		msgs, err := w.cons.Fetch(n, jetstream.FetchMaxWait(w.opts.FetchWait))
		if err != nil {
			w.log.Warn("fetch failed", zap.Error(err))
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
			}
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		for msg := range msgs.Messages() {
			w.dispatch(msg)
		}
		if err := msgs.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) {
			w.log.Debug("fetch ended", zap.Error(err))
		}
	}
}

// fetchSize is how many messages to ask for: enough to keep the write slots
// busy, and no more than fit in about two batches per write slot, nor more
// than the sink writes in half an AckWait at its recent rate, nor more than
// the consumer's MaxAckPending.
func (w *Worker) fetchSize() int {
	s := w.settings.Load()
	rows := int64(s.Batch.MaxRows)
	limit := int64(w.limiter.Limit()+1) * rows * 2
	if r := w.rate.Load(); r > 0 {
		limit = min(limit, max(rows, r*int64(w.opts.AckWait/time.Second)/2))
	}
	if w.opts.MaxAckPending > 0 {
		limit = min(limit, int64(w.opts.MaxAckPending))
	}
	if w.breaker.HalfOpen() {
		limit = rows // the probe: one batch in hand, no more
	}
	free := limit - w.outstanding.Load()
	if free <= 0 {
		return 0
	}
	perMsg := max(w.perMsg.Load()/16, 1)
	return int(min(max(free/perMsg, 1), int64(s.FetchMax)))
}

func (w *Worker) signalRoom() {
	select {
	case w.room <- struct{}{}:
	default:
	}
}

// dispatch hands a fetched message to the decode pool; Submit blocks while
// every decoder is busy, which holds the fetch loop back.
func (w *Worker) dispatch(msg jetstream.Msg) {
	w.m.fetched.Inc()
	d := &delivery{msg: msg}
	w.track.add(d)
	w.decoding.Add(1)
	err := w.decode.Submit(func() {
		defer w.decoding.Done()
		w.process(d)
	})
	if err != nil {
		w.decoding.Done()
		w.log.Error("decode pool refused a task; message will be redelivered", zap.Error(err))
		w.track.remove(d)
		_ = msg.NakWithDelay(w.settings.Load().NakDelay)
	}
}

// dispatchWrites submits every flushed batch to the write pool; Submit
// blocks while all write slots are busy, which holds the batcher back.
func (w *Worker) dispatchWrites() {
	batches, single := w.batcher.Batches(), w.single
	for batches != nil || single != nil {
		var b batch.Batch[item]
		var ok bool
		select {
		case b, ok = <-batches:
			if !ok {
				batches = nil
				continue
			}
		case b, ok = <-single:
			if !ok {
				single = nil
				continue
			}
		}
		w.m.flushes.WithLabelValues(string(b.Reason)).Inc()
		// A write slot first: this wait is what holds a slow sink's
		// batches back, and with them the batcher and the fetch loop.
		tok, err := w.limiter.Acquire(w.writeCtx, 1)
		if err != nil {
			w.settleAll(b.Items, false) // shutdown deadline passed
			continue
		}
		w.writing.Add(1)
		if err := w.write.Submit(func() { defer w.writing.Done(); w.writeBatch(b, tok) }); err != nil {
			w.writing.Done()
			tok.Release(backpressure.Ignore)
			w.log.Error("write pool refused a batch; its messages will be redelivered", zap.Error(err))
			w.settleAll(b.Items, false)
		}
	}
}

// measureRate keeps a moving average of the events written per second.
func (w *Worker) measureRate(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	last := w.written.Load()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n := w.written.Load()
		w.rate.Store((w.rate.Load()*3 + (n - last)) / 4)
		last = n
	}
}

// pollConsumer exports the consumer's pending and redelivery counts and
// the stream's fill level, every 5 s (not per message).
func (w *Worker) pollConsumer(ctx context.Context) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		ictx, cancel := context.WithTimeout(ctx, 2*time.Second)
		info, err := w.cons.Info(ictx)
		if err == nil {
			w.m.pending.Set(float64(info.NumPending))
			w.m.ackPending.Set(float64(info.NumAckPending))
			w.m.redelivered.Set(float64(info.NumRedelivered))
		}
		if w.opts.Stream != "" {
			if st, err := w.js.Stream(ictx, w.opts.Stream); err == nil {
				si := st.CachedInfo()
				w.m.streamBytes.Set(float64(si.State.Bytes))
				w.m.streamMsgs.Set(float64(si.State.Msgs))
				w.m.streamMax.Set(float64(si.Config.MaxBytes))
			}
		}
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
