// Package ingest serves the HTTP ingest API: it authenticates, decodes and
// validates requests, and hands their events to the queue (or, with
// optimization.enabled off, writes them straight to the sink).
package ingest

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/levee-dev/levee/internal/backpressure"
	"github.com/levee-dev/levee/internal/config"
	"github.com/levee-dev/levee/internal/degrade"
	"github.com/levee-dev/levee/internal/event"
	"github.com/levee-dev/levee/internal/queue"
)

// Paths an accepted request can take; the 202 body names it.
const (
	PathQueue  = "queue"  // published to JetStream and acknowledged
	PathSpool  = "spool"  // appended to the local spool and fsynced; replayed later
	PathDirect = "direct" // written to the sink synchronously (optimization.enabled: false)
)

// Publisher stores events durably and returns once they are acknowledged.
type Publisher interface {
	Publish(ctx context.Context, evs []event.Event) error
	Ready() bool // connected: a publish can succeed
}

// Spool stores what the queue cannot take, durably, until it can.
type Spool interface {
	Append(ctx context.Context, data []byte) error
}

// Modes is the degradation state: read for operator overrides, told about
// every spooled request and every spool failure.
type Modes interface {
	Forced() (degrade.Mode, bool)
	Spooled()
	SpoolFailed()
}

// Gate admits events into publishing: its limit is the number of events
// awaiting a PubAck, and the PubAck latency and errors move it.
type Gate interface {
	TryAcquire(n int) (backpressure.Token, bool)
	Acquire(ctx context.Context, n int) (backpressure.Token, error)
}

// Writer writes events straight to the sink, for the synchronous path.
type Writer interface {
	Write(ctx context.Context, evs []event.Event) (int, error)
}

// Settings are the live-tunable parameters of the handler.
type Settings struct {
	Limits         Limits
	MaxBodyBytes   int64
	PublishTimeout time.Duration
	MaxWait        time.Duration // how long a request the gate refuses waits for room (without degrade)
	RetryAfter     time.Duration // Retry-After when neither the queue nor the spool takes a request
	Keys           *Keys
	RateLimit      float64 // requests per second per key; 0 = unlimited
	RateBurst      int     // requests a key may send at once above RateLimit
	Direct         bool    // optimization.enabled is false: write to the sink synchronously
	Degrade        bool    // optimization.degrade: spool what the queue cannot take
}

// SettingsFrom extracts the handler settings from a configuration.
func SettingsFrom(cfg *config.Config) Settings {
	return Settings{
		Limits: Limits{
			MaxEvents:     cfg.Ingest.MaxEventsPerRequest,
			MaxEventBytes: cfg.Ingest.MaxEventBytes,
			MaxDepth:      cfg.Ingest.MaxDepth,
		},
		MaxBodyBytes:   cfg.Ingest.MaxBodyBytes,
		PublishTimeout: cfg.Ingest.PublishTimeout,
		MaxWait:        cfg.Backpressure.Ingest.MaxWait,
		RetryAfter:     cfg.Degrade.RetryAfter,
		Keys:           NewKeys(cfg.Ingest.Auth.APIKeys),
		RateLimit:      cfg.Ingest.Auth.RateLimit,
		RateBurst:      cfg.Ingest.Auth.RateBurst,
		Direct:         !cfg.Optimization.Enabled,
		Degrade:        cfg.Optimization.Degrade,
	}
}

// Deps are the components a Handler hands events to.
type Deps struct {
	Publisher Publisher
	Gate      Gate
	Direct    Writer        // the synchronous path
	Spool     Spool         // the degraded path
	Modes     Modes         // with Spool
	NewID     func() string // ids for events sent without one
}

// Handler serves POST /v1/events.
type Handler struct {
	Deps
	log      *zap.Logger
	m        *metrics
	limits   keyLimits
	settings atomic.Pointer[Settings]
}

// NewHandler returns a handler that publishes through the gate, spools what
// the queue cannot take, or writes straight to the sink when Settings.Direct
// is set.
func NewHandler(d Deps, s Settings, log *zap.Logger, reg prometheus.Registerer) (*Handler, error) {
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	h := &Handler{Deps: d, log: log.With(zap.String("component", "ingest")), m: m}
	h.Apply(s)
	return h, nil
}

// Apply changes the live settings. The rate limit buckets of key names that
// stay configured carry over.
func (h *Handler) Apply(s Settings) {
	names := s.Keys.Names()
	h.limits.apply(names, s.RateLimit, s.RateBurst)
	for _, n := range names {
		h.m.byKey.WithLabelValues(n)
	}
	h.settings.Store(&s)
}

// ServeHTTP handles one ingest request.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	s := h.settings.Load()
	path, n, key, err := h.serve(w, r, s)
	status := http.StatusAccepted
	if err != nil {
		status = err.Status
		writeError(w, err)
		if n > 0 {
			h.m.events.WithLabelValues("rejected", "none").Add(float64(n))
		}
		path = "none"
	}
	took := time.Since(start)
	h.m.requests.WithLabelValues(strconv.Itoa(status), path).Inc()
	h.m.duration.WithLabelValues(path).Observe(took.Seconds())
	if ce := h.log.Check(zap.DebugLevel, "request"); ce != nil { // sampled by the log policy
		code := ""
		if err != nil {
			code = err.Code
		}
		ce.Write(zap.String("remote", r.RemoteAddr), zap.String("key", key), zap.Int("status", status), zap.String("path", path),
			zap.Int("events", n), zap.String("code", code), zap.Duration("took", took))
	}
}

// serve returns the path taken, the number of events and the name of the
// API key, or the error answer.
func (h *Handler) serve(w http.ResponseWriter, r *http.Request, s *Settings) (string, int, string, *Error) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return "", 0, "", &Error{Status: http.StatusMethodNotAllowed, Code: "method_not_allowed", Message: "use POST"}
	}
	key, aerr := h.authenticate(w, r, s)
	if aerr != nil {
		return "", 0, key, aerr
	}
	form, ok := formOf(r.Header.Get("Content-Type"))
	if !ok {
		return "", 0, key, &Error{Status: http.StatusUnsupportedMediaType, Code: codeUnsupportedMedia,
			Message: "Content-Type must be application/json or application/x-ndjson (UTF-8)"}
	}
	body, rerr := readBody(w, r, s.MaxBodyBytes)
	if rerr != nil {
		return "", 0, key, rerr
	}
	evs, derr := Decode(body, form, s.Limits, time.Now(), h.NewID)
	if derr != nil {
		return "", derr.Events, key, derr
	}
	path, err := h.accept(r.Context(), evs, s, key)
	if err != nil {
		return "", len(evs), key, err
	}
	h.m.events.WithLabelValues("accepted", path).Add(float64(len(evs)))
	writeAccepted(w, evs, path)
	return path, len(evs), key, nil
}

// accept makes evs durable on the path the settings call for: the queue
// when the gate admits them and JetStream acknowledges them; otherwise,
// with the degraded path on, the spool. Only when neither can take them is
// the request refused. key names the request's API key in log lines.
func (h *Handler) accept(ctx context.Context, evs []event.Event, s *Settings, key string) (string, *Error) {
	ctx, cancel := context.WithTimeout(ctx, s.PublishTimeout)
	defer cancel()
	if s.Direct {
		if _, err := h.Direct.Write(ctx, evs); err != nil {
			h.log.Warn("direct write failed", zap.String("key", key), zap.Error(err))
			return "", unavailable("the database did not accept the events; retry later")
		}
		return PathDirect, nil
	}
	spool := s.Degrade && h.Spool != nil
	if spool {
		if f, ok := h.Modes.Forced(); ok && f == degrade.Critical {
			return "", h.refused(s, "ingest is in critical mode (operator override)")
		} else if ok && f == degrade.Degraded {
			return h.toSpool(ctx, evs, s, "forced", key)
		}
	}
	if !h.Publisher.Ready() {
		if spool {
			return h.toSpool(ctx, evs, s, "unreachable", key)
		}
		return "", unavailable("the queue is unreachable; retry later")
	}
	tok, ok := h.Gate.TryAcquire(len(evs))
	if !ok {
		if spool {
			return h.toSpool(ctx, evs, s, "admission", key)
		}
		// Without the degraded path, wait a bounded time for room.
		wctx, cancel := context.WithTimeout(ctx, s.MaxWait)
		var err error
		tok, err = h.Gate.Acquire(wctx, len(evs))
		cancel()
		if err != nil {
			return "", h.refused(s, "too many events are awaiting acknowledgement")
		}
	}
	err := h.Publisher.Publish(ctx, evs)
	tok.Release(outcome(err))
	if err != nil {
		if spool {
			h.log.Warn("publish failed; spooling", zap.String("key", key), zap.Int("events", len(evs)), zap.Error(err))
			return h.toSpool(ctx, evs, s, "publish_error", key)
		}
		h.log.Warn("publish failed", zap.String("key", key), zap.Int("events", len(evs)), zap.Error(err))
		return "", unavailable("the queue did not acknowledge the events; retry later")
	}
	return PathQueue, nil
}

// toSpool appends evs to the spool as one record and waits for its fsync.
// Some events may also have reached the queue (a publish that timed out);
// the replay carries the same ids, so they are deduplicated.
func (h *Handler) toSpool(ctx context.Context, evs []event.Event, s *Settings, reason, key string) (string, *Error) {
	if err := h.Spool.Append(context.WithoutCancel(ctx), degrade.EncodeSpoolRecord(evs)); err != nil {
		h.Modes.SpoolFailed()
		if !errors.Is(err, degrade.ErrSpoolFull) {
			h.log.Error("spool append failed", zap.String("key", key), zap.Error(err))
		}
		return "", h.refused(s, "the queue cannot take the events and the spool is full")
	}
	h.Modes.Spooled()
	h.m.spooled.WithLabelValues(reason).Add(float64(len(evs)))
	return PathSpool, nil
}

// refused is the 503 answer of critical mode, with Retry-After.
func (h *Handler) refused(s *Settings, why string) *Error {
	return &Error{Status: http.StatusServiceUnavailable, Code: "overloaded", RetryAfter: s.RetryAfter,
		Message: why + "; retry later"}
}

// outcome classifies a publish result for the admission gate: a timeout,
// a stall, a full stream or no responders are overload, signals to back
// off; a client that went away says nothing.
func outcome(err error) backpressure.Outcome {
	switch {
	case err == nil:
		return backpressure.Success
	case errors.Is(err, context.Canceled):
		return backpressure.Ignore
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, queue.ErrBusy), queue.IsOverload(err):
		return backpressure.Dropped
	default:
		return backpressure.Ignore
	}
}

func unavailable(msg string) *Error {
	return &Error{Status: http.StatusServiceUnavailable, Code: "unavailable", Message: msg}
}

// formOf maps a Content-Type to a body form. An empty Content-Type is JSON.
func formOf(ct string) (Form, bool) {
	switch ct {
	case "", "application/json":
		return FormJSON, true
	case "application/x-ndjson":
		return FormNDJSON, true
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return 0, false
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return 0, false
	}
	switch {
	case mt == "application/json" || strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json"):
		return FormJSON, true
	case mt == "application/x-ndjson" || mt == "application/ndjson" || mt == "application/jsonl" || mt == "application/x-jsonlines":
		return FormNDJSON, true
	}
	return 0, false
}

// readBody reads the body while enforcing max: on the wire through
// http.MaxBytesReader and, for a gzip body, on the decompressed bytes too.
func readBody(w http.ResponseWriter, r *http.Request, max int64) ([]byte, *Error) {
	raw := http.MaxBytesReader(w, r.Body, max)
	var rd io.Reader = raw
	gz := false
	switch enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); enc {
	case "", "identity":
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(raw)
		if err != nil {
			return nil, readError(err, "body is not valid gzip")
		}
		defer zr.Close()
		rd, gz = io.LimitReader(zr, max+1), true
	default:
		return nil, &Error{Status: http.StatusUnsupportedMediaType, Code: codeUnsupportedEnc,
			Message: fmt.Sprintf("Content-Encoding %q is not supported; use gzip or none", enc)}
	}
	size := int64(512)
	if !gz && r.ContentLength > 0 {
		size = min(r.ContentLength, max) + 1
	}
	buf := make([]byte, 0, size)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := rd.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if int64(len(buf)) > max {
			return nil, tooLarge(max, gz)
		}
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return nil, readError(err, "could not read the request body")
		}
	}
}

func tooLarge(max int64, gz bool) *Error {
	msg := fmt.Sprintf("request body is larger than %d bytes", max)
	if gz {
		msg = fmt.Sprintf("decompressed request body is larger than %d bytes", max)
	}
	return &Error{Status: http.StatusRequestEntityTooLarge, Code: codeTooLarge, Message: msg}
}

func readError(err error, msg string) *Error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return tooLarge(mbe.Limit, false)
	}
	return &Error{Status: http.StatusBadRequest, Code: "bad_body", Message: msg + ": " + err.Error()}
}

// writeAccepted writes {"accepted":N,"ids":[…],"path":"…"}. Ids need no
// escaping (event.ValidID).
func writeAccepted(w http.ResponseWriter, evs []event.Event, path string) {
	b := make([]byte, 0, 48+len(evs)*40)
	b = append(b, `{"accepted":`...)
	b = strconv.AppendInt(b, int64(len(evs)), 10)
	b = append(b, `,"ids":[`...)
	for i := range evs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, evs[i].ID...)
		b = append(b, '"')
	}
	b = append(b, `],"path":"`...)
	b = append(b, path...)
	b = append(b, "\"}\n"...)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	_, _ = w.Write(b)
}

// writeError writes {"error":{"code":…,"message":…,"details":[…]}}.
func writeError(w http.ResponseWriter, e *Error) {
	b, _ := json.Marshal(struct {
		Error *Error `json:"error"`
	}{e})
	w.Header().Set("Content-Type", "application/json")
	if e.Status == http.StatusServiceUnavailable || e.Status == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", strconv.Itoa(max(int(e.RetryAfter.Round(time.Second)/time.Second), 1)))
	}
	w.WriteHeader(e.Status)
	_, _ = w.Write(append(b, '\n'))
}

type metrics struct {
	spooled      *prometheus.CounterVec
	requests     *prometheus.CounterVec
	events       *prometheus.CounterVec
	duration     *prometheus.HistogramVec
	authFailures *prometheus.CounterVec
	byKey        *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		spooled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "levee_ingest_spooled_events_total",
			Help: "Events sent to the spool, by reason (admission, unreachable, publish_error, forced).",
		}, []string{"reason"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "levee_ingest_requests_total",
			Help: "Ingest requests by HTTP status code and path taken (queue, spool, direct, none).",
		}, []string{"code", "path"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "levee_ingest_events_total",
			Help: "Events received, by outcome (accepted, rejected) and path (queue, spool, direct, none).",
		}, []string{"outcome", "path"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "levee_ingest_request_duration_seconds",
			Help:    "Time to answer an ingest request, by path.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"path"}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "levee_ingest_auth_failures_total",
			Help: "Requests refused with 401, by reason (missing, invalid).",
		}, []string{"reason"}),
		byKey: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "levee_ingest_requests_by_key_total",
			Help: "Authenticated ingest requests (rate-limited ones included) by API key name; none when auth is off.",
		}, []string{"key"}),
	}
	for _, c := range []prometheus.Collector{m.spooled, m.requests, m.events, m.duration, m.authFailures, m.byKey} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("ingest: register metrics: %w", err)
		}
	}
	for _, r := range []string{"admission", "unreachable", "publish_error", "forced"} {
		m.spooled.WithLabelValues(r)
	}
	for _, p := range []string{PathQueue, PathSpool, PathDirect} {
		m.events.WithLabelValues("accepted", p)
		m.requests.WithLabelValues("202", p)
		m.duration.WithLabelValues(p)
	}
	m.duration.WithLabelValues("none")
	m.events.WithLabelValues("rejected", "none")
	m.authFailures.WithLabelValues("missing")
	m.authFailures.WithLabelValues("invalid")
	m.byKey.WithLabelValues("none")
	return m, nil
}
