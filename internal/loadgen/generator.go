package loadgen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"
)

// Loop modes.
const (
	ModeClosed = "closed" // Clients goroutines, each sending its next request when the last is answered
	ModeOpen   = "open"   // requests at a fixed arrival rate, whatever the answers take
)

// Load describes the traffic of one run.
type Load struct {
	Target   string        `json:"target"`             // base URL of ingest
	Mode     string        `json:"mode"`               // ModeClosed or ModeOpen
	Clients  int           `json:"clients"`            // closed: concurrent clients; open: bound on requests in flight
	Rate     float64       `json:"rate,omitempty"`     // open: requests/s, when Phases is empty
	Phases   []Phase       `json:"phases,omitempty"`   // open: a rate profile instead of Rate for Duration
	Duration time.Duration `json:"duration"`           // closed, or open without Phases
	Events   int           `json:"events_per_request"` // 1 = single, more = bulk (JSON array)
	Size     int           `json:"event_bytes"`        // approximate encoded size of one event
	APIKey   string        `json:"-"`                  // sent as X-API-Key when set
	IDPrefix string        `json:"id_prefix"`          // every event is "<IDPrefix>-<n>"
	Timeout  time.Duration `json:"timeout"`            // per request; a timed-out request has an unknown outcome
}

// Phase is one stretch of an open-loop rate profile.
type Phase struct {
	Rate     float64       `json:"rate"` // requests/s
	Duration time.Duration `json:"duration"`
}

// phases returns the open-loop profile.
func (l Load) phases() []Phase {
	if len(l.Phases) > 0 {
		return l.Phases
	}
	return []Phase{{Rate: l.Rate, Duration: l.Duration}}
}

// Length returns how long the generator sends requests.
func (l Load) Length() time.Duration {
	if l.Mode != ModeOpen {
		return l.Duration
	}
	var d time.Duration
	for _, p := range l.phases() {
		d += p.Duration
	}
	return d
}

func (l Load) validate() error {
	switch {
	case l.Mode != ModeClosed && l.Mode != ModeOpen:
		return fmt.Errorf("loadgen: mode %q: want closed or open", l.Mode)
	case l.Clients < 1:
		return errors.New("loadgen: clients must be at least 1")
	case l.Events < 1:
		return errors.New("loadgen: events per request must be at least 1")
	case l.IDPrefix == "" || strings.ContainsAny(l.IDPrefix, `"\ `):
		return fmt.Errorf("loadgen: id prefix %q: want a non-empty id-safe string", l.IDPrefix)
	case l.Length() <= 0:
		return errors.New("loadgen: duration must be positive")
	case l.Mode == ModeOpen && len(l.Phases) == 0 && l.Rate <= 0:
		return errors.New("loadgen: open loop needs a positive rate")
	}
	return nil
}

// Generator sends the requests of one Load and records their outcomes.
// Every event has an explicit id, so the sink can be checked afterwards
// against Accepted (answered 202) and Unknown (timed out, transport error
// or 5xx: the events may or may not be stored).
type Generator struct {
	load     Load
	url      string
	client   *http.Client
	body     *bodyMaker
	next     atomic.Int64
	accepted *IDSet
	unknown  *IDSet
	log      *zap.Logger
}

// NewGenerator returns a generator for l. It opens no connection.
func NewGenerator(l Load, log *zap.Logger) (*Generator, error) {
	if err := l.validate(); err != nil {
		return nil, err
	}
	if l.Timeout <= 0 {
		l.Timeout = 30 * time.Second
	}
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        l.Clients,
		MaxIdleConnsPerHost: l.Clients, // every client keeps its connection alive
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	return &Generator{
		load:     l,
		url:      strings.TrimRight(l.Target, "/") + "/v1/events",
		client:   &http.Client{Transport: tr, Timeout: l.Timeout},
		body:     newBodyMaker(l.IDPrefix, l.Events, l.Size),
		accepted: &IDSet{},
		unknown:  &IDSet{},
		log:      log.With(zap.String("component", "generator")),
	}, nil
}

// Accepted returns the numbers of the events answered 202.
func (g *Generator) Accepted() *IDSet { return g.accepted }

// Unknown returns the numbers of the events whose request had no clear
// answer: a client-side timeout, a transport error or a 5xx.
func (g *Generator) Unknown() *IDSet { return g.unknown }

// Run sends the load and returns when every request sent has been answered
// (or has timed out). Cancelling ctx stops it early; requests then in flight
// are abandoned and counted as transport errors.
func (g *Generator) Run(ctx context.Context) (*Result, error) {
	defer g.client.CloseIdleConnections()
	g.log.Debug("start", zap.String("mode", g.load.Mode), zap.Int("clients", g.load.Clients),
		zap.Duration("length", g.load.Length()), zap.String("target", g.url))
	start := time.Now()
	rec := NewRecorder(start)
	if g.load.Mode == ModeOpen {
		g.openLoop(ctx, rec, start)
	} else {
		g.closedLoop(ctx, rec, start)
	}
	res := newResult(g.load, start, time.Since(start), rec.Tally(), g.accepted, g.unknown)
	if res.Completed == 0 && res.Dropped == 0 {
		return res, errNoRequests
	}
	return res, nil
}

// closedLoop runs Clients goroutines that each send back-to-back until the
// duration is over.
func (g *Generator) closedLoop(ctx context.Context, rec *Recorder, start time.Time) {
	deadline := start.Add(g.load.Duration)
	var wg sync.WaitGroup
	for range g.load.Clients {
		wg.Go(func() {
			for ctx.Err() == nil {
				now := time.Now()
				if !now.Before(deadline) {
					return
				}
				rec.Offered(now)
				g.post(ctx, rec, now)
			}
		})
	}
	wg.Wait()
}

// openLoop schedules each request at its intended time from the rate
// profile. A request due while all Clients slots are busy is not sent and
// counts as dropped by the generator; a request sent late (the scheduler
// fell behind) still has its latency measured from its intended time, so
// that a stalled server cannot hide its stall (coordinated omission).
func (g *Generator) openLoop(ctx context.Context, rec *Recorder, start time.Time) {
	slots := make(chan struct{}, g.load.Clients)
	var wg sync.WaitGroup
	defer wg.Wait()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	phaseStart := start
	for _, ph := range g.load.phases() {
		n := int64(ph.Rate * ph.Duration.Seconds())
		for i := range n {
			due := phaseStart.Add(time.Duration(float64(i) * float64(time.Second) / ph.Rate))
			if !sleepUntil(ctx, timer, due) {
				return
			}
			rec.Offered(due)
			select {
			case slots <- struct{}{}:
				wg.Go(func() {
					g.post(ctx, rec, due)
					<-slots
				})
			default:
				rec.Dropped(due)
			}
		}
		phaseStart = phaseStart.Add(ph.Duration)
	}
}

// sleepUntil waits until t, and reports false if ctx ended first.
func sleepUntil(ctx context.Context, timer *time.Timer, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer.Reset(d)
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// post sends one request of Events events and records its outcome.
func (g *Generator) post(ctx context.Context, rec *Recorder, intended time.Time) {
	n := int64(g.load.Events)
	first := g.next.Add(n) - n
	o := Outcome{Intended: intended, Events: g.load.Events}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, g.url, bytes.NewReader(g.body.build(first)))
	if err != nil {
		o.End, o.ErrClass = time.Now(), "request"
		rec.Done(o)
		return
	}
	req.Header.Set("Content-Type", "application/json")
	if g.load.APIKey != "" {
		req.Header.Set("X-API-Key", g.load.APIKey)
	}
	resp, err := g.client.Do(req)
	if err != nil {
		o.End, o.ErrClass = time.Now(), errClass(err)
		g.unknown.AddRange(first, n)
		rec.Done(o)
		return
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	o.End, o.Status = time.Now(), resp.StatusCode
	switch {
	case o.Status == http.StatusAccepted:
		g.accepted.AddRange(first, n)
		o.Path = pathOf(b)
	case o.Status >= 500:
		// A 503 may follow a publish that stored part of the events.
		g.unknown.AddRange(first, n)
	}
	rec.Done(o)
}

// pathOf returns the "path" of a 202 answer body.
func pathOf(b []byte) string {
	const key = `"path":"`
	i := bytes.Index(b, []byte(key))
	if i < 0 {
		return "unknown"
	}
	rest := b[i+len(key):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return "unknown"
	}
	return string(rest[:j])
}

// errClass names a transport error for the status counts.
func errClass(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		return "fd_limit"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return "no_ports"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "reset"
	}
	return "other"
}
