// Command worker consumes Levee's event stream and writes the events to the
// sink in batches. Run as many as needed: they share one durable consumer.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/run"
	"go.uber.org/zap"

	"github.com/levee-dev/levee/internal/config"
	"github.com/levee-dev/levee/internal/queue"
	"github.com/levee-dev/levee/internal/sink"
	"github.com/levee-dev/levee/internal/telemetry"
	"github.com/levee-dev/levee/internal/worker"
)

func main() {
	if err := runMain(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		os.Exit(1)
	}
}

func runMain(args []string) error {
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	src, err := config.ParseFlags(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	cfg, err := config.Load(src)
	if err != nil {
		return err
	}
	return serve(src, cfg)
}

func serve(src config.Source, cfg *config.Config) error {
	logging, err := telemetry.NewLogging(cfg.Log, "worker")
	if err != nil {
		return err
	}
	log := logging.Logger
	defer log.Sync() //nolint:errcheck
	reg := telemetry.NewRegistry("worker")
	watcher, err := config.NewWatcher(src, cfg, log, reg)
	if err != nil {
		return err
	}
	adminLn, err := telemetry.Listen("worker.admin_listen", cfg.Worker.AdminListen)
	if err != nil {
		return err
	}

	// Until the pipeline runs, a signal only aborts the waits below.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	startup, stopStartup := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stopStartup()

	nc, err := queue.Connect(startup, cfg.NATS, "levee-worker", log)
	if err != nil {
		return err
	}
	defer queue.Drain(nc, 10*time.Second)
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	var cons jetstream.Consumer
	err = telemetry.Retry(startup, log, "provision stream and consumer", func(ctx context.Context) error {
		if err := queue.EnsureStreams(ctx, js, cfg.NATS); err != nil {
			return err
		}
		cons, err = queue.EnsureConsumer(ctx, js, *cfg)
		return err
	})
	if err != nil {
		return err
	}
	var sk sink.Sink
	err = telemetry.Retry(startup, log, "open sink", func(ctx context.Context) error {
		sk, err = sink.Open(ctx, cfg.Sink)
		return err
	})
	if err != nil {
		return err
	}
	defer sk.Close()
	stopStartup()

	w, err := worker.New(cons, js, sk, worker.SettingsFrom(cfg), worker.Options{
		AckWait:         cfg.Worker.AckWait,
		DLQSubject:      cfg.NATS.DLQ.Subject,
		ShutdownTimeout: cfg.Worker.ShutdownTimeout,
		WriteTimeout:    cfg.Worker.WriteTimeout,
		MaxAckPending:   cfg.Worker.MaxAckPending,
		Stream:          cfg.NATS.Stream.Name,
	}, log, reg)
	if err != nil {
		return err
	}
	watcher.Subscribe(func(c *config.Config) {
		w.Apply(worker.SettingsFrom(c))
		logging.Apply(c.Log)
	})
	ready := func(ctx context.Context) error {
		if s := nc.Status(); s != nats.CONNECTED {
			return fmt.Errorf("nats: %s", s)
		}
		if _, err := cons.Info(ctx); err != nil {
			return fmt.Errorf("consumer: %w", err)
		}
		if err := sk.Ping(ctx); err != nil {
			return fmt.Errorf("sink: %w", err)
		}
		return nil
	}
	admin := telemetry.AdminServer(telemetry.AdminHandler(reg, ready))

	var g run.Group
	g.Add(run.SignalHandler(ctx, os.Interrupt, syscall.SIGTERM))
	g.Add(func() error { return logging.Run(ctx) }, func(error) { cancel() })
	summary := telemetry.NewSummary(reg, log, cfg.Log.SummaryInterval)
	g.Add(func() error { return summary.Run(ctx) }, func(error) { cancel() })
	g.Add(func() error { return w.Run(ctx) }, func(error) { cancel() })
	g.Add(func() error { return telemetry.Serve(ctx, admin, adminLn, time.Second, log) }, func(error) { cancel() })
	g.Add(func() error { return watcher.Run(ctx, cfg.Reload.Interval) }, func(error) { cancel() })
	log.Info("worker running", zap.String("admin", adminLn.Addr().String()), zap.String("nats", queue.URL(cfg.NATS)),
		zap.String("consumer", cfg.Worker.Consumer), zap.String("sink", cfg.Sink.Kind))
	err = g.Run()
	if errors.Is(err, run.ErrSignal) {
		log.Info("shutting down", zap.String("reason", err.Error()))
		return nil
	}
	return err
}
