package loadgen

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"
)

// benchTable is the PostgreSQL table the bench pipelines write to. It
// belongs to loadgen: each pipeline drops and recreates it.
const benchTable = "loadgen_events"

// PipelineConfig describes the services one bench run starts.
type PipelineConfig struct {
	BinDir       string
	Dir          string // working directory of the services: config, NATS store, SQLite file, logs
	Workers      int
	Sink         SinkConfig // Kind and PGDSN; the pipeline sets the path and table
	Overrides    []string   // "key=value" config overrides, passed to both binaries as -key=value
	ReadyTimeout time.Duration
	StopTimeout  time.Duration
	// StatementDelay, with a PostgreSQL sink, makes every INSERT statement
	// into the table wait this long (a statement trigger calling pg_sleep):
	// a slow or distant database, which costs a statement per request far
	// more than a statement per batch.
	StatementDelay time.Duration
}

// Pipeline is ingest (with its embedded NATS server) and N workers,
// running as child processes on free loopback ports.
type Pipeline struct {
	cfg          PipelineConfig
	Public       string // host:port of the ingest API
	IngestAdmin  string
	NATS         string
	WorkerAdmins []string
	ingest       *child
	workers      []*child
	log          *zap.Logger
}

// NewPipeline returns a pipeline for cfg; Start starts it.
func NewPipeline(cfg PipelineConfig, log *zap.Logger) *Pipeline {
	cfg.Workers = max(cfg.Workers, 1)
	if cfg.ReadyTimeout <= 0 {
		cfg.ReadyTimeout = 30 * time.Second
	}
	if cfg.StopTimeout <= 0 {
		cfg.StopTimeout = 60 * time.Second
	}
	if cfg.Sink.Kind == "" {
		cfg.Sink.Kind = SinkSQLite
	}
	if cfg.Sink.Kind == SinkSQLite {
		cfg.Sink.SQLitePath, cfg.Sink.Table = filepath.Join(cfg.Dir, "levee.db"), "events"
	} else {
		cfg.Sink.Table = benchTable
	}
	return &Pipeline{cfg: cfg, log: log.With(zap.String("component", "pipeline"))}
}

// Sink returns where the pipeline writes.
func (p *Pipeline) Sink() SinkConfig { return p.cfg.Sink }

// Targets returns the admin addresses and process ids to sample.
func (p *Pipeline) Targets() Targets {
	t := Targets{IngestAdmin: p.IngestAdmin, WorkerAdmins: p.WorkerAdmins}
	if p.ingest != nil {
		t.IngestPIDs = []int{p.ingest.cmd.Process.Pid}
	}
	for _, w := range p.workers {
		t.WorkerPIDs = append(t.WorkerPIDs, w.cmd.Process.Pid)
	}
	return t
}

// Start writes the config, starts ingest and the workers, and waits until
// each answers /readyz. On error, whatever started is stopped.
func (p *Pipeline) Start(ctx context.Context) error {
	if err := os.MkdirAll(p.cfg.Dir, 0o755); err != nil {
		return fmt.Errorf("loadgen: pipeline dir: %w", err)
	}
	ports, err := freePorts(3 + p.cfg.Workers)
	if err != nil {
		return err
	}
	p.Public, p.IngestAdmin, p.NATS, p.WorkerAdmins = ports[0], ports[1], ports[2], ports[3:]
	if p.cfg.Sink.Kind == SinkPostgres {
		if err := dropTable(ctx, p.cfg.Sink.PGDSN, benchTable); err != nil {
			return err
		}
	}
	conf := filepath.Join(p.cfg.Dir, "levee.yaml")
	if err := os.WriteFile(conf, []byte(p.yaml()), 0o644); err != nil {
		return fmt.Errorf("loadgen: pipeline config: %w", err)
	}
	args := append([]string{"-config", conf}, flagArgs(p.cfg.Overrides)...)
	p.ingest, err = p.startChild("ingest", args)
	if err == nil {
		err = waitReady(ctx, p.ingest, p.Public, p.cfg.ReadyTimeout)
	}
	for i := 0; err == nil && i < p.cfg.Workers; i++ {
		var w *child
		w, err = p.startChild(fmt.Sprintf("worker-%d", i+1), append(args, "-worker.admin_listen="+p.WorkerAdmins[i]))
		if w != nil {
			p.workers = append(p.workers, w)
		}
	}
	for i := 0; err == nil && i < len(p.workers); i++ {
		err = waitReady(ctx, p.workers[i], p.WorkerAdmins[i], p.cfg.ReadyTimeout)
	}
	if err == nil && p.cfg.Sink.Kind == SinkPostgres && p.cfg.StatementDelay > 0 {
		err = slowTable(ctx, p.cfg.Sink.PGDSN, benchTable, p.cfg.StatementDelay)
	}
	if err != nil {
		_ = p.Stop()
		return err
	}
	return nil
}

func (p *Pipeline) yaml() string {
	s := fmt.Sprintf(`# written by loadgen bench
ingest:
  listen: %q
  admin_listen: %q
nats:
  embedded:
    listen: %q
    store_dir: %q
sink:
  kind: %s
  table: %s
`, p.Public, p.IngestAdmin, p.NATS, filepath.Join(p.cfg.Dir, "nats"), p.cfg.Sink.Kind, p.cfg.Sink.Table)
	if p.cfg.Sink.Kind == SinkSQLite {
		s += fmt.Sprintf("  sqlite:\n    path: %q\n", p.cfg.Sink.SQLitePath)
	}
	return s
}

// flagArgs turns "key=value" overrides into -key=value flags.
func flagArgs(overrides []string) []string {
	out := make([]string, 0, len(overrides))
	for _, o := range overrides {
		out = append(out, "-"+strings.TrimPrefix(o, "-"))
	}
	return out
}

func (p *Pipeline) startChild(name string, args []string) (*child, error) {
	bin := filepath.Join(p.cfg.BinDir, strings.SplitN(name, "-", 2)[0])
	env := os.Environ()
	if p.cfg.Sink.Kind == SinkPostgres {
		// In the environment, not on the command line, to keep the password out of ps.
		env = append(env, "LEVEE_SINK__POSTGRES__DSN="+p.cfg.Sink.PGDSN)
	}
	c, err := startChild(name, bin, args, p.cfg.Dir, env)
	if err != nil {
		return nil, err
	}
	p.log.Debug("started", zap.String("process", name), zap.Int("pid", c.cmd.Process.Pid))
	return c, nil
}

// Stop sends SIGTERM to the workers (they flush and ack their last batch
// while the embedded NATS server still runs), then to ingest, and returns
// an error for each process that did not exit cleanly.
func (p *Pipeline) Stop() error {
	var errs []error
	ch := make(chan error, len(p.workers))
	for _, w := range p.workers {
		go func() { ch <- w.stop(p.cfg.StopTimeout) }()
	}
	for range p.workers {
		errs = append(errs, <-ch)
	}
	if p.ingest != nil {
		errs = append(errs, p.ingest.stop(p.cfg.StopTimeout))
	}
	p.workers, p.ingest = nil, nil
	return errors.Join(errs...)
}

// child is a service process with its output in a log file.
type child struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

func startChild(name, bin string, args []string, dir string, env []string) (*child, error) {
	logPath := filepath.Join(dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("loadgen: %s log: %w", name, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = dir, env, f, f
	// Own process group: a Ctrl-C reaches loadgen only, which stops the
	// services in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("loadgen: start %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		f.Close()
		close(c.done)
	}()
	return c, nil
}

// exit describes how the process ended; call it after done is closed.
func (c *child) exit() string {
	if c.err == nil {
		return "exit status 0"
	}
	return c.err.Error()
}

// stop sends SIGTERM and waits for a clean exit; past timeout it kills.
func (c *child) stop(timeout time.Duration) error {
	select {
	case <-c.done:
		return fmt.Errorf("loadgen: %s exited before SIGTERM: %s (log %s)", c.name, c.exit(), c.log)
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
		if c.err != nil {
			return fmt.Errorf("loadgen: %s exit after SIGTERM: %w (log %s)", c.name, c.err, c.log)
		}
		return nil
	case <-time.After(timeout):
		_ = c.cmd.Process.Kill()
		<-c.done
		return fmt.Errorf("loadgen: %s still running %s after SIGTERM; killed (log %s)", c.name, timeout, c.log)
	}
}

// waitReady polls http://addr/readyz until it answers 200.
func waitReady(ctx context.Context, c *child, addr string, timeout time.Duration) error {
	hc := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(timeout)
	for {
		resp, err := hc.Get("http://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-c.done:
			return fmt.Errorf("loadgen: %s exited while starting: %s (log %s)", c.name, c.exit(), c.log)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("loadgen: %s not ready at %s within %s (log %s)", c.name, addr, timeout, c.log)
		}
	}
}

// freePorts returns n distinct free loopback addresses.
func freePorts(n int) ([]string, error) {
	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()
	out := make([]string, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("loadgen: free port: %w", err)
		}
		lns = append(lns, l)
		out = append(out, l.Addr().String())
	}
	return out, nil
}

// slowTable adds a statement trigger that delays every INSERT into table.
// The workers have created the table by the time they are ready.
func slowTable(ctx context.Context, dsn, table string, d time.Duration) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("loadgen: connect postgres: %w", err)
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, fmt.Sprintf(`
		CREATE OR REPLACE FUNCTION loadgen_statement_delay() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN PERFORM pg_sleep(%f); RETURN NULL; END $$;
		CREATE TRIGGER loadgen_statement_delay BEFORE INSERT ON %s
		FOR EACH STATEMENT EXECUTE FUNCTION loadgen_statement_delay();`, d.Seconds(), table))
	if err != nil {
		return fmt.Errorf("loadgen: slow down %s: %w", table, err)
	}
	return nil
}

func dropTable(ctx context.Context, dsn, table string) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("loadgen: connect postgres: %w", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "DROP TABLE IF EXISTS "+table); err != nil {
		return fmt.Errorf("loadgen: drop %s: %w", table, err)
	}
	return nil
}

var optimizationFlag = regexp.MustCompile(`-optimization\.([a-z_]+)`)

// OptimizationSwitches returns the optimization.* keys the ingest binary
// knows, besides "enabled", from its -h output.
func OptimizationSwitches(ctx context.Context, binDir string) ([]string, error) {
	out, err := exec.CommandContext(ctx, filepath.Join(binDir, "ingest"), "-h").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("loadgen: ingest -h: %w", err)
	}
	seen := map[string]bool{}
	for _, m := range optimizationFlag.FindAllStringSubmatch(string(out), -1) {
		if m[1] != "enabled" {
			seen[m[1]] = true
		}
	}
	keys := make([]string, 0, len(seen))
	for k := range seen {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys, nil
}
