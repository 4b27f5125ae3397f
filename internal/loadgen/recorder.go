package loadgen

import (
	"errors"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Latencies are recorded in microseconds, from 1 µs to maxLatency, with 3
// significant digits for the run and 2 for each second of the time series.
const (
	maxLatencyMicros = int64(5 * time.Minute / time.Microsecond)
	runSigFigs       = 3
	secondSigFigs    = 2
)

// Outcome is what became of one request.
type Outcome struct {
	Intended time.Time // when it was meant to be sent; latency is measured from here
	End      time.Time
	Status   int    // HTTP status; 0 on a transport error
	ErrClass string // transport error class when Status is 0
	Events   int
	Path     string // "path" of a 202 answer
}

// Recorder accumulates outcomes: a latency histogram for the run, one per
// second, and counts by status. It is safe for concurrent use; one lock
// guards everything and is never held during I/O.
type Recorder struct {
	mu      sync.Mutex
	start   time.Time
	total   *hdrhistogram.Histogram
	secs    []*second
	status  map[string]int64
	paths   map[string]int64
	lastOK  time.Time
	lastEnd time.Time
}

type second struct {
	offered, dropped, completed, accepted, acceptedEvents, errors int64
	hist                                                          *hdrhistogram.Histogram
}

// NewRecorder returns a recorder whose time series starts at start.
func NewRecorder(start time.Time) *Recorder {
	return &Recorder{
		start:  start,
		total:  hdrhistogram.New(1, maxLatencyMicros, runSigFigs),
		status: map[string]int64{},
		paths:  map[string]int64{},
	}
}

// sec returns the bucket of the second containing t. Called with mu held.
func (r *Recorder) sec(t time.Time) *second {
	i := max(int(t.Sub(r.start)/time.Second), 0)
	for len(r.secs) <= i {
		r.secs = append(r.secs, &second{})
	}
	return r.secs[i]
}

// Offered counts a request due (open loop) or started (closed loop) at t.
func (r *Recorder) Offered(t time.Time) {
	r.mu.Lock()
	r.sec(t).offered++
	r.mu.Unlock()
}

// Dropped counts a request due at t that the generator could not send
// because every in-flight slot was busy.
func (r *Recorder) Dropped(t time.Time) {
	r.mu.Lock()
	r.sec(t).dropped++
	r.mu.Unlock()
}

// Done records the outcome of a request that was sent.
func (r *Recorder) Done(o Outcome) {
	us := min(max(o.End.Sub(o.Intended).Microseconds(), 1), maxLatencyMicros)
	key := strconv.Itoa(o.Status)
	if o.Status == 0 {
		key = "error:" + o.ErrClass
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	_ = r.total.RecordValue(us)
	s := r.sec(o.End)
	if s.hist == nil {
		s.hist = hdrhistogram.New(1, maxLatencyMicros, secondSigFigs)
	}
	_ = s.hist.RecordValue(us)
	s.completed++
	r.status[key]++
	if o.End.After(r.lastEnd) {
		r.lastEnd = o.End
	}
	if o.Status == 202 {
		s.accepted++
		s.acceptedEvents += int64(o.Events)
		r.paths[o.Path]++
		if o.End.After(r.lastOK) {
			r.lastOK = o.End
		}
		return
	}
	s.errors++
}

// Latency summarises a latency distribution, in milliseconds.
type Latency struct {
	P50  float64 `json:"p50_ms"`
	P95  float64 `json:"p95_ms"`
	P99  float64 `json:"p99_ms"`
	P999 float64 `json:"p999_ms"`
	Max  float64 `json:"max_ms"`
	Mean float64 `json:"mean_ms"`
}

func latencyOf(h *hdrhistogram.Histogram) Latency {
	if h.TotalCount() == 0 {
		return Latency{}
	}
	ms := func(us int64) float64 { return float64(us) / 1000 }
	return Latency{
		P50:  ms(h.ValueAtQuantile(50)),
		P95:  ms(h.ValueAtQuantile(95)),
		P99:  ms(h.ValueAtQuantile(99)),
		P999: ms(h.ValueAtQuantile(99.9)),
		Max:  ms(h.Max()),
		Mean: h.Mean() / 1000,
	}
}

// Second is one second of a run's time series.
type Second struct {
	T              int     `json:"t"`
	Offered        int64   `json:"offered_requests"`
	Dropped        int64   `json:"dropped_requests"`
	Completed      int64   `json:"completed_requests"`
	Accepted       int64   `json:"accepted_requests"`
	AcceptedEvents int64   `json:"accepted_events"`
	Errors         int64   `json:"errors"`
	P99            float64 `json:"p99_ms"`
}

// Count is a number of requests and its rate over the run.
type Count struct {
	N    int64   `json:"n"`
	Rate float64 `json:"per_second"`
}

// Tally is the recorder's summary.
type Tally struct {
	Offered, Dropped, Completed, Accepted, AcceptedEvents int64
	Latency                                               Latency
	Status                                                map[string]int64
	Paths                                                 map[string]int64
	Timeline                                              []Second
	LastAccepted, LastEnd                                 time.Time
}

// Tally summarises what was recorded so far.
func (r *Recorder) Tally() Tally {
	r.mu.Lock()
	defer r.mu.Unlock()
	t := Tally{Latency: latencyOf(r.total), Status: map[string]int64{}, Paths: map[string]int64{},
		LastAccepted: r.lastOK, LastEnd: r.lastEnd}
	for k, v := range r.status {
		t.Status[k] = v
	}
	for k, v := range r.paths {
		t.Paths[k] = v
	}
	for i, s := range r.secs {
		sec := Second{T: i, Offered: s.offered, Dropped: s.dropped, Completed: s.completed,
			Accepted: s.accepted, AcceptedEvents: s.acceptedEvents, Errors: s.errors}
		if s.hist != nil {
			sec.P99 = float64(s.hist.ValueAtQuantile(99)) / 1000
		}
		t.Timeline = append(t.Timeline, sec)
		t.Offered += s.offered
		t.Dropped += s.dropped
		t.Completed += s.completed
		t.Accepted += s.accepted
		t.AcceptedEvents += s.acceptedEvents
	}
	return t
}

// statusKeys returns the keys of m sorted: status codes first, then errors.
func statusKeys(m map[string]int64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// errNoRequests is returned when a run completed no request at all.
var errNoRequests = errors.New("loadgen: no request completed")
