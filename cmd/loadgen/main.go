// Command loadgen load-tests Levee: it drives one scenario against a running
// ingest (run), checks the sink against the accepted ids (check), runs the
// whole before/after plan against child processes and writes its report
// (bench), measures the machine's ceilings (ceilings), and serves the no-op
// endpoint the HTTP ceiling is measured against (noop-server).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"regexp"
	"strconv"
	"strings"
	"syscall"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/levee-dev/levee/internal/loadgen"
)

const usage = `usage: loadgen <command> [flags]

commands:
  run          drive one scenario against a running ingest (-h for flags)
  check        count-check the sink against the result of a run
  bench        run the before/after scenarios against child processes; write a report
  ceilings     measure the no-op HTTP, JetStream publish and PostgreSQL COPY ceilings
  noop-server  serve a no-op POST /v1/events (used by ceilings)
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "loadgen:", strings.TrimPrefix(err.Error(), "loadgen: "))
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return flag.ErrHelp
	}
	if _, err := loadgen.RaiseNoFile(); err != nil {
		return err
	}
	log := newLogger()
	defer log.Sync() //nolint:errcheck
	fs := flag.NewFlagSet("loadgen "+args[0], flag.ContinueOnError)
	switch args[0] {
	case "run":
		return runOne(ctx, fs, args[1:], stdout, log)
	case "check":
		return check(ctx, fs, args[1:], stdout, log)
	case "bench":
		return bench(ctx, fs, args[1:], log)
	case "ceilings":
		return ceilings(ctx, fs, args[1:], stdout, log)
	case "noop-server":
		listen := fs.String("listen", "127.0.0.1:8090", "address to serve on")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		return loadgen.NewNoopServer(*listen, log).Run(ctx)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(os.Stderr, usage)
		return flag.ErrHelp
	}
	fmt.Fprint(os.Stderr, usage)
	return fmt.Errorf("unknown command %q", args[0])
}

func runOne(ctx context.Context, fs *flag.FlagSet, args []string, stdout io.Writer, log *zap.Logger) error {
	var f loadgen.RunFlags
	f.Register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	targets, err := f.Targets()
	if err != nil {
		return err
	}
	r := &loadgen.Run{Scenario: "run"}
	loadgen.Measure(ctx, r, f.Load, targets, f.Check(), log)
	if f.Out != "" {
		if err := loadgen.WriteJSONFile(f.Out, r); err != nil {
			return err
		}
	}
	if f.JSON {
		if err := loadgen.WriteJSON(stdout, r); err != nil {
			return err
		}
	} else {
		r.WriteText(stdout)
	}
	switch {
	case r.Error != "":
		return errors.New(r.Error)
	case r.Check != nil && !r.Check.OK:
		return errors.New("count check failed")
	}
	return nil
}

func check(ctx context.Context, fs *flag.FlagSet, args []string, stdout io.Writer, log *zap.Logger) error {
	var f loadgen.CheckFlags
	f.Register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	r, err := loadgen.ReadRun(f.Results)
	if err != nil {
		return err
	}
	res := r.Result
	chk := loadgen.NewChecker(loadgen.CheckConfig{Sink: f.Sink, Prefix: res.Load.IDPrefix, DrainTimeout: f.DrainTimeout}, log)
	out, err := chk.Check(ctx, loadgen.NewIDSetFromRanges(res.AcceptedIDs), loadgen.NewIDSetFromRanges(res.UnknownIDs), res.LastAccepted)
	if err != nil {
		return err
	}
	if f.JSON {
		if err := loadgen.WriteJSON(stdout, out); err != nil {
			return err
		}
	} else {
		out.WriteText(stdout)
	}
	if !out.OK {
		return errors.New("count check failed")
	}
	return nil
}

func bench(ctx context.Context, fs *flag.FlagSet, args []string, log *zap.Logger) error {
	var f loadgen.BenchFlags
	f.Register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := f.Resolve()
	if err != nil {
		return err
	}
	if cfg.Self, err = os.Executable(); err != nil {
		return fmt.Errorf("own executable: %w", err)
	}
	cfg.Command = commandLine(os.Args)
	b, err := loadgen.NewBench(cfg, log)
	if err != nil {
		return err
	}
	rep, runErr := b.Run(ctx)
	if err := loadgen.WriteReport(cfg.Out, rep); err != nil {
		return errors.Join(runErr, err)
	}
	log.Info("report written", zap.String("dir", cfg.Out))
	if runErr != nil {
		return runErr
	}
	if failed := rep.Failures(); len(failed) > 0 {
		return fmt.Errorf("%d run(s) failed: %s", len(failed), strings.Join(failed, "; "))
	}
	return nil
}

func ceilings(ctx context.Context, fs *flag.FlagSet, args []string, stdout io.Writer, log *zap.Logger) error {
	var f loadgen.CeilingFlags
	f.Register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := f.Resolve()
	if err != nil {
		return err
	}
	if cfg.Self, err = os.Executable(); err != nil {
		return fmt.Errorf("own executable: %w", err)
	}
	if cfg.Dir, err = os.MkdirTemp("", "loadgen-ceilings-"); err != nil {
		return fmt.Errorf("scratch dir: %w", err)
	}
	defer os.RemoveAll(cfg.Dir)
	c := loadgen.RunCeilings(ctx, cfg, log)
	if f.JSON {
		return loadgen.WriteJSON(stdout, c)
	}
	c.WriteText(stdout)
	return nil
}

// newLogger logs progress to stderr, for a person at a terminal.
func newLogger() *zap.Logger {
	enc := zap.NewProductionEncoderConfig()
	enc.EncodeTime = zapcore.TimeEncoderOfLayout("15:04:05.000")
	enc.EncodeLevel = zapcore.CapitalLevelEncoder
	core := zapcore.NewCore(zapcore.NewConsoleEncoder(enc), zapcore.Lock(os.Stderr), zap.InfoLevel)
	return zap.New(core)
}

// password matches the password of a URL's user info.
var password = regexp.MustCompile(`(://[^:/@\s]+:)[^@\s]+@`)

// commandLine quotes args for a shell, for the report, with URL passwords
// (a -pg-dsn) masked.
func commandLine(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		a = password.ReplaceAllString(a, "${1}***@")
		if a == "" || strings.ContainsAny(a, " \t\"'$\\*?;&|<>()") {
			a = strconv.Quote(a)
		}
		q[i] = a
	}
	return strings.Join(q, " ")
}
