package degrade

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// Mode is the ingest service's level of degradation.
type Mode int32

// Modes, in order of severity.
const (
	Normal   Mode = iota // requests go to the queue
	Degraded             // some requests are spooled: the queue is slow, full or unreachable
	Critical             // the spool is (nearly) full or failing: what the queue cannot take is refused with 503
)

func (m Mode) String() string {
	switch m {
	case Degraded:
		return "degraded"
	case Critical:
		return "critical"
	}
	return "normal"
}

// ParseMode reads a mode name; "" means no override.
func ParseMode(s string) (Mode, bool, error) {
	switch s {
	case "":
		return Normal, false, nil
	case "normal":
		return Normal, true, nil
	case "degraded":
		return Degraded, true, nil
	case "critical":
		return Critical, true, nil
	}
	return Normal, false, fmt.Errorf("degrade: unknown mode %q", s)
}

// ModeSettings are the thresholds of the automatic mode and the override.
type ModeSettings struct {
	Force         string        // "" (automatic), normal, degraded or critical
	NormalAfter   time.Duration // degraded → normal once the spool is empty and unused this long
	CriticalAbove float64       // spool usage that enters critical
	CriticalBelow float64       // spool usage under which critical ends
}

// usage is what Modes reads of the spool.
type usage interface {
	Usage() float64
	Len() (records, bytes int64)
}

// Modes computes the mode from the spool's state, with hysteresis so that
// it does not flap: degraded starts with the first spooled request and
// ends only after NormalAfter without any; critical starts at
// CriticalAbove (or on a spool write failure) and ends under
// CriticalBelow. An operator can force a mode. Each transition is logged
// once and exported as levee_degrade_mode.
type Modes struct {
	spool usage
	log   *zap.Logger
	now   func() time.Time

	settings  atomic.Pointer[ModeSettings]
	effective atomic.Int32
	lastSpool atomic.Int64 // UnixNano of the last spooled request
	lastFail  atomic.Int64 // UnixNano of the last spool failure

	mu   sync.Mutex // serialises evaluate
	auto Mode

	gauge       prometheus.Gauge
	forced      prometheus.Gauge
	transitions *prometheus.CounterVec
}

// NewModes returns the mode machine over spool.
func NewModes(spool usage, s ModeSettings, log *zap.Logger, reg prometheus.Registerer) (*Modes, error) {
	m := &Modes{spool: spool, log: log.With(zap.String("component", "degrade")), now: time.Now,
		gauge: prometheus.NewGauge(prometheus.GaugeOpts{Name: "levee_degrade_mode",
			Help: "Mode in force: 0 normal, 1 degraded (spooling), 2 critical (spool full or failing)."}),
		forced: prometheus.NewGauge(prometheus.GaugeOpts{Name: "levee_degrade_forced",
			Help: "1 while degrade.force overrides the automatic mode."}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "levee_degrade_transitions_total",
			Help: "Mode transitions, by the mode entered."}, []string{"to"}),
	}
	for _, c := range []prometheus.Collector{m.gauge, m.forced, m.transitions} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("degrade: register metrics: %w", err)
		}
	}
	for _, md := range []Mode{Normal, Degraded, Critical} {
		m.transitions.WithLabelValues(md.String())
	}
	m.Apply(s)
	return m, nil
}

// Apply changes the settings live.
func (m *Modes) Apply(s ModeSettings) {
	m.settings.Store(&s)
	m.evaluate()
}

// Current returns the mode in force.
func (m *Modes) Current() Mode { return Mode(m.effective.Load()) }

// Forced returns the overriding mode, if an operator set one.
func (m *Modes) Forced() (Mode, bool) {
	md, ok, _ := ParseMode(m.settings.Load().Force)
	return md, ok
}

// Spooled records that a request was spooled.
func (m *Modes) Spooled() {
	m.lastSpool.Store(m.now().UnixNano())
	if m.Current() == Normal {
		m.evaluate()
	}
}

// SpoolFailed records that the spool could not take a request.
func (m *Modes) SpoolFailed() {
	m.lastFail.Store(m.now().UnixNano())
	m.evaluate()
}

// Run re-evaluates the mode every 250 ms until ctx ends.
func (m *Modes) Run(ctx context.Context) error {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			m.evaluate()
		}
	}
}

// evaluate computes the automatic mode and the effective one.
func (m *Modes) evaluate() {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.settings.Load()
	now := m.now()
	use := m.spool.Usage()
	records, _ := m.spool.Len()
	failing := now.Sub(time.Unix(0, m.lastFail.Load())) < 5*time.Second
	quiet := now.Sub(time.Unix(0, m.lastSpool.Load())) >= s.NormalAfter
	next := Normal
	switch {
	case failing || use >= s.CriticalAbove:
		next = Critical
	case m.auto == Critical && use > s.CriticalBelow:
		next = Critical
	case records > 0 || !quiet:
		next = Degraded
	}
	m.auto = next
	eff := next
	forced, isForced, _ := ParseMode(s.Force)
	if isForced {
		eff = forced
		m.forced.Set(1)
	} else {
		m.forced.Set(0)
	}
	prev := Mode(m.effective.Swap(int32(eff)))
	m.gauge.Set(float64(eff))
	if prev == eff {
		return
	}
	m.transitions.WithLabelValues(eff.String()).Inc()
	fields := []zap.Field{zap.String("from", prev.String()), zap.String("to", eff.String()),
		zap.Float64("spool_usage", use), zap.Int64("spool_records", records), zap.Bool("forced", isForced)}
	switch eff {
	case Critical:
		m.log.Error("mode changed: critical; requests the queue cannot take are refused with 503", fields...)
	case Degraded:
		m.log.Warn("mode changed: degraded; requests the queue cannot take are spooled", fields...)
	default:
		m.log.Info("mode changed: normal", fields...)
	}
}
