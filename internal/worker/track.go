package worker

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// tracker holds the deliveries fetched and not yet settled, so that those
// waiting long (in a forming batch, behind a slow write) are kept alive with
// InProgress before their AckWait runs out.
type tracker struct {
	mu  sync.Mutex
	set map[*delivery]struct{}
}

func (t *tracker) add(d *delivery) {
	d.touched.Store(time.Now().UnixNano())
	t.mu.Lock()
	if t.set == nil {
		t.set = make(map[*delivery]struct{})
	}
	t.set[d] = struct{}{}
	t.mu.Unlock()
}

func (t *tracker) remove(d *delivery) {
	t.mu.Lock()
	delete(t.set, d)
	t.mu.Unlock()
}

func (t *tracker) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.set)
}

// keepAlive sends InProgress for every delivery untouched for half of
// ackWait, checking every quarter of ackWait, until ctx ends.
func (t *tracker) keepAlive(ctx context.Context, ackWait time.Duration, sent prometheus.Counter) {
	tick := time.NewTicker(max(ackWait/4, 10*time.Millisecond))
	defer tick.Stop()
	var due []*delivery
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		limit := time.Now().Add(-ackWait / 2).UnixNano()
		due = due[:0]
		t.mu.Lock()
		for d := range t.set {
			if d.touched.Load() < limit {
				due = append(due, d)
			}
		}
		t.mu.Unlock()
		now := time.Now().UnixNano()
		for _, d := range due {
			if d.msg.InProgress() == nil {
				d.touched.Store(now)
				sent.Inc()
			}
		}
	}
}
