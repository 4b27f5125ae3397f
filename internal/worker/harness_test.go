package worker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/levee-dev/levee/internal/backpressure"
	"github.com/levee-dev/levee/internal/config"
	"github.com/levee-dev/levee/internal/degrade"
	"github.com/levee-dev/levee/internal/event"
	"github.com/levee-dev/levee/internal/ingest"
	"github.com/levee-dev/levee/internal/pgtest"
	"github.com/levee-dev/levee/internal/queue"
	"github.com/levee-dev/levee/internal/sink"
	"github.com/levee-dev/levee/internal/worker"
)

// env is an in-process pipeline: an embedded JetStream server, a sink,
// and as many ingest handlers and workers as a test starts.
type env struct {
	t    testing.TB
	cfg  *config.Config
	ns   *server.Server
	sink sink.Sink
	log  *zap.Logger
}

func newEnv(t testing.TB, sinkKind string, tweak func(*config.Config)) *env {
	t.Helper()
	cfg, err := config.Load(config.Source{Environ: func() []string { return nil }})
	require.NoError(t, err)
	cfg.NATS.Embedded.Listen = "127.0.0.1:-1"
	cfg.NATS.Embedded.StoreDir = t.TempDir()
	cfg.Degrade.Spool.Dir = t.TempDir()
	cfg.Sink.Kind = sinkKind
	switch sinkKind {
	case "sqlite":
		cfg.Sink.SQLite.Path = filepath.Join(t.TempDir(), "levee.db")
	case "postgres":
		cfg.Sink.Postgres.DSN = pgtest.DSN(t)
	}
	cfg.Worker.AckWait = 3 * time.Second
	cfg.Worker.NakDelay = 200 * time.Millisecond
	if tweak != nil {
		tweak(cfg)
	}
	require.NoError(t, cfg.Validate())
	log := zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
	ns, err := queue.StartEmbedded(cfg.NATS, log)
	require.NoError(t, err)
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	cfg.NATS.URL = ns.ClientURL()

	ctx := context.Background()
	sk, err := sink.Open(ctx, cfg.Sink)
	require.NoError(t, err)
	t.Cleanup(func() { sk.Close() })
	e := &env{t: t, cfg: cfg, ns: ns, sink: sk, log: log}
	nc, js := e.connect()
	defer nc.Close()
	require.NoError(t, queue.EnsureStreams(ctx, js, cfg.NATS))
	return e
}

func (e *env) connect(opts ...jetstream.JetStreamOpt) (*nats.Conn, jetstream.JetStream) {
	e.t.Helper()
	nc, err := queue.Connect(context.Background(), e.cfg.NATS, "test", e.log)
	require.NoError(e.t, err)
	js, err := jetstream.New(nc, opts...)
	require.NoError(e.t, err)
	return nc, js
}

// startIngest serves the ingest handler over a real HTTP server.
func (e *env) startIngest() *httptest.Server {
	e.t.Helper()
	nc, js := e.connect(jetstream.WithPublishAsyncTimeout(e.cfg.Queue.AckTimeout),
		jetstream.WithPublishAsyncMaxPending(e.cfg.Queue.MaxPending))
	pub, err := queue.NewPublisher(js, e.cfg.NATS.Stream.SubjectsPrefix, e.cfg.Queue.Pack.Lanes,
		queue.SettingsFrom(e.cfg), e.log, prometheus.NewRegistry())
	require.NoError(e.t, err)
	var seq atomic.Int64
	newID := func() string { return "gen-" + strconv.FormatInt(seq.Add(1), 10) }
	reg := prometheus.NewRegistry()
	gate, err := backpressure.NewLimiter("admission", backpressure.IngestConfig(e.cfg), reg)
	require.NoError(e.t, err)
	spool, err := degrade.OpenSpool(degrade.SpoolOptionsFrom(e.cfg), e.log, reg)
	require.NoError(e.t, err)
	modes, err := degrade.NewModes(spool, degrade.ModeSettingsFrom(e.cfg), e.log, reg)
	require.NoError(e.t, err)
	spoolCtx, stopSpool := context.WithCancel(context.Background())
	spoolDone := make(chan struct{})
	go func() { _ = spool.Run(spoolCtx); close(spoolDone) }()
	h, err := ingest.NewHandler(ingest.Deps{Publisher: pub, Gate: gate, Direct: e.sink, Spool: spool, Modes: modes, NewID: newID},
		ingest.SettingsFrom(e.cfg), e.log, reg)
	require.NoError(e.t, err)
	srv := httptest.NewServer(h)
	e.t.Cleanup(func() {
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(e.t, pub.Close(ctx))
		stopSpool()
		<-spoolDone
		spool.Close()
		nc.Close()
	})
	return srv
}

// runningWorker is a worker started by a test.
type runningWorker struct {
	nc     *nats.Conn
	cancel context.CancelFunc
	done   chan error
	reg    *prometheus.Registry
}

// stop shuts the worker down cleanly and waits for it.
func (r *runningWorker) stop(t testing.TB) {
	r.cancel()
	select {
	case err := <-r.done:
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("worker did not stop within 30s")
	}
	r.nc.Close()
}

func (e *env) startWorker(sk worker.Sink) *runningWorker {
	e.t.Helper()
	nc, js := e.connect()
	ctx := context.Background()
	cons, err := queue.EnsureConsumer(ctx, js, *e.cfg)
	require.NoError(e.t, err)
	reg := prometheus.NewRegistry()
	w, err := worker.New(cons, js, sk, worker.SettingsFrom(e.cfg), worker.Options{
		AckWait: e.cfg.Worker.AckWait, DLQSubject: e.cfg.NATS.DLQ.Subject,
		ShutdownTimeout: 20 * time.Second, WriteTimeout: 10 * time.Second, FetchWait: 200 * time.Millisecond,
	}, e.log, reg)
	require.NoError(e.t, err)
	rctx, cancel := context.WithCancel(ctx)
	r := &runningWorker{nc: nc, cancel: cancel, done: make(chan error, 1), reg: reg}
	go func() { r.done <- w.Run(rctx) }()
	return r
}

// post sends one request and returns the status and decoded 202 body.
func post(t *testing.T, url, contentType string, body []byte) (int, accepted) {
	t.Helper()
	resp, err := http.Post(url, contentType, bytes.NewReader(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	var a accepted
	if resp.StatusCode == http.StatusAccepted {
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&a))
	}
	return resp.StatusCode, a
}

type accepted struct {
	Accepted int      `json:"accepted"`
	IDs      []string `json:"ids"`
	Path     string   `json:"path"`
}

// bulk returns a JSON array of n events with ids prefix-0…, ~250 bytes each.
func bulk(prefix string, from, n int) []byte {
	var b bytes.Buffer
	b.WriteByte('[')
	for i := from; i < from+n; i++ {
		if i > from {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":"%s-%d","type":"load.test","data":{"seq":%d,"user":"u%05d","pad":"%0180d"}}`, prefix, i, i, i%10000, i)
	}
	b.WriteByte(']')
	return b.Bytes()
}

// waitRows waits until the sink holds want rows, and fails past deadline.
func (e *env) waitRows(want int64, deadline time.Duration) {
	e.t.Helper()
	var n int64
	require.Eventually(e.t, func() bool {
		var err error
		n, err = e.sink.Count(context.Background())
		return err == nil && n >= want
	}, deadline, 50*time.Millisecond, "rows: have %d, want %d", n, want)
	time.Sleep(300 * time.Millisecond) // nothing more may arrive
	n, err := e.sink.Count(context.Background())
	require.NoError(e.t, err)
	require.Equal(e.t, want, n)
}

// countingSink counts the events a worker wrote.
type countingSink struct {
	worker.Sink
	rows atomic.Int64
}

func (c *countingSink) Write(ctx context.Context, evs []event.Event) (int, error) {
	n, err := c.Sink.Write(ctx, evs)
	if err == nil {
		c.rows.Add(int64(len(evs)))
	}
	return n, err
}

// gateSink writes through, then holds every write until released: a worker
// using it stores rows but never gets to ack them.
type gateSink struct {
	worker.Sink
	once    sync.Once
	entered chan struct{}
	release chan struct{}
	rows    atomic.Int64
}

func newGateSink(s worker.Sink) *gateSink {
	return &gateSink{Sink: s, entered: make(chan struct{}), release: make(chan struct{})}
}

func (g *gateSink) Write(ctx context.Context, evs []event.Event) (int, error) {
	n, err := g.Sink.Write(ctx, evs)
	g.rows.Add(int64(len(evs)))
	g.once.Do(func() { close(g.entered) })
	select {
	case <-g.release:
	case <-ctx.Done():
	}
	return n, err
}

// value returns the value of the series name{label="val"} of a worker's registry.
func value(t testing.TB, w *runningWorker, name, label, val string) float64 {
	t.Helper()
	mfs, err := w.reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if label == "" {
				return m.GetGauge().GetValue() + m.GetCounter().GetValue()
			}
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == val {
					if c := m.GetCounter(); c != nil {
						return c.GetValue()
					}
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	t.Fatalf("no series %s{%s=%q}", name, label, val)
	return 0
}

// decodeBulk decodes a JSON body the way ingest does.
func decodeBulk(t testing.TB, body []byte) []event.Event {
	t.Helper()
	evs, derr := ingest.Decode(body, ingest.FormJSON, ingest.Limits{MaxEvents: 10000, MaxEventBytes: 1 << 20, MaxDepth: 32},
		time.Now(), func() string { return "x" })
	require.Nil(t, derr)
	return evs
}
