package degrade

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/levee-dev/levee/internal/backpressure"
	"github.com/levee-dev/levee/internal/event"
	"github.com/levee-dev/levee/internal/queue"
)

// Publisher is what the replayer needs of the queue.
type Publisher interface {
	Publish(ctx context.Context, evs []event.Event) error
	Ready() bool
}

// Gate is the admission gate live traffic goes through.
type Gate interface {
	TryAcquire(n int) (backpressure.Token, bool)
	Headroom() int
	Inflight() int
	Limit() int
}

// ReplaySettings are the live-tunable parameters of the replayer.
type ReplaySettings struct {
	Headroom    float64 // fraction of the gate's limit left to live traffic
	BatchEvents int     // events replayed per publish
	Timeout     time.Duration
}

// Replayer drains the spool into the queue when the queue can take it.
// Live traffic comes first: a batch is replayed only while the admission
// gate has room for it plus Headroom of its limit, and not at all while an
// operator forces degraded or critical mode. Records are removed from the
// spool only after the PubAcks of all their events. Each event keeps its id,
// so JetStream's dedupe window and the sink's idempotency drop anything
// replayed twice (after a crash, or a publish that timed out but landed).
type Replayer struct {
	spool    *Spool
	pub      Publisher
	gate     Gate
	modes    *Modes
	log      *zap.Logger
	settings atomic.Pointer[ReplaySettings]
	events   prometheus.Counter
	failures prometheus.Counter
	pending  []Entry // read from the spool, not yet published
	evs      []event.Event
}

// NewReplayer returns a replayer; Run drives it.
func NewReplayer(spool *Spool, pub Publisher, gate Gate, modes *Modes, s ReplaySettings, log *zap.Logger, reg prometheus.Registerer) (*Replayer, error) {
	r := &Replayer{spool: spool, pub: pub, gate: gate, modes: modes, log: log.With(zap.String("component", "replayer")),
		events: prometheus.NewCounter(prometheus.CounterOpts{Name: "levee_spool_replayed_events_total",
			Help: "Events replayed from the spool into the queue."}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{Name: "levee_spool_replay_failures_total",
			Help: "Replay publishes that failed (retried later)."}),
	}
	for _, c := range []prometheus.Collector{r.events, r.failures} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	r.Apply(s)
	return r, nil
}

// Apply changes the settings live.
func (r *Replayer) Apply(s ReplaySettings) { r.settings.Store(&s) }

// Run replays until ctx ends. It is the spool's only reader.
func (r *Replayer) Run(ctx context.Context) error {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		if !r.allowed() {
			r.wait(ctx, 200*time.Millisecond, false)
			continue
		}
		if !r.fill(max(1, min(r.settings.Load().BatchEvents, r.room()))) {
			r.wait(ctx, time.Second, true) // until something is spooled
			continue
		}
		n := len(r.evs)
		// An idle gate takes a batch bigger than the room (a record can
		// hold up to ingest.max_events_per_request events); otherwise live
		// traffic keeps its headroom.
		if r.room() < n && r.gate.Inflight() > 0 {
			r.wait(ctx, 20*time.Millisecond, false)
			continue
		}
		tok, ok := r.gate.TryAcquire(n)
		if !ok {
			r.wait(ctx, 20*time.Millisecond, false)
			continue
		}
		s := r.settings.Load()
		pctx, cancel := context.WithTimeout(ctx, s.Timeout)
		err := r.pub.Publish(pctx, r.evs)
		cancel()
		if err != nil {
			tok.Release(backpressure.Dropped)
			r.failures.Inc()
			r.log.Warn("replay publish failed; will retry", zap.Int("events", n), zap.Error(err))
			r.wait(ctx, backoff, false)
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		tok.Release(backpressure.Success)
		backoff = 100 * time.Millisecond
		for _, e := range r.pending {
			r.spool.Commit(e)
		}
		r.events.Add(float64(n))
		r.pending, r.evs = r.pending[:0], r.evs[:0]
	}
	return nil
}

// allowed reports whether replaying is permitted now.
func (r *Replayer) allowed() bool {
	if f, ok := r.modes.Forced(); ok && f != Normal {
		return false
	}
	return r.pub.Ready()
}

// room returns how many events the gate can take beyond the headroom kept
// for live traffic.
func (r *Replayer) room() int {
	keep := int(r.settings.Load().Headroom * float64(r.gate.Limit()))
	return r.gate.Headroom() - keep
}

// fill reads records until the batch holds at least target events (or the
// spool has no more). It reports whether there is anything to replay.
func (r *Replayer) fill(target int) bool {
	for len(r.evs) < target {
		e, ok := r.spool.Next()
		if !ok {
			break
		}
		recs, err := queue.DecodePack(e.Data)
		if err != nil {
			// The spool's own checksum held, so this is not disk damage;
			// it cannot be replayed either way.
			r.log.Error("spool record is not a readable pack; skipping it", zap.Error(err))
			r.spool.Commit(e)
			continue
		}
		r.pending = append(r.pending, e)
		for _, rec := range recs {
			if rec.Err != nil {
				r.log.Error("spooled event unreadable; skipping it", zap.Error(rec.Err))
				continue
			}
			r.evs = append(r.evs, rec.Event)
		}
	}
	if len(r.pending) > 0 && len(r.evs) == 0 {
		for _, e := range r.pending {
			r.spool.Commit(e)
		}
		r.pending = r.pending[:0]
	}
	return len(r.evs) > 0
}

// wait sleeps for d, or until ctx ends, or (with onAppend) until the
// next record is spooled.
func (r *Replayer) wait(ctx context.Context, d time.Duration, onAppend bool) {
	var appended <-chan struct{}
	if onAppend {
		appended = r.spool.Appended()
	}
	select {
	case <-ctx.Done():
	case <-appended:
	case <-time.After(d):
	}
}

// EncodeSpoolRecord packs events into one spool record (the pack format of
// queue messages).
func EncodeSpoolRecord(evs []event.Event) []byte {
	var w queue.PackWriter
	for i := range evs {
		w.Add(&evs[i])
	}
	data, _ := w.Finish()
	return data
}
