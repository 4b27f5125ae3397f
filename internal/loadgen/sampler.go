package loadgen

import (
	"context"
	"math"
	"net/http"
	"runtime"
	"slices"
	"sort"
	"sync"
	"time"

	"go.uber.org/zap"
)

// Series the sampler reads from the services' /metrics.
const (
	metricPending  = "levee_consumer_pending_messages"
	metricSpool    = "levee_spool_events"
	metricSpooled  = "levee_ingest_spooled_events_total" // with metricReplayed: spool depth when metricSpool is absent
	metricReplayed = "levee_spool_replayed_events_total"
	metricRows     = "levee_sink_rows_total"
	metricIngested = "levee_ingest_events_total"
	metricLag      = "levee_worker_lag_seconds"
	metricDegrade  = "levee_degrade_mode"
)

// Targets says what the sampler watches; any part may be empty.
type Targets struct {
	IngestAdmin  string   `json:"ingest_admin,omitempty"`
	WorkerAdmins []string `json:"worker_admins,omitempty"`
	IngestPIDs   []int    `json:"ingest_pids,omitempty"`
	WorkerPIDs   []int    `json:"worker_pids,omitempty"`
}

// Sample is one reading of the pipeline, taken every interval.
type Sample struct {
	At          time.Time `json:"at"`
	QueueDepth  float64   `json:"queue_depth"`     // messages not yet delivered to a worker
	SpoolEvents float64   `json:"spool_events"`    // 0 while the series is absent
	Backlog     float64   `json:"backlog_events"`  // accepted by ingest and not yet written to the sink
	SinkRows    float64   `json:"sink_rows"`       // cumulative rows written (workers + direct path)
	SinkRate    float64   `json:"sink_rows_per_s"` // since the previous sample
	Degrade     float64   `json:"degrade_mode"`
	IngestCPU   float64   `json:"ingest_cpu_pct"` // % of one core, summed over the processes
	WorkerCPU   float64   `json:"worker_cpu_pct"`
	HostCPU     float64   `json:"host_cpu_pct"` // every process on the machine, loadgen included
	IngestRSS   float64   `json:"ingest_rss_mib"`
	WorkerRSS   float64   `json:"worker_rss_mib"`
}

// Series is what a sampler collected.
type Series struct {
	Samples      []Sample        `json:"samples"`
	LagFirst     []Bucket        `json:"-"`
	LagLast      []Bucket        `json:"-"`
	Present      map[string]bool `json:"-"`
	ScrapeErrors int             `json:"scrape_errors"`
	watched      []string
}

// Sampler reads the services' metrics and processes every interval.
type Sampler struct {
	t        Targets
	interval time.Duration
	client   *http.Client
	log      *zap.Logger
}

// NewSampler returns a sampler of t. It starts nothing.
func NewSampler(t Targets, interval time.Duration, log *zap.Logger) *Sampler {
	if interval <= 0 {
		interval = time.Second
	}
	return &Sampler{t: t, interval: interval, client: &http.Client{Timeout: interval * 9 / 10},
		log: log.With(zap.String("component", "sampler"))}
}

// reading is one scrape of everything, before rates are derived.
type reading struct {
	at                     time.Time
	queue, spool, degrade  float64
	rows, accepted         float64
	lag                    []Bucket
	ingestProc, workerProc map[int]ProcStat
	host                   HostStat
}

// Run samples until ctx ends and returns what it collected.
func (s *Sampler) Run(ctx context.Context) *Series {
	ser := &Series{Present: map[string]bool{}}
	if s.t.IngestAdmin != "" {
		ser.watched = append(ser.watched, metricSpool, metricIngested, metricDegrade)
	}
	if len(s.t.WorkerAdmins) > 0 {
		ser.watched = append(ser.watched, metricPending, metricRows, metricLag)
	}
	prev := s.read(ctx, ser)
	ser.LagFirst, ser.LagLast = prev.lag, prev.lag
	tick := time.NewTicker(s.interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ser
		case <-tick.C:
		}
		cur := s.read(ctx, ser)
		if ctx.Err() != nil {
			return ser
		}
		ser.Samples = append(ser.Samples, derive(prev, cur))
		if cur.lag != nil {
			if ser.LagFirst == nil {
				ser.LagFirst = cur.lag
			}
			ser.LagLast = cur.lag
		}
		prev = cur
	}
}

func (s *Sampler) read(ctx context.Context, ser *Series) reading {
	r := reading{at: time.Now(), ingestProc: readProcs(s.t.IngestPIDs), workerProc: readProcs(s.t.WorkerPIDs)}
	r.host, _ = ReadHost()
	// Scrape every service at once: an overloaded one answers late, and the
	// others' readings should still belong to this instant.
	addrs := append([]string{s.t.IngestAdmin}, s.t.WorkerAdmins...)
	pages := make([]Exposition, len(addrs))
	errs := make([]error, len(addrs))
	var wg sync.WaitGroup
	for i, a := range addrs {
		if a != "" {
			wg.Go(func() { pages[i], errs[i] = Scrape(ctx, s.client, a) })
		}
	}
	wg.Wait()
	for i, a := range addrs {
		switch {
		case a == "":
		case errs[i] != nil:
			ser.ScrapeErrors++
		case i == 0:
			e := pages[0]
			r.spool = spoolDepth(ser, e)
			r.degrade = present(ser, e, metricDegrade)
			r.rows += present(ser, e, metricIngested, "outcome", "accepted", "path", "direct")
			r.accepted, _ = e.Value(metricIngested, "outcome", "accepted")
		default:
			e := pages[i]
			// Every worker reports the depth of the one shared consumer.
			r.queue = max(r.queue, present(ser, e, metricPending))
			r.rows += present(ser, e, metricRows, "result", "inserted")
			if bs, ok := e.Buckets(metricLag); ok {
				ser.Present[metricLag] = true
				r.lag = AddBuckets(r.lag, bs)
			}
		}
	}
	return r
}

// spoolDepth returns levee_spool_events or, without it, the events
// spooled minus the events replayed since ingest started.
func spoolDepth(ser *Series, e Exposition) float64 {
	if v, ok := e.Value(metricSpool); ok {
		ser.Present[metricSpool] = true
		return v
	}
	spooled, ok := e.Value(metricSpooled)
	if !ok {
		return 0
	}
	replayed, _ := e.Value(metricReplayed)
	ser.Present[metricSpooled] = true
	return max(spooled-replayed, 0)
}

// present returns the value of a series and notes that it exists.
func present(ser *Series, e Exposition, name string, match ...string) float64 {
	v, ok := e.Value(name, match...)
	if ok {
		ser.Present[name] = true
	}
	return v
}

func readProcs(pids []int) map[int]ProcStat {
	m := make(map[int]ProcStat, len(pids))
	for _, pid := range pids {
		if st, err := ReadProc(pid); err == nil {
			m[pid] = st
		}
	}
	return m
}

// derive makes the sample of the interval between two readings.
func derive(a, b reading) Sample {
	sm := Sample{At: b.at, QueueDepth: b.queue, SpoolEvents: b.spool, SinkRows: b.rows, Degrade: b.degrade,
		Backlog: max(b.accepted-b.rows, 0)}
	if rs := Rates([]Point{{a.at, a.rows}, {b.at, b.rows}}); len(rs) == 1 {
		sm.SinkRate = rs[0].PerSec
	}
	sm.HostCPU = HostCPUPercent(a.host, b.host, runtime.NumCPU())
	sm.IngestCPU, sm.IngestRSS = procUsage(a.ingestProc, b.ingestProc)
	sm.WorkerCPU, sm.WorkerRSS = procUsage(a.workerProc, b.workerProc)
	return sm
}

// procUsage sums CPU % and RSS (MiB) over the processes read both times.
func procUsage(a, b map[int]ProcStat) (cpu, rssMiB float64) {
	for pid, sb := range b {
		rssMiB += float64(sb.RSSKiB) / 1024
		if sa, ok := a[pid]; ok {
			cpu += CPUPercent(sa, sb)
		}
	}
	return cpu, rssMiB
}

// Usage is the CPU and memory of a group of processes over a window.
type Usage struct {
	MeanCPU   float64 `json:"mean_cpu_pct"` // % of one core
	MaxCPU    float64 `json:"max_cpu_pct"`
	MaxRSSMiB float64 `json:"max_rss_mib"`
}

// Observed summarises a Series over the load window.
type Observed struct {
	Ingest       Usage    `json:"ingest"`
	Worker       Usage    `json:"worker"`
	Total        Usage    `json:"total"` // ingest + workers, summed per sample
	Host         Usage    `json:"host"`  // every process on the machine (CPU only)
	SinkRateMean float64  `json:"sink_rows_per_s_mean"`
	SinkRateMax  float64  `json:"sink_rows_per_s_max"`
	QueueMax     float64  `json:"queue_depth_max"`
	SpoolMax     float64  `json:"spool_events_max"`
	SpoolSource  string   `json:"spool_source,omitempty"` // set when derived from counters
	BacklogMax   float64  `json:"backlog_events_max"`
	SpoolEnd     float64  `json:"spool_events_end"` // at the last sample: what the spool still held
	DegradeMax   float64  `json:"degrade_mode_max"`
	LagP50       *float64 `json:"lag_p50_s,omitempty"` // over everything written while sampling
	LagP99       *float64 `json:"lag_p99_s,omitempty"`
	Absent       []string `json:"absent_series,omitempty"`
	Samples      []Sample `json:"samples"`
	ScrapeErrors int      `json:"scrape_errors"`
}

// Observe summarises the series: CPU, memory and sink rate over the samples
// that end in [from, to] (the load window), depths over every sample, lag
// over the whole series.
func (ser *Series) Observe(from, to time.Time) Observed {
	o := Observed{Samples: ser.Samples, ScrapeErrors: ser.ScrapeErrors}
	var in []Sample
	for _, sm := range ser.Samples {
		o.QueueMax = max(o.QueueMax, sm.QueueDepth)
		o.SpoolMax = max(o.SpoolMax, sm.SpoolEvents)
		o.BacklogMax = max(o.BacklogMax, sm.Backlog)
		o.SpoolEnd = sm.SpoolEvents
		o.DegradeMax = max(o.DegradeMax, sm.Degrade)
		o.SinkRateMax = max(o.SinkRateMax, sm.SinkRate)
		if !sm.At.Before(from) && !sm.At.After(to.Add(time.Second/2)) {
			in = append(in, sm)
		}
	}
	// A load shorter than the interval: the first sample after its start.
	if i := slices.IndexFunc(ser.Samples, func(sm Sample) bool { return sm.At.After(from) }); len(in) == 0 && i >= 0 {
		in = ser.Samples[i : i+1]
	}
	o.Ingest = usage(in, func(s Sample) (float64, float64) { return s.IngestCPU, s.IngestRSS })
	o.Worker = usage(in, func(s Sample) (float64, float64) { return s.WorkerCPU, s.WorkerRSS })
	o.Total = usage(in, func(s Sample) (float64, float64) { return s.IngestCPU + s.WorkerCPU, s.IngestRSS + s.WorkerRSS })
	o.Host = usage(in, func(s Sample) (float64, float64) { return s.HostCPU, 0 })
	for _, sm := range in {
		o.SinkRateMean += sm.SinkRate / float64(len(in))
	}
	if ser.LagLast != nil {
		d := SubBuckets(ser.LagLast, ser.LagFirst)
		if p50, p99 := BucketQuantile(.5, d), BucketQuantile(.99, d); !math.IsNaN(p50) {
			o.LagP50, o.LagP99 = &p50, &p99
		}
	}
	for _, name := range ser.watched {
		if name == metricSpool && ser.Present[metricSpooled] {
			o.SpoolSource = metricSpooled + " − " + metricReplayed
			continue
		}
		if !ser.Present[name] {
			o.Absent = append(o.Absent, name)
		}
	}
	sort.Strings(o.Absent)
	return o
}

func usage(ss []Sample, f func(Sample) (cpu, rss float64)) Usage {
	var u Usage
	for _, s := range ss {
		cpu, rss := f(s)
		u.MeanCPU += cpu / float64(len(ss))
		u.MaxCPU = max(u.MaxCPU, cpu)
		u.MaxRSSMiB = max(u.MaxRSSMiB, rss)
	}
	return u
}
