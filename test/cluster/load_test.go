package cluster

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// loader is a set of concurrent clients posting bulk requests of events
// with unique ids ("<prefix>-<n>", n sequential) to the ingest replicas.
// Client i starts on replica i mod len(urls); after a connection error or
// a 503 it sends the same request, with the same ids, to the next replica.
type loader struct {
	urls     []string
	prefix   string
	min, max int           // events per request
	interval time.Duration // per client between request starts; 0 = back to back
	attempts int           // sends of one request before giving up on it
	hc       *http.Client

	next     atomic.Int64 // next event number
	accEvts  atomic.Int64 // events answered 202 so far (for rates)
	latNanos atomic.Int64 // summed latency of 202 answers
	n202     atomic.Int64 // 202 answers (for the mean latency)
	mu       sync.Mutex
	st       loadStats
	accepted []span // event numbers answered 202
}

// span is the events first..first+n-1 of one request.
type span struct{ first, n int64 }

// loadStats counts what the clients saw. Sends counts every attempt; a
// request retried after a connection error counts once per attempt.
type loadStats struct {
	Requests, Sends, EventsSent     int64
	Status202, Events202            int64
	Status503, Missing503RetryAfter int64
	ConnErrors, OtherStatus         int64
	Retried, GaveUp                 int64
	Paths                           map[string]int64
	Other                           map[int]int64
}

func newLoader(urls []string, prefix string, min, max int, interval time.Duration) *loader {
	return &loader{
		urls: urls, prefix: prefix, min: min, max: max, interval: interval, attempts: 6,
		hc: &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}},
		st: loadStats{Paths: map[string]int64{}, Other: map[int]int64{}},
	}
}

// run starts clients goroutines that post until stop is closed. A request
// begun before stop still gets its retries.
func (l *loader) run(clients int, stop <-chan struct{}) *sync.WaitGroup {
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() { l.client(c, stop) })
	}
	return &wg
}

func (l *loader) client(c int, stop <-chan struct{}) {
	rng := rand.New(rand.NewPCG(uint64(c), uint64(time.Now().UnixNano())))
	// Clients start spread over one interval so that they do not post in step.
	next := time.Now().Add(time.Duration(rng.Int64N(int64(l.interval) + 1)))
	for {
		select {
		case <-stop:
			return
		case <-time.After(time.Until(next)):
		}
		next = next.Add(l.interval)
		if now := time.Now(); next.Before(now) {
			next = now // behind schedule: no burst to catch up
		}
		n := l.min + rng.IntN(l.max-l.min+1)
		first := l.next.Add(int64(n)) - int64(n)
		l.request(c, span{first, int64(n)})
	}
}

// request sends one request until it is answered 202 or a non-retryable
// status, or the attempts are used up.
func (l *loader) request(c int, s span) {
	body := l.body(s)
	l.count(func(st *loadStats) { st.Requests++ })
	target := c % len(l.urls)
	for attempt := range l.attempts {
		if attempt > 0 {
			l.count(func(st *loadStats) { st.Retried++ })
		}
		status, hdr, path, lat, err := l.post(l.urls[target], body)
		l.count(func(st *loadStats) { st.Sends++; st.EventsSent += s.n })
		switch {
		case err != nil:
			// Connection refused, reset or timed out: the other replica.
			l.count(func(st *loadStats) { st.ConnErrors++ })
			target = (target + 1) % len(l.urls)
			time.Sleep(20 * time.Millisecond)
			continue
		case status == http.StatusAccepted:
			l.accEvts.Add(s.n)
			l.latNanos.Add(int64(lat))
			l.n202.Add(1)
			l.count(func(st *loadStats) {
				st.Status202++
				st.Events202 += s.n
				st.Paths[path]++
				l.accepted = append(l.accepted, s)
			})
			return
		case status == http.StatusServiceUnavailable:
			ra := hdr.Get("Retry-After")
			l.count(func(st *loadStats) {
				st.Status503++
				if ra == "" {
					st.Missing503RetryAfter++
				}
			})
			// Honour Retry-After, capped at 1 s to keep the test bounded.
			wait := time.Second
			if secs, err := strconv.Atoi(ra); err == nil && secs < 1 {
				wait = time.Duration(secs) * time.Second
			}
			time.Sleep(wait)
			target = (target + 1) % len(l.urls)
			continue
		default:
			l.count(func(st *loadStats) { st.OtherStatus++; st.Other[status]++ })
			return
		}
	}
	l.count(func(st *loadStats) { st.GaveUp++ })
}

func (l *loader) post(url string, body []byte) (int, http.Header, string, time.Duration, error) {
	start := time.Now()
	resp, err := l.hc.Post(url+"/v1/events", "application/json", bytes.NewReader(body))
	if err != nil {
		return 0, nil, "", 0, err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		// The answer was cut off: for the client, a connection error.
		return 0, nil, "", 0, errors.Join(errors.New("reading the answer"), err)
	}
	var a struct {
		Accepted int    `json:"accepted"`
		Path     string `json:"path"`
	}
	if resp.StatusCode == http.StatusAccepted {
		if err := json.Unmarshal(b, &a); err != nil || a.Accepted == 0 {
			return -1, resp.Header, "", 0, nil // a 202 without its body is a bug
		}
	}
	return resp.StatusCode, resp.Header, a.Path, time.Since(start), nil
}

// body is a JSON array of the span's events.
func (l *loader) body(s span) []byte {
	b := make([]byte, 0, s.n*130)
	b = append(b, '[')
	for i := s.first; i < s.first+s.n; i++ {
		if i > s.first {
			b = append(b, ',')
		}
		b = append(b, `{"id":"`...)
		b = append(b, l.prefix...)
		b = append(b, '-')
		b = strconv.AppendInt(b, i, 10)
		b = append(b, `","type":"cluster.load","data":{"n":`...)
		b = strconv.AppendInt(b, i, 10)
		b = append(b, `,"pad":"0123456789abcdef0123456789abcdef0123456789abcdef"}}`...)
	}
	return append(b, ']')
}

func (l *loader) count(f func(*loadStats)) {
	l.mu.Lock()
	f(&l.st)
	l.mu.Unlock()
}

// stats returns a copy of the counts.
func (l *loader) stats() loadStats {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.st
	s.Paths, s.Other = map[string]int64{}, map[int]int64{}
	for k, v := range l.st.Paths {
		s.Paths[k] = v
	}
	for k, v := range l.st.Other {
		s.Other[k] = v
	}
	return s
}

// acceptedSet returns a bitmap of the event numbers answered 202.
func (l *loader) acceptedSet() (bits []uint64, n int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	bits = make([]uint64, l.next.Load()/64+1)
	for _, s := range l.accepted {
		for i := s.first; i < s.first+s.n; i++ {
			if bits[i/64]&(1<<(i%64)) == 0 {
				bits[i/64] |= 1 << (i % 64)
				n++
			}
		}
	}
	return bits, n
}
