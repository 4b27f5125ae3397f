package config

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"reflect"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/knadh/koanf/v2"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// liveKeys are the keys (or key prefixes ending in ".") applied by hot
// reload; a change to any other key is logged and waits for a restart.
// configs/levee.yaml marks the same keys with [live].
var liveKeys = []string{
	"optimization.",
	"ingest.max_body_bytes", "ingest.max_events_per_request", "ingest.max_event_bytes",
	"ingest.max_depth", "ingest.publish_timeout", "ingest.auth.api_keys",
	"ingest.auth.rate_limit", "ingest.auth.rate_burst",
	"queue.max_inflight_events", "queue.max_inflight_bytes",
	"queue.pack.max_events", "queue.pack.max_bytes", "queue.pack.linger",
	"worker.pool_size", "worker.max_inflight_batches", "worker.fetch_max",
	"worker.max_deliver", "worker.nak_delay",
	"batch.",
	"backpressure.",
	"degrade.force", "degrade.normal_after", "degrade.critical_above", "degrade.critical_below",
	"degrade.retry_after", "degrade.replay.", "degrade.breaker.",
	"log.level",
}

// IsLive reports whether a change to key is applied without a restart.
func IsLive(key string) bool {
	for _, l := range liveKeys {
		if key == l || (strings.HasSuffix(l, ".") && strings.HasPrefix(key, l)) {
			return true
		}
	}
	return false
}

// secretKey reports whether the value of key must never be logged. A URL
// may carry credentials (nats://user:password@host).
func secretKey(key string) bool {
	for _, s := range []string{"password", "token", "dsn", "api_keys", "seed", "creds", "url"} {
		if strings.Contains(key, s) {
			return true
		}
	}
	return false
}

// Watcher polls the config file and hands every valid new configuration to
// its subscribers. An invalid file is logged and counted; the previous
// configuration stays in force. Polling (rather than file-system events)
// also sees files replaced by an atomic rename or a symlink swap.
type Watcher struct {
	src     Source
	file    string
	log     *zap.Logger
	reloads *prometheus.CounterVec
	valid   prometheus.Gauge

	cur atomic.Pointer[Config]

	mu      sync.Mutex // guards the fields below and serialises Check
	subs    []func(*Config)
	k       *koanf.Koanf
	content []byte
}

// NewWatcher returns a watcher for src whose current configuration is cfg,
// the result of Load(src). Reload results are counted on reg as
// levee_config_reloads_total{result}.
func NewWatcher(src Source, cfg *Config, log *zap.Logger, reg prometheus.Registerer) (*Watcher, error) {
	k, err := load(src)
	if err != nil {
		return nil, err
	}
	file := src.File
	if file == "" {
		if _, err := os.Stat(DefaultFile); err == nil {
			file = DefaultFile
		}
	}
	w := &Watcher{
		src: src, file: file, log: log.With(zap.String("component", "config")), k: k,
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "levee_config_reloads_total",
			Help: "Config file reloads by result (ok, error, unchanged keys needing a restart count as ok).",
		}, []string{"result"}),
	}
	w.valid = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "levee_config_file_valid",
		Help: "1 while the config file on disk is valid; 0 after a rejected reload, until it is fixed (the running config stays in force).",
	})
	for _, c := range []prometheus.Collector{w.reloads, w.valid} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("config: register metrics: %w", err)
		}
	}
	w.valid.Set(1)
	w.reloads.WithLabelValues("ok")
	w.reloads.WithLabelValues("error")
	if file != "" {
		w.content, _ = os.ReadFile(file)
	}
	w.cur.Store(cfg)
	return w, nil
}

// Current returns the configuration in force.
func (w *Watcher) Current() *Config { return w.cur.Load() }

// Subscribe registers fn to be called with each new configuration. Call it
// before Run; fn runs on the watcher's goroutine and must not block for long.
func (w *Watcher) Subscribe(fn func(*Config)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.subs = append(w.subs, fn)
}

// Run polls the file every interval until ctx ends. With no file or a zero
// interval it only waits for ctx.
func (w *Watcher) Run(ctx context.Context, interval time.Duration) error {
	if w.file == "" || interval <= 0 {
		<-ctx.Done()
		return nil
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	last := ""
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			_, err := w.Check()
			if err != nil && err.Error() != last {
				w.log.Error("config reload rejected; previous configuration stays in force", zap.Error(err))
			}
			last = ""
			if err != nil {
				last = err.Error() // the same failure is logged once, not at every poll
			}
		}
	}
}

// Check reads the file once and applies it if it changed. It reports whether
// a new configuration was applied.
func (w *Watcher) Check() (bool, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	b, err := os.ReadFile(w.file)
	if err != nil {
		w.reloads.WithLabelValues("error").Inc()
		w.valid.Set(0)
		return false, fmt.Errorf("config: reload: %w", err)
	}
	if bytes.Equal(b, w.content) {
		return false, nil
	}
	w.content = b
	k, err := load(w.src)
	if err == nil {
		// The file must be valid as written, restart-only keys included,
		// or the next restart would fail on it.
		_, err = decode(k)
	}
	if err != nil {
		w.reloads.WithLabelValues("error").Inc()
		w.valid.Set(0)
		return false, err
	}
	w.valid.Set(1)
	changed := w.keepRestartOnly(k)
	cfg, err := decode(k)
	if err != nil {
		w.reloads.WithLabelValues("error").Inc()
		return false, err
	}
	w.reloads.WithLabelValues("ok").Inc()
	w.k = k
	if len(changed) == 0 {
		return false, nil
	}
	w.cur.Store(cfg)
	w.log.Info("config reloaded", zap.Strings("changed", changed))
	for _, fn := range w.subs {
		fn(cfg)
	}
	return true, nil
}

// keepRestartOnly resets in k every changed key that needs a restart to its
// value in force, logging each once, and returns the live keys that changed.
func (w *Watcher) keepRestartOnly(k *koanf.Koanf) []string {
	keys := union(w.k.Keys(), k.Keys())
	var live []string
	for _, key := range keys {
		old, neu := w.k.Get(key), k.Get(key)
		if reflect.DeepEqual(old, neu) {
			continue
		}
		if IsLive(key) {
			live = append(live, key)
			continue
		}
		fields := []zap.Field{zap.String("key", key)}
		if !secretKey(key) {
			fields = append(fields, zap.Any("running", old), zap.Any("file", neu))
		}
		w.log.Warn("config key changed but needs a restart; keeping the running value", fields...)
		_ = k.Set(key, old)
	}
	return live
}

func union(a, b []string) []string {
	set := map[string]struct{}{}
	for _, s := range a {
		set[s] = struct{}{}
	}
	for _, s := range b {
		set[s] = struct{}{}
	}
	out := make([]string, 0, len(set))
	for s := range set {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}
