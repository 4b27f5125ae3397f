// Package batch collects items into batches that flush on a row count, a
// byte size or a linger time, whichever comes first.
package batch

import (
	"context"
	"sync"
	"time"
)

// Reason says which trigger flushed a batch; it labels the flush metric.
type Reason string

// Flush reasons.
const (
	ReasonRows     Reason = "rows"
	ReasonBytes    Reason = "bytes"
	ReasonLinger   Reason = "linger"
	ReasonShutdown Reason = "shutdown"
)

// Reasons lists every flush reason, for metrics that pre-declare labels.
var Reasons = []Reason{ReasonRows, ReasonBytes, ReasonLinger, ReasonShutdown}

// Limits are a batch's flush triggers.
type Limits struct {
	MaxRows  int           // flush at this many items (≥ 1)
	MaxBytes int           // flush at this many bytes (≥ 1)
	Linger   time.Duration // flush this long after the first item (0 = at once)
}

// Policy is a batch being formed. It is a plain value with no goroutine and
// no lock: the caller drives it and serialises access.
type Policy[T any] struct {
	lim   Limits
	items []T
	bytes int
	first time.Time
}

// NewPolicy returns an empty batch with the given limits.
func NewPolicy[T any](lim Limits) Policy[T] { return Policy[T]{lim: lim} }

// SetLimits changes the triggers; they apply from the next call on.
func (p *Policy[T]) SetLimits(lim Limits) { p.lim = lim }

// Limits returns the triggers in force.
func (p *Policy[T]) Limits() Limits { return p.lim }

// Len returns the number of items in the batch.
func (p *Policy[T]) Len() int { return len(p.items) }

// Add appends an item of the given size, received at now, and returns the
// trigger it fired, or "" if the batch is not full.
func (p *Policy[T]) Add(item T, size int, now time.Time) Reason {
	if len(p.items) == 0 {
		p.first = now
	}
	p.items = append(p.items, item)
	p.bytes += size
	return p.Full()
}

// Full returns the row or byte trigger the batch has reached, or "".
func (p *Policy[T]) Full() Reason {
	switch {
	case len(p.items) >= p.lim.MaxRows:
		return ReasonRows
	case p.bytes >= p.lim.MaxBytes:
		return ReasonBytes
	}
	return ""
}

// UntilNext returns how long until the linger trigger fires: 0 when it is
// due, and -1 when the batch is empty (nothing to wait for).
func (p *Policy[T]) UntilNext(now time.Time) time.Duration {
	if len(p.items) == 0 {
		return -1
	}
	return max(p.first.Add(p.lim.Linger).Sub(now), 0)
}

// Take returns the batch's items and size and leaves the batch empty.
func (p *Policy[T]) Take() ([]T, int) {
	items, bytes := p.items, p.bytes
	p.items, p.bytes = nil, 0
	return items, bytes
}

// Batch is a flushed batch.
type Batch[T any] struct {
	Items  []T
	Bytes  int
	Reason Reason
}

// Clock is the time source of a Batcher; tests use a fake one.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Batcher drives a Policy for concurrent producers: Add flushes a batch
// that reached its row or byte trigger, and Run flushes on linger.
//
// Flushed batches go to an unbuffered channel. When the consumer of Batches
// is busy, a flush waits: producers block in Add, which is how a slow sink
// pushes back on whoever feeds the batcher. Nothing is dropped.
type Batcher[T any] struct {
	clock Clock
	out   chan Batch[T]
	kick  chan struct{} // wakes Run when the batch or the limits change

	mu sync.Mutex
	p  Policy[T]
}

// New returns a batcher; a nil clock means the real one.
func New[T any](lim Limits, clock Clock) *Batcher[T] {
	if clock == nil {
		clock = realClock{}
	}
	return &Batcher[T]{clock: clock, out: make(chan Batch[T]), kick: make(chan struct{}, 1), p: NewPolicy[T](lim)}
}

// Batches returns the channel of flushed batches. It is closed when Run returns.
func (b *Batcher[T]) Batches() <-chan Batch[T] { return b.out }

// SetLimits changes the triggers live.
func (b *Batcher[T]) SetLimits(lim Limits) {
	b.mu.Lock()
	b.p.SetLimits(lim)
	b.mu.Unlock()
	b.wake()
}

// Add appends an item. If that fills the batch, Add hands it over and waits
// until it is taken or ctx ends; the items are never lost: on ctx end Add
// puts them back so that the final flush still carries them.
func (b *Batcher[T]) Add(ctx context.Context, item T, size int) error {
	b.mu.Lock()
	wasEmpty := b.p.Len() == 0
	reason := b.p.Add(item, size, b.clock.Now())
	var full Batch[T]
	if reason != "" {
		full.Items, full.Bytes = b.p.Take()
		full.Reason = reason
	}
	b.mu.Unlock()
	if wasEmpty && reason == "" {
		b.wake()
	}
	if reason == "" {
		return nil
	}
	select {
	case b.out <- full:
		return nil
	case <-ctx.Done():
		b.putBack(full)
		return ctx.Err()
	}
}

// putBack returns a batch that could not be handed over to the front of
// the forming batch.
func (b *Batcher[T]) putBack(full Batch[T]) {
	b.mu.Lock()
	if len(b.p.items) == 0 {
		b.p.first = b.clock.Now()
	}
	b.p.items = append(full.Items, b.p.items...)
	b.p.bytes += full.Bytes
	b.mu.Unlock()
	b.wake() // Run must arm the linger timer for the restored items
}

func (b *Batcher[T]) wake() {
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

// Run flushes batches on linger until ctx ends, then flushes what is left
// with reason shutdown and closes Batches. Cancel ctx only once no producer
// calls Add any more, and keep consuming Batches until it is closed.
func (b *Batcher[T]) Run(ctx context.Context) error {
	defer close(b.out)
	for {
		if ctx.Err() != nil {
			b.mu.Lock()
			items, bytes := b.p.Take()
			b.mu.Unlock()
			if len(items) > 0 {
				b.out <- Batch[T]{Items: items, Bytes: bytes, Reason: ReasonShutdown}
			}
			return nil
		}
		b.mu.Lock()
		wait := b.p.UntilNext(b.clock.Now())
		var due Batch[T]
		if wait == 0 {
			due.Items, due.Bytes = b.p.Take()
			due.Reason = ReasonLinger
		}
		b.mu.Unlock()
		if due.Items != nil {
			select {
			case b.out <- due:
			case <-ctx.Done():
				b.putBack(due)
			}
			continue
		}
		var timer <-chan time.Time
		if wait > 0 {
			timer = b.clock.After(wait)
		}
		select {
		case <-ctx.Done():
		case <-b.kick:
		case <-timer:
		}
	}
}
