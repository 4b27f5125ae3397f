// Command ingest serves Levee's HTTP ingest API and publishes accepted events
// to JetStream. With nats.url empty it runs an embedded NATS server.
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/run"
	"go.uber.org/zap"

	"github.com/levee-dev/levee/internal/backpressure"
	"github.com/levee-dev/levee/internal/config"
	"github.com/levee-dev/levee/internal/degrade"
	"github.com/levee-dev/levee/internal/ingest"
	"github.com/levee-dev/levee/internal/queue"
	"github.com/levee-dev/levee/internal/sink"
	"github.com/levee-dev/levee/internal/telemetry"
)

func main() {
	if err := runMain(os.Args[1:], os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "ingest:", err)
		os.Exit(1)
	}
}

func runMain(args []string, stdin io.Reader, stdout io.Writer) error {
	fs := flag.NewFlagSet("ingest", flag.ContinueOnError)
	hashKey := fs.Bool("hash-key", false, "read an API key from stdin, print its SHA-256 digest for ingest.auth.api_keys, and exit")
	src, err := config.ParseFlags(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if *hashKey {
		key, _ := bufio.NewReader(stdin).ReadString('\n')
		key = strings.TrimRight(key, "\r\n")
		if key == "" {
			return errors.New("-hash-key: no key on stdin")
		}
		_, err := fmt.Fprintln(stdout, ingest.HashKey(key))
		return err
	}
	cfg, err := config.Load(src)
	if err != nil {
		return err
	}
	return serve(src, cfg)
}

func serve(src config.Source, cfg *config.Config) error {
	logging, err := telemetry.NewLogging(cfg.Log, "ingest")
	if err != nil {
		return err
	}
	log := logging.Logger
	defer log.Sync() //nolint:errcheck
	uuid.EnableRandPool()
	reg := telemetry.NewRegistry("ingest")
	watcher, err := config.NewWatcher(src, cfg, log, reg)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	var tlsCfg *tls.Config
	if cfg.Ingest.TLS.Enabled() {
		if tlsCfg, err = serverTLS(cfg.Ingest.TLS); err != nil {
			return err
		}
	}
	publicLn, err := telemetry.Listen("ingest.listen", cfg.Ingest.Listen)
	if err != nil {
		return err
	}
	if tlsCfg != nil {
		publicLn = tls.NewListener(publicLn, tlsCfg)
	}
	adminLn, err := telemetry.Listen("ingest.admin_listen", cfg.Ingest.AdminListen)
	if err != nil {
		publicLn.Close()
		return err
	}
	warnIfOpen(log, cfg)

	if cfg.NATS.URL == "" {
		ns, err := queue.StartEmbedded(cfg.NATS, log)
		if err != nil {
			return err
		}
		log.Info("embedded NATS server started", zap.String("listen", cfg.NATS.Embedded.Listen),
			zap.String("store_dir", cfg.NATS.Embedded.StoreDir), zap.String("sync_interval", cfg.NATS.Embedded.SyncInterval))
		defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
	}
	nc, err := queue.Connect(ctx, cfg.NATS, "levee-ingest", log)
	if err != nil {
		return err
	}
	defer queue.Drain(nc, 10*time.Second)
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncTimeout(cfg.Queue.AckTimeout),
		jetstream.WithPublishAsyncMaxPending(cfg.Queue.MaxPending))
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	err = telemetry.Retry(ctx, log, "provision streams", func(ctx context.Context) error {
		return queue.EnsureStreams(ctx, js, cfg.NATS)
	})
	if err != nil {
		return err
	}
	pub, err := queue.NewPublisher(js, cfg.NATS.Stream.SubjectsPrefix, cfg.Queue.Pack.Lanes, queue.SettingsFrom(cfg), log, reg)
	if err != nil {
		return err
	}
	direct := ingest.NewLazyWriter(func(ctx context.Context) (ingest.WriteCloser, error) {
		return sink.Open(ctx, cfg.Sink)
	})
	defer direct.Close()
	gate, err := backpressure.NewLimiter("admission", backpressure.IngestConfig(cfg), reg)
	if err != nil {
		return err
	}
	spool, err := degrade.OpenSpool(degrade.SpoolOptionsFrom(cfg), log, reg)
	if err != nil {
		return err
	}
	modes, err := degrade.NewModes(spool, degrade.ModeSettingsFrom(cfg), log, reg)
	if err != nil {
		return err
	}
	replayer, err := degrade.NewReplayer(spool, pub, gate, modes, degrade.ReplaySettingsFrom(cfg), log, reg)
	if err != nil {
		return err
	}
	h, err := ingest.NewHandler(ingest.Deps{
		Publisher: pub, Gate: gate, Direct: direct, Spool: spool, Modes: modes, NewID: newID,
	}, ingest.SettingsFrom(cfg), log, reg)
	if err != nil {
		return err
	}
	watcher.Subscribe(func(c *config.Config) {
		pub.Apply(queue.SettingsFrom(c))
		gate.Configure(backpressure.IngestConfig(c))
		modes.Apply(degrade.ModeSettingsFrom(c))
		replayer.Apply(degrade.ReplaySettingsFrom(c))
		h.Apply(ingest.SettingsFrom(c))
		logging.Apply(c.Log)
	})

	var draining atomic.Bool
	ready := func(ctx context.Context) error {
		switch {
		case draining.Load():
			return errors.New("draining")
		case nc.Status() != nats.CONNECTED:
			return fmt.Errorf("nats: %s", nc.Status())
		}
		_, err := js.Stream(ctx, cfg.NATS.Stream.Name)
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/v1/events", h)
	mux.HandleFunc("GET /healthz", telemetry.Healthz)
	mux.HandleFunc("GET /readyz", telemetry.Readyz(ready))
	public := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: cfg.Ingest.HTTP.ReadHeaderTimeout,
		ReadTimeout:       cfg.Ingest.HTTP.ReadTimeout,
		WriteTimeout:      cfg.Ingest.HTTP.WriteTimeout,
		IdleTimeout:       cfg.Ingest.HTTP.IdleTimeout,
		MaxHeaderBytes:    cfg.Ingest.HTTP.MaxHeaderBytes,
		ErrorLog:          zap.NewStdLog(log.With(zap.String("component", "http"))),
	}
	admin := telemetry.AdminServer(telemetry.AdminHandler(reg, ready))

	// The spool writer and the replayer outlive the HTTP servers: requests
	// still being answered during the drain may need the spool.
	spoolCtx, stopSpool := context.WithCancel(context.Background())
	replayCtx, stopReplay := context.WithCancel(context.Background())
	var background sync.WaitGroup
	background.Go(func() { _ = spool.Run(spoolCtx) })
	var replaying sync.WaitGroup
	replaying.Go(func() { _ = replayer.Run(replayCtx) })
	if n, b := spool.Len(); n > 0 {
		log.Info("spool holds records from before; replaying them", zap.Int64("records", n), zap.Int64("bytes", b))
	}

	var g run.Group
	g.Add(run.SignalHandler(ctx, os.Interrupt, syscall.SIGTERM))
	g.Add(func() error { return logging.Run(ctx) }, func(error) { cancel() })
	summary := telemetry.NewSummary(reg, log, cfg.Log.SummaryInterval)
	g.Add(func() error { return summary.Run(ctx) }, func(error) { cancel() })
	g.Add(func() error { return modes.Run(ctx) }, func(error) { cancel() })
	g.Add(func() error {
		return telemetry.Serve(ctx, public, publicLn, cfg.Ingest.ShutdownTimeout, log)
	}, func(error) { draining.Store(true); cancel() })
	g.Add(func() error {
		return telemetry.Serve(ctx, admin, adminLn, time.Second, log)
	}, func(error) { cancel() })
	g.Add(func() error { return watcher.Run(ctx, cfg.Reload.Interval) }, func(error) { cancel() })
	log.Info("ingest listening", zap.String("listen", publicLn.Addr().String()), zap.Bool("tls", tlsCfg != nil),
		zap.String("admin", adminLn.Addr().String()), zap.String("nats", queue.URL(cfg.NATS)),
		zap.Bool("optimization", cfg.Optimization.Enabled), zap.Float64("rate_limit", cfg.Ingest.Auth.RateLimit))
	err = g.Run()
	if errors.Is(err, run.ErrSignal) {
		log.Info("shutting down", zap.String("reason", err.Error()))
		err = nil
	}
	// Every in-flight request has been answered. Stop replaying, wait for
	// publishes that outlived their request, then sync and close the spool;
	// the connection is drained last (deferred).
	stopReplay()
	replaying.Wait()
	cctx, ccancel := context.WithTimeout(context.Background(), cfg.Ingest.ShutdownTimeout)
	defer ccancel()
	if cerr := pub.Close(cctx); cerr != nil {
		log.Warn("publishes still in flight at shutdown", zap.Error(cerr))
	}
	stopSpool()
	background.Wait()
	spool.Close()
	return err
}

// serverTLS loads the public listener's certificate. TLS 1.2 is the
// minimum. Only HTTP/1.1 is offered: the ingest.http.* timeouts that cut
// off slow clients are HTTP/1.1's.
func serverTLS(c config.ServerTLS) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("ingest.tls: load cert_file and key_file: %w", err)
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		NextProtos:   []string{"http/1.1"},
	}, nil
}

// newID returns a UUIDv7: unique, and sortable by creation time.
func newID() string { return uuid.Must(uuid.NewV7()).String() }

// warnIfOpen warns loudly when the API accepts requests without a key on an
// address other hosts can reach.
func warnIfOpen(log *zap.Logger, cfg *config.Config) {
	if len(cfg.Ingest.Auth.APIKeys) > 0 {
		return
	}
	host, _, _ := net.SplitHostPort(cfg.Ingest.Listen)
	if ip := net.ParseIP(host); host == "localhost" || (ip != nil && ip.IsLoopback()) {
		log.Info("API key auth is off (no ingest.auth.api_keys); listening on loopback only")
		return
	}
	log.Warn("API KEY AUTH IS OFF and ingest listens on a non-loopback address: anyone who can reach " +
		cfg.Ingest.Listen + " can post events. Set ingest.auth.api_keys.")
}
