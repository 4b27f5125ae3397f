package telemetry

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/levee-dev/levee/internal/config"
)

// Logging is a binary's logger with the log policy (seed §5.3):
//
//   - ERROR is never limited;
//   - WARN is rate-limited per message: the first log.warn_burst lines of a
//     message in each log.warn_interval are written, the rest are counted,
//     and the count is written once the interval is over;
//   - INFO carries a periodic summary (see Summary) instead of per-event lines;
//   - DEBUG (per-request details) is sampled: after the first 10 lines of a
//     message in a second, 1 in log.debug_sample is written.
type Logging struct {
	Logger *zap.Logger
	Level  zap.AtomicLevel
	warn   *warnLimiter
}

// NewLogging builds the logger of binary from cfg, writing to stderr.
func NewLogging(cfg config.Log, binary string) (*Logging, error) {
	return NewLoggingTo(cfg, binary, zapcore.Lock(os.Stderr))
}

// NewLoggingTo is NewLogging writing to w.
func NewLoggingTo(cfg config.Log, binary string, w zapcore.WriteSyncer) (*Logging, error) {
	level, err := zap.ParseAtomicLevel(cfg.Level)
	if err != nil {
		return nil, fmt.Errorf("log.level: %w", err)
	}
	core := zapcore.NewCore(encoder(cfg.Format), w, level)
	return NewLoggingCore(core, level, cfg, binary), nil
}

// NewLoggingCore applies the log policy to core; tests pass an observer.
func NewLoggingCore(core zapcore.Core, level zap.AtomicLevel, cfg config.Log, binary string) *Logging {
	debug := zapcore.NewSamplerWithOptions(onlyLevel{core, zapcore.DebugLevel}, time.Second, 10, cfg.DebugSample)
	warn := &warnLimiter{Core: onlyLevel{core, zapcore.WarnLevel}, burst: cfg.WarnBurst, interval: cfg.WarnInterval,
		now: time.Now, state: map[string]*warnState{}}
	rest := excludeLevels{core, zapcore.DebugLevel, zapcore.WarnLevel}
	logger := zap.New(zapcore.NewTee(debug, warn, rest), zap.ErrorOutput(zapcore.Lock(os.Stderr)))
	return &Logging{Logger: logger.With(zap.String("binary", binary)), Level: level, warn: warn}
}

func encoder(format string) zapcore.Encoder {
	cfg := zap.NewProductionEncoderConfig()
	cfg.TimeKey = "ts"
	cfg.EncodeTime = zapcore.ISO8601TimeEncoder
	if format == "console" {
		cfg.EncodeLevel = zapcore.CapitalColorLevelEncoder
		cfg.EncodeTime = zapcore.TimeEncoderOfLayout("15:04:05.000")
		return zapcore.NewConsoleEncoder(cfg)
	}
	return zapcore.NewJSONEncoder(cfg)
}

// Run writes the suppression counts of WARN messages whose interval ended,
// every second, until ctx ends; then it writes what is left.
func (l *Logging) Run(ctx context.Context) error {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			l.warn.flush(true)
			_ = l.Logger.Sync()
			return nil
		case <-t.C:
			l.warn.flush(false)
		}
	}
}

// Apply changes the live parts of the policy: the level and the WARN limits.
func (l *Logging) Apply(cfg config.Log) {
	_ = l.Level.UnmarshalText([]byte(cfg.Level))
	l.warn.mu.Lock()
	l.warn.burst, l.warn.interval = cfg.WarnBurst, cfg.WarnInterval
	l.warn.mu.Unlock()
}

// onlyLevel passes entries of one level only.
type onlyLevel struct {
	zapcore.Core
	level zapcore.Level
}

func (o onlyLevel) Enabled(l zapcore.Level) bool { return l == o.level && o.Core.Enabled(l) }

func (o onlyLevel) With(f []zapcore.Field) zapcore.Core { return onlyLevel{o.Core.With(f), o.level} }

func (o onlyLevel) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if e.Level != o.level {
		return ce
	}
	return o.Core.Check(e, ce)
}

// excludeLevels passes every entry but those of the given levels.
type excludeLevels struct {
	zapcore.Core
	a, b zapcore.Level
}

func (x excludeLevels) Enabled(l zapcore.Level) bool {
	return l != x.a && l != x.b && x.Core.Enabled(l)
}

func (x excludeLevels) With(f []zapcore.Field) zapcore.Core {
	return excludeLevels{x.Core.With(f), x.a, x.b}
}

func (x excludeLevels) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if e.Level == x.a || e.Level == x.b {
		return ce
	}
	return x.Core.Check(e, ce)
}

// warnLimiter limits WARN entries per message. Its state is shared by the
// cores derived from it with With, so a message is limited whatever its
// fields.
type warnLimiter struct {
	zapcore.Core
	shared   *warnLimiter // the root, which owns the state; nil for the root
	now      func() time.Time
	mu       sync.Mutex
	burst    int
	interval time.Duration
	state    map[string]*warnState
}

type warnState struct {
	start      time.Time
	count      int
	suppressed int
	last       zapcore.Entry
	core       zapcore.Core // of the last suppressed entry, with its logger's fields
}

func (w *warnLimiter) root() *warnLimiter {
	if w.shared != nil {
		return w.shared
	}
	return w
}

func (w *warnLimiter) With(f []zapcore.Field) zapcore.Core {
	return &warnLimiter{Core: w.Core.With(f), shared: w.root()}
}

// maxTracked bounds the messages tracked; messages are constant strings in
// Levee, so this is only a guard.
const maxTracked = 4096

func (w *warnLimiter) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if !w.Enabled(e.Level) {
		return ce
	}
	r := w.root()
	r.mu.Lock()
	st, ok := r.state[e.Message]
	now := r.now()
	if !ok {
		if len(r.state) >= maxTracked {
			r.mu.Unlock()
			return w.Core.Check(e, ce)
		}
		st = &warnState{start: now}
		r.state[e.Message] = st
	}
	var report *warnState
	if now.Sub(st.start) >= r.interval {
		if st.suppressed > 0 {
			cp := *st
			report = &cp
		}
		st.start, st.count, st.suppressed = now, 0, 0
	}
	allow := st.count < r.burst
	if allow {
		st.count++
	} else {
		st.suppressed++
		st.last, st.core = e, w.Core
	}
	r.mu.Unlock()
	if report != nil {
		r.writeSuppressed(report)
	}
	if !allow {
		return ce
	}
	return w.Core.Check(e, ce)
}

// flush writes the suppression count of every message whose interval has
// ended (all of them with force).
func (w *warnLimiter) flush(force bool) {
	var reports []warnState
	w.mu.Lock()
	now := w.now()
	for msg, st := range w.state {
		if st.suppressed > 0 && (force || now.Sub(st.start) >= w.interval) {
			reports = append(reports, *st)
			st.suppressed = 0
		}
		if st.suppressed == 0 && now.Sub(st.start) >= w.interval {
			delete(w.state, msg)
		}
	}
	w.mu.Unlock()
	for i := range reports {
		w.writeSuppressed(&reports[i])
	}
}

// writeSuppressed writes one line: the message, and how many times it was
// suppressed since its interval began.
func (w *warnLimiter) writeSuppressed(st *warnState) {
	e := st.last
	e.Time = w.root().now()
	_ = st.core.Write(e, []zapcore.Field{
		zap.Int("suppressed", st.suppressed),
		zap.Duration("suppressed_over", e.Time.Sub(st.start)),
	})
}
