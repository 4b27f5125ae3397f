package queue

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/levee-dev/levee/internal/config"
	"github.com/levee-dev/levee/internal/event"
)

// Errors of Publish.
var (
	ErrClosed = errors.New("queue: publisher closed")
	ErrBusy   = errors.New("queue: too many events awaiting acknowledgement")
)

// PublisherSettings are the live-tunable parameters of a Publisher.
type PublisherSettings struct {
	Packing           bool
	PackMaxEvents     int
	PackMaxBytes      int
	Linger            time.Duration
	MaxInflightEvents int
	MaxInflightBytes  int64
	// FailFast makes a publish that meets no responders (no stream leader,
	// during an election) fail at once instead of being retried twice
	// 250 ms apart: with the degraded path on, the spool takes the events
	// at once.
	FailFast bool
}

// failFast is the publish option of PublisherSettings.FailFast.
var failFast = []jetstream.PublishOpt{jetstream.WithRetryAttempts(0)}

// SettingsFrom extracts the publisher settings from a configuration.
func SettingsFrom(cfg *config.Config) PublisherSettings {
	return PublisherSettings{
		Packing:           cfg.Optimization.Packing,
		PackMaxEvents:     cfg.Queue.Pack.MaxEvents,
		PackMaxBytes:      cfg.Queue.Pack.MaxBytes,
		Linger:            cfg.Queue.Pack.Linger,
		MaxInflightEvents: cfg.Queue.MaxInflightEvents,
		MaxInflightBytes:  cfg.Queue.MaxInflightBytes,
		FailFast:          cfg.Optimization.Degrade,
	}
}

// Publisher publishes events to JetStream asynchronously: many requests and
// many events share the connection, and each caller waits only for the
// PubAcks of its own events.
//
// With packing on, events are coalesced into packs by lanes. Each lane keeps
// one publish in flight; the events that arrive meanwhile fill the next pack,
// which leaves as soon as the previous publish returns (smart batching). A
// lone request is thus never delayed, and a crowd fills packs by itself.
//
// Every event accepted by Publish counts against a budget of events and bytes
// awaiting acknowledgement until its PubAck (or error) arrives. When the
// budget is full, Publish waits for room until its context ends and then
// returns ErrBusy. This bound sits in front of the client's own async-publish
// limit, which concurrent publishers can overshoot.
type Publisher struct {
	js     jetstream.JetStream
	prefix string
	log    *zap.Logger
	m      *publisherMetrics

	settings atomic.Pointer[PublisherSettings]
	budget   *budget
	lanes    []*lane
	next     atomic.Uint32

	closed  atomic.Bool
	pending sync.WaitGroup // publishes not yet resolved
}

// NewPublisher returns a publisher on js for the stream subjects under prefix.
func NewPublisher(js jetstream.JetStream, prefix string, lanes int, s PublisherSettings, log *zap.Logger, reg prometheus.Registerer) (*Publisher, error) {
	m, err := newPublisherMetrics(reg)
	if err != nil {
		return nil, err
	}
	p := &Publisher{
		js: js, prefix: prefix, log: log.With(zap.String("component", "publisher")), m: m,
		budget: newBudget(int64(s.MaxInflightEvents), s.MaxInflightBytes),
	}
	p.settings.Store(&s)
	for range max(lanes, 1) {
		p.lanes = append(p.lanes, &lane{p: p})
	}
	return p, nil
}

// Apply changes the live settings; packs already formed keep their size.
func (p *Publisher) Apply(s PublisherSettings) {
	p.settings.Store(&s)
	p.budget.setLimits(int64(s.MaxInflightEvents), s.MaxInflightBytes)
}

// Ready reports whether the connection to NATS is up: when it is not, a
// publish would only wait for its ack timeout.
func (p *Publisher) Ready() bool { return p.js.Conn().Status() == nats.CONNECTED }

// Inflight returns the number of events awaiting acknowledgement.
func (p *Publisher) Inflight() int64 { return p.budget.inUse() }

// Publish stores evs in the stream and returns once every one of them has
// been acknowledged, or with the first error. When it returns an error some
// events may still have been stored; publishing them again is safe, since
// message ids and the sink's idempotency remove duplicates.
func (p *Publisher) Publish(ctx context.Context, evs []event.Event) error {
	if p.closed.Load() {
		return ErrClosed
	}
	var size int64
	for i := range evs {
		size += int64(evs[i].Size())
	}
	if err := p.budget.acquire(ctx, int64(len(evs)), size); err != nil {
		p.m.errors.WithLabelValues("busy").Inc()
		return fmt.Errorf("%w: %w", ErrBusy, err)
	}
	p.m.inflight.Add(float64(len(evs)))
	t := &ticket{done: make(chan struct{}), release: func() {
		p.budget.release(int64(len(evs)), size)
		p.m.inflight.Sub(float64(len(evs)))
	}}
	s := p.settings.Load()
	if s.Packing {
		p.lanes[p.next.Add(1)%uint32(len(p.lanes))].enqueue(evs, t, s)
	} else {
		p.publishEach(evs, t)
	}
	select {
	case <-t.done:
		return t.err
	case <-ctx.Done():
		return fmt.Errorf("queue: publish: %w", ctx.Err())
	}
}

// publishEach sends every event as its own message, Nats-Msg-Id = event id.
func (p *Publisher) publishEach(evs []event.Event, t *ticket) {
	t.parts.Store(int32(len(evs)))
	for i := range evs {
		e := &evs[i]
		msg := &nats.Msg{
			Subject: EventSubject(p.prefix, e.Type),
			Data:    e.AppendJSON(make([]byte, 0, e.Size()+96)),
			Header: nats.Header{
				jetstream.MsgIDHeader: []string{e.ID},
				HeaderFormat:          []string{FormatJSON},
			},
		}
		p.send(msg, FormatJSON, func(err error) { t.resolve(err) })
	}
}

// send publishes msg asynchronously and calls done with the outcome exactly once.
func (p *Publisher) send(msg *nats.Msg, format string, done func(error)) {
	p.pending.Add(1)
	start := time.Now()
	finish := func(err error) {
		p.m.observe(format, time.Since(start), err)
		if err != nil {
			p.m.errors.WithLabelValues(errorReason(err)).Inc()
		}
		done(err)
		p.pending.Done()
	}
	var opts []jetstream.PublishOpt
	if p.settings.Load().FailFast {
		opts = failFast
	}
	fut, err := p.js.PublishMsgAsync(msg, opts...)
	if err != nil {
		finish(fmt.Errorf("queue: publish: %w", err))
		return
	}
	go func() {
		select {
		case <-fut.Ok():
			finish(nil)
		case err := <-fut.Err():
			finish(fmt.Errorf("queue: publish: %w", err))
		}
	}()
}

// Close stops accepting events and waits, until ctx ends, for every publish
// already started to be acknowledged or to fail.
func (p *Publisher) Close(ctx context.Context) error {
	p.closed.Store(true)
	done := make(chan struct{})
	go func() { p.pending.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("queue: close publisher: %w", ctx.Err())
	}
}

// JetStream API error codes of a stream that refuses new messages: a store
// failure such as "maximum bytes exceeded" under DiscardNew, or a server out
// of resources.
const (
	errCodeStoreFailed           jetstream.ErrorCode = 10077
	errCodeInsufficientResources jetstream.ErrorCode = 10023
)

// IsFull reports whether err says the stream refused a message for lack of
// room: backpressure, not a fault.
func IsFull(err error) bool { return errorReason(err) == "full" }

// IsOverload reports whether err is a sign that JetStream is not keeping up
// (a PubAck timeout, a stalled publisher, a full stream, no responders).
func IsOverload(err error) bool {
	switch errorReason(err) {
	case "timeout", "stalled", "full", "no_responders":
		return true
	}
	return false
}

// errorReason classifies a publish error for the errors metric.
func errorReason(err error) string {
	var apiErr *jetstream.APIError
	switch {
	case errors.Is(err, jetstream.ErrAsyncPublishTimeout):
		return "timeout"
	case errors.Is(err, jetstream.ErrTooManyStalledMsgs):
		return "stalled"
	case errors.Is(err, nats.ErrNoResponders), errors.Is(err, jetstream.ErrNoStreamResponse):
		return "no_responders"
	case errors.As(err, &apiErr) && (apiErr.ErrorCode == errCodeStoreFailed || apiErr.ErrorCode == errCodeInsufficientResources):
		return "full"
	case errors.Is(err, nats.ErrConnectionClosed), errors.Is(err, nats.ErrDisconnected), errors.Is(err, nats.ErrConnectionReconnecting):
		return "disconnected"
	default:
		return "other"
	}
}

// ticket is one Publish call waiting for the messages holding its events.
type ticket struct {
	parts   atomic.Int32 // messages holding its events, not yet resolved
	mu      sync.Mutex
	err     error
	done    chan struct{}
	release func()
}

func (t *ticket) resolve(err error) {
	if err != nil {
		t.mu.Lock()
		if t.err == nil {
			t.err = err
		}
		t.mu.Unlock()
	}
	if t.parts.Add(-1) == 0 {
		t.release()
		close(t.done)
	}
}

// lane forms packs and keeps one of them in flight at a time.
type lane struct {
	p *Publisher

	mu       sync.Mutex
	forming  *pack   // pack accepting events
	ready    []*pack // full packs waiting for their turn
	inflight int
	timer    *time.Timer // linger timer, when armed
}

// pack is a pack being formed and the tickets waiting for it.
type pack struct {
	w       PackWriter
	tickets []*ticket
}

// enqueue adds the events of t to the lane's packs and sends a pack at once
// if the lane has no publish in flight.
func (l *lane) enqueue(evs []event.Event, t *ticket, s *PublisherSettings) {
	l.mu.Lock()
	for i := range evs {
		e := &evs[i]
		size := RecordSize(e)
		if f := l.forming; f != nil && (f.w.Len() >= s.PackMaxEvents || f.w.Size()+size > s.PackMaxBytes) {
			l.ready = append(l.ready, f)
			l.forming = nil
		}
		if l.forming == nil {
			l.forming = &pack{}
		}
		f := l.forming
		f.w.Add(e)
		if n := len(f.tickets); n == 0 || f.tickets[n-1] != t {
			f.tickets = append(f.tickets, t)
			t.parts.Add(1)
		}
	}
	var send *pack
	if l.inflight == 0 {
		send = l.take()
	} else if s.Linger > 0 && l.timer == nil {
		l.timer = time.AfterFunc(s.Linger, l.linger)
	}
	l.mu.Unlock()
	l.send(send)
}

// take removes the next pack to send and counts it in flight. Called with mu held.
func (l *lane) take() *pack {
	var pk *pack
	if len(l.ready) > 0 {
		pk = l.ready[0]
		l.ready[0] = nil
		l.ready = l.ready[1:]
	} else if l.forming != nil {
		pk, l.forming = l.forming, nil
	}
	if pk != nil {
		l.inflight++
	}
	return pk
}

// linger sends a pack that waited queue.pack.linger behind an in-flight
// publish, so that one slow acknowledgement does not hold back the next pack.
func (l *lane) linger() {
	l.mu.Lock()
	l.timer = nil
	send := l.take()
	if send != nil && (len(l.ready) > 0 || l.forming != nil) {
		l.timer = time.AfterFunc(l.p.settings.Load().Linger, l.linger)
	}
	l.mu.Unlock()
	l.send(send)
}

func (l *lane) send(pk *pack) {
	if pk == nil {
		return
	}
	data, id := pk.w.Finish()
	n := pk.w.Len()
	l.p.m.packEvents.Observe(float64(n))
	msg := &nats.Msg{
		Subject: PackSubject(l.p.prefix),
		Data:    data,
		Header: nats.Header{
			jetstream.MsgIDHeader: []string{id},
			HeaderFormat:          []string{FormatPack},
			HeaderEvents:          []string{strconv.Itoa(n)},
		},
	}
	l.p.send(msg, FormatPack, func(err error) { l.done(pk, err) })
}

// done resolves the tickets of an acknowledged (or failed) pack and sends
// the next one. After a failure, the packs queued behind it fail at once
// with the same error instead of waiting their turn to time out as well.
func (l *lane) done(pk *pack, err error) {
	l.mu.Lock()
	l.inflight--
	var failed []*pack
	if err != nil {
		failed = l.ready
		l.ready = nil
	}
	var next *pack
	if l.inflight == 0 {
		next = l.take()
	}
	l.mu.Unlock()
	for _, t := range pk.tickets {
		t.resolve(err)
	}
	for _, f := range failed {
		for _, t := range f.tickets {
			t.resolve(err)
		}
	}
	l.send(next)
}

// budget bounds the events and bytes awaiting acknowledgement. One request
// larger than the whole budget is admitted when nothing else is in flight,
// so that it cannot wait forever.
type budget struct {
	mu                  sync.Mutex
	events, bytes       int64
	maxEvents, maxBytes int64
	changed             chan struct{} // closed and replaced on every release
}

func newBudget(maxEvents, maxBytes int64) *budget {
	return &budget{maxEvents: maxEvents, maxBytes: maxBytes, changed: make(chan struct{})}
}

func (b *budget) acquire(ctx context.Context, n, size int64) error {
	for {
		b.mu.Lock()
		if b.events == 0 || (b.events+n <= b.maxEvents && b.bytes+size <= b.maxBytes) {
			b.events += n
			b.bytes += size
			b.mu.Unlock()
			return nil
		}
		ch := b.changed
		b.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (b *budget) release(n, size int64) {
	b.mu.Lock()
	b.events -= n
	b.bytes -= size
	close(b.changed)
	b.changed = make(chan struct{})
	b.mu.Unlock()
}

func (b *budget) setLimits(maxEvents, maxBytes int64) {
	b.mu.Lock()
	b.maxEvents, b.maxBytes = maxEvents, maxBytes
	close(b.changed)
	b.changed = make(chan struct{})
	b.mu.Unlock()
}

func (b *budget) inUse() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.events
}

type publisherMetrics struct {
	inflight   prometheus.Gauge
	messages   *prometheus.CounterVec
	ackSeconds prometheus.Histogram
	packEvents prometheus.Histogram
	errors     *prometheus.CounterVec
}

func newPublisherMetrics(reg prometheus.Registerer) (*publisherMetrics, error) {
	m := &publisherMetrics{
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "levee_publish_inflight_events",
			Help: "Events handed to JetStream and not yet acknowledged.",
		}),
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "levee_publish_messages_total",
			Help: "JetStream messages published, by format (pack, json) and result (ok, error).",
		}, []string{"format", "result"}),
		ackSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "levee_publish_ack_duration_seconds",
			Help:    "Time from publishing a message to its PubAck.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}),
		packEvents: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "levee_publish_pack_events",
			Help:    "Events per published pack.",
			Buckets: []float64{1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000},
		}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "levee_publish_errors_total",
			Help: "Publish failures by reason (timeout, stalled, no_responders, full, disconnected, busy, other).",
		}, []string{"reason"}),
	}
	for _, c := range []prometheus.Collector{m.inflight, m.messages, m.ackSeconds, m.packEvents, m.errors} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("queue: register metrics: %w", err)
		}
	}
	for _, r := range []string{"timeout", "stalled", "no_responders", "full", "disconnected", "busy", "other"} {
		m.errors.WithLabelValues(r)
	}
	for _, f := range []string{FormatPack, FormatJSON} {
		for _, r := range []string{"ok", "error"} {
			m.messages.WithLabelValues(formatLabel(f), r)
		}
	}
	return m, nil
}

func formatLabel(format string) string {
	if format == FormatPack {
		return "pack"
	}
	return "json"
}

func (m *publisherMetrics) observe(format string, d time.Duration, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	} else {
		m.ackSeconds.Observe(d.Seconds())
	}
	m.messages.WithLabelValues(formatLabel(format), result).Inc()
}
