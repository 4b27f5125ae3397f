package ingest

import (
	"context"
	"sync"

	"github.com/levee-dev/levee/internal/event"
)

// WriteCloser is a sink the synchronous path writes to.
type WriteCloser interface {
	Writer
	Close() error
}

// LazyWriter opens its sink on first use, so that ingest connects to the
// database only once the synchronous path is switched on. A failed open is
// retried by the next request.
type LazyWriter struct {
	open func(ctx context.Context) (WriteCloser, error)
	mu   sync.Mutex
	w    WriteCloser
}

// NewLazyWriter returns a writer that calls open when first needed.
func NewLazyWriter(open func(ctx context.Context) (WriteCloser, error)) *LazyWriter {
	return &LazyWriter{open: open}
}

// Write opens the sink if needed and writes evs to it.
func (l *LazyWriter) Write(ctx context.Context, evs []event.Event) (int, error) {
	w, err := l.get(ctx)
	if err != nil {
		return 0, err
	}
	return w.Write(ctx, evs)
}

func (l *LazyWriter) get(ctx context.Context) (WriteCloser, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.w == nil {
		w, err := l.open(ctx)
		if err != nil {
			return nil, err
		}
		l.w = w
	}
	return l.w, nil
}

// Close closes the sink if it was opened.
func (l *LazyWriter) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.w == nil {
		return nil
	}
	err := l.w.Close()
	l.w = nil
	return err
}
