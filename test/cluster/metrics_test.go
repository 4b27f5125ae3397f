package cluster

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// scrape reads the levee_ series of a Prometheus text endpoint: series
// (name with labels, as exposed) → value.
func scrape(ctx context.Context, addr string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := probe.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("metrics of %s: %s", addr, resp.Status)
	}
	m := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "levee_") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			m[line[:i]] = v
		}
	}
	return m, sc.Err()
}

// sum adds the series named name whose labels include every one of labels
// (each written `key="value"`).
func sum(m map[string]float64, name string, labels ...string) float64 {
	var s float64
	for k, v := range m {
		base, rest, _ := strings.Cut(k, "{")
		if base != name {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(rest, l)
		}
		if ok {
			s += v
		}
	}
	return s
}

// target is one process whose metrics the sampler reads.
type target struct {
	p    *proc
	addr string
	role string // "ingest" or "worker"
}

// sampler scrapes every target periodically and keeps, per process and
// incarnation, the last values read: a counter of a process killed with
// SIGKILL keeps the value of its last scrape, and a restarted process starts
// a new incarnation from zero. Totals add every incarnation.
type sampler struct {
	targets []target
	load    *loader

	mu     sync.Mutex
	last   map[string]map[int]map[string]float64 // proc → incarnation → series
	points []point
}

// point is the cluster-wide state at one time: cumulative counters.
type point struct {
	at        time.Time
	accepted  float64 // events answered 202 (client side)
	rows      float64 // rows inserted into the sink (workers' levee_sink_rows_total)
	fetched   float64 // messages fetched by workers
	published float64 // messages acknowledged to ingest (levee_publish_messages_total ok)
	latNanos  float64 // summed latency of the 202 answers (client side)
	n202      float64 // 202 answers
}

func newSampler(tp *topology, l *loader) *sampler {
	s := &sampler{load: l, last: map[string]map[int]map[string]float64{}}
	for _, in := range tp.ingests {
		s.targets = append(s.targets, target{p: in.proc, addr: in.admin, role: "ingest"})
	}
	for _, w := range tp.workers {
		s.targets = append(s.targets, target{p: w.proc, addr: w.admin, role: "worker"})
	}
	return s
}

// run samples every interval until ctx ends.
func (s *sampler) run(ctx context.Context, every time.Duration) *sync.WaitGroup {
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			s.sample(ctx)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	})
	return &wg
}

// sample scrapes every target concurrently and records a point.
func (s *sampler) sample(ctx context.Context) {
	var wg sync.WaitGroup
	for _, tg := range s.targets {
		wg.Go(func() { s.scrapeOne(ctx, tg) })
	}
	wg.Wait()
	p := point{at: time.Now()}
	if s.load != nil {
		p.accepted = float64(s.load.accEvts.Load())
		p.latNanos, p.n202 = float64(s.load.latNanos.Load()), float64(s.load.n202.Load())
	}
	p.rows = s.total("worker", "levee_sink_rows_total", `result="inserted"`)
	p.fetched = s.total("worker", "levee_worker_fetched_messages_total")
	p.published = s.total("ingest", "levee_publish_messages_total", `result="ok"`)
	s.mu.Lock()
	s.points = append(s.points, p)
	s.mu.Unlock()
}

// scrapeOne reads one target, and keeps the values only if the same
// incarnation was running before and after.
func (s *sampler) scrapeOne(ctx context.Context, tg target) {
	inc, running := tg.p.current()
	if !running {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	m, err := scrape(ctx, tg.addr)
	if err != nil {
		return
	}
	if now, _ := tg.p.current(); now != inc {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.last[tg.p.name] == nil {
		s.last[tg.p.name] = map[int]map[string]float64{}
	}
	s.last[tg.p.name][inc] = m
}

// scrapeNow reads one process at once: called just before killing it.
func (s *sampler) scrapeNow(p *proc) map[string]float64 {
	for _, tg := range s.targets {
		if tg.p == p {
			s.scrapeOne(context.Background(), tg)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	inc, _ := p.current()
	return s.last[p.name][inc]
}

// total adds a series over every incarnation of every process of a role.
func (s *sampler) total(role, name string, labels ...string) float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var t float64
	for _, tg := range s.targets {
		if role != "" && tg.role != role {
			continue
		}
		for _, m := range s.last[tg.p.name] {
			t += sum(m, name, labels...)
		}
	}
	return t
}

// perProcess adds a series over the incarnations of each process of a role.
func (s *sampler) perProcess(role, name string, labels ...string) map[string]float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]float64{}
	for _, tg := range s.targets {
		if tg.role != role {
			continue
		}
		for _, m := range s.last[tg.p.name] {
			out[tg.p.name] += sum(m, name, labels...)
		}
	}
	return out
}

func (s *sampler) snapshot() []point {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]point(nil), s.points...)
}

// valueAt is the linear interpolation of a cumulative series at time at.
func valueAt(ps []point, get func(point) float64, at time.Time) float64 {
	if len(ps) == 0 {
		return 0
	}
	if !at.After(ps[0].at) {
		return get(ps[0])
	}
	for i := 1; i < len(ps); i++ {
		if !at.After(ps[i].at) {
			a, b := ps[i-1], ps[i]
			f := float64(at.Sub(a.at)) / float64(b.at.Sub(a.at))
			return get(a) + f*(get(b)-get(a))
		}
	}
	return get(ps[len(ps)-1])
}

// rate is the mean rate of a cumulative series over [from, to].
func rate(ps []point, get func(point) float64, from, to time.Time) float64 {
	return (valueAt(ps, get, to) - valueAt(ps, get, from)) / to.Sub(from).Seconds()
}

// recovery is the time from `from` to the end of the first window of length
// w, lying wholly after from and ending at a sample, whose rate is at least
// frac × base. It also returns the lowest such window rate seen until then.
// ok is false if the rate never came back.
func recovery(ps []point, get func(point) float64, from time.Time, base, frac float64, w time.Duration) (d time.Duration, low float64, ok bool) {
	low = -1
	for _, p := range ps {
		if p.at.Before(from.Add(w)) {
			continue
		}
		r := rate(ps, get, p.at.Add(-w), p.at)
		if low < 0 || r < low {
			low = r
		}
		if r >= frac*base {
			return p.at.Sub(from), low, true
		}
	}
	return 0, low, false
}

// meanLatency is the mean latency of the 202 answers received in [from, to].
func meanLatency(ps []point, from, to time.Time) time.Duration {
	n := valueAt(ps, getN202, to) - valueAt(ps, getN202, from)
	if n <= 0 {
		return 0
	}
	return time.Duration((valueAt(ps, getLat, to) - valueAt(ps, getLat, from)) / n)
}

// worstLatency is the highest mean latency of the 202 answers over a window
// of length w ending at a sample in [from+w, to].
func worstLatency(ps []point, from, to time.Time, w time.Duration) time.Duration {
	var worst time.Duration
	for _, p := range ps {
		if !p.at.Before(from.Add(w)) && !p.at.After(to) {
			worst = max(worst, meanLatency(ps, p.at.Add(-w), p.at))
		}
	}
	return worst
}

var (
	getAccepted = func(p point) float64 { return p.accepted }
	getRows     = func(p point) float64 { return p.rows }
	getN202     = func(p point) float64 { return p.n202 }
	getLat      = func(p point) float64 { return p.latNanos }
)
