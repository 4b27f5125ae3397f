package degrade

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"
	"go.uber.org/zap"
)

// ErrBreakerOpen is returned instead of calling a sink the breaker keeps
// away from: it is failing, or its half-open probe is already running.
var ErrBreakerOpen = errors.New("degrade: sink circuit breaker open")

// BreakerSettings configure the sink breaker.
type BreakerSettings struct {
	Enabled  bool          // optimization.degrade
	Failures uint32        // consecutive failed writes that open it
	OpenFor  time.Duration // how long it stays open before a probe write
}

// Breaker is a circuit breaker around sink writes (gobreaker). After
// Failures consecutive failures it opens: writes fail at once without
// touching the sink, and the worker stops fetching. After OpenFor it lets
// one probe write through (half-open); success closes it. Writes refused
// for their content do not count: the sink answered.
type Breaker struct {
	log         *zap.Logger
	isData      func(error) bool
	cb          atomic.Pointer[gobreaker.CircuitBreaker[int]]
	settings    atomic.Pointer[BreakerSettings]
	state       prometheus.Gauge
	transitions *prometheus.CounterVec
}

// NewBreaker returns a breaker; isData tells errors caused by the data
// (which do not trip it).
func NewBreaker(s BreakerSettings, isData func(error) bool, log *zap.Logger, reg prometheus.Registerer) (*Breaker, error) {
	b := &Breaker{log: log.With(zap.String("component", "breaker")), isData: isData,
		state: prometheus.NewGauge(prometheus.GaugeOpts{Name: "levee_breaker_state",
			Help: "Sink circuit breaker: 0 closed, 1 half-open, 2 open."}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "levee_breaker_transitions_total",
			Help: "Sink circuit breaker transitions, by the state entered."}, []string{"to"}),
	}
	for _, c := range []prometheus.Collector{b.state, b.transitions} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("degrade: register metrics: %w", err)
		}
	}
	for _, st := range []string{"closed", "half-open", "open"} {
		b.transitions.WithLabelValues(st)
	}
	b.Apply(s)
	return b, nil
}

// Apply changes the settings live; a changed threshold or timeout starts a
// fresh (closed) breaker.
func (b *Breaker) Apply(s BreakerSettings) {
	old := b.settings.Swap(&s)
	if old != nil && old.Failures == s.Failures && old.OpenFor == s.OpenFor {
		return
	}
	b.cb.Store(gobreaker.NewCircuitBreaker[int](gobreaker.Settings{
		Name:        "sink",
		MaxRequests: 1,
		Timeout:     s.OpenFor,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= s.Failures },
		IsSuccessful: func(err error) bool {
			return err == nil || b.isData(err)
		},
		IsExcluded: func(err error) bool { return errors.Is(err, context.Canceled) },
		OnStateChange: func(_ string, from, to gobreaker.State) {
			b.state.Set(float64(stateValue(to)))
			b.transitions.WithLabelValues(to.String()).Inc()
			if to == gobreaker.StateOpen {
				b.log.Error("sink breaker open: writes fail fast and fetching pauses", zap.Duration("for", s.OpenFor))
			} else {
				b.log.Warn("sink breaker "+to.String(), zap.String("from", from.String()))
			}
		},
	}))
	b.state.Set(0)
}

func stateValue(s gobreaker.State) int {
	switch s {
	case gobreaker.StateHalfOpen:
		return 1
	case gobreaker.StateOpen:
		return 2
	}
	return 0
}

// Do runs write through the breaker, or refuses with ErrBreakerOpen.
func (b *Breaker) Do(write func() error) error {
	if !b.settings.Load().Enabled {
		return write()
	}
	_, err := b.cb.Load().Execute(func() (int, error) { return 0, write() })
	if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
		return ErrBreakerOpen
	}
	return err
}

// Open reports whether the breaker refuses writes now; the worker does not
// fetch while it is open.
func (b *Breaker) Open() bool {
	return b.settings.Load().Enabled && b.cb.Load().State() == gobreaker.StateOpen
}

// HalfOpen reports whether the breaker is letting a probe write through:
// the worker then fetches no more than that one write needs, so that a
// failed probe does not turn a whole fetch into redeliveries.
func (b *Breaker) HalfOpen() bool {
	return b.settings.Load().Enabled && b.cb.Load().State() == gobreaker.StateHalfOpen
}

// OpenFor returns how long the breaker stays open: the delay for messages
// nak'ed while it is.
func (b *Breaker) OpenFor() time.Duration { return b.settings.Load().OpenFor }
