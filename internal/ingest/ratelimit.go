package ingest

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// keyLimits holds one token bucket per API key name. A bucket outlives
// reloads while its name stays configured, so that rotating one key or
// changing an unrelated setting does not hand every key a fresh burst; the
// buckets of names no longer configured are dropped, so the map never holds
// more than the configured names.
type keyLimits struct {
	mu      sync.Mutex
	buckets map[string]*rate.Limiter // nil when there is no limit
}

// apply sets the limit of every name: perSecond requests per second with
// bursts of burst; perSecond 0 removes the limit.
func (l *keyLimits) apply(names []string, perSecond float64, burst int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if perSecond <= 0 {
		l.buckets = nil
		return
	}
	now, limit := time.Now(), rate.Limit(perSecond)
	keep := make(map[string]*rate.Limiter, len(names))
	for _, n := range names {
		b, ok := l.buckets[n]
		switch {
		case !ok:
			b = rate.NewLimiter(limit, burst)
		case b.Limit() != limit || b.Burst() != burst:
			b.SetLimitAt(now, limit)
			b.SetBurstAt(now, burst)
		}
		keep[n] = b
	}
	l.buckets = keep
}

// allow takes a token from name's bucket. When there is none, it returns
// false and how long until there is one; the bucket is left as it was.
func (l *keyLimits) allow(name string, now time.Time) (time.Duration, bool) {
	l.mu.Lock()
	b := l.buckets[name]
	l.mu.Unlock()
	if b == nil {
		return 0, true
	}
	r := b.ReserveN(now, 1)
	if !r.OK() {
		return time.Second, false
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return d, false
	}
	return 0, true
}

// retryAfter rounds a wait up to whole seconds, at least one: a client that
// waits as long as Retry-After says finds a token.
func retryAfter(wait time.Duration) time.Duration {
	return max((wait+time.Second-1)/time.Second, 1) * time.Second
}
