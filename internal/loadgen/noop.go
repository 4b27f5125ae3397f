package loadgen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"go.uber.org/zap"
)

// NoopServer answers POST /v1/events after reading the body and checking
// that it looks like JSON, and does nothing else: the ceiling of HTTP on
// this machine for the generator's traffic.
type NoopServer struct {
	listen string
	log    *zap.Logger
}

// NewNoopServer returns a server for listen; Run serves.
func NewNoopServer(listen string, log *zap.Logger) *NoopServer {
	return &NoopServer{listen: listen, log: log.With(zap.String("component", "noop"))}
}

// Run serves until ctx ends, then shuts down within a second.
func (s *NoopServer) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.listen)
	if err != nil {
		return fmt.Errorf("loadgen: noop listen: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/events", noopEvents)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 120 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	s.log.Info("noop server listening", zap.String("listen", ln.Addr().String()))
	select {
	case err := <-errc:
		return fmt.Errorf("loadgen: noop serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("loadgen: noop serve: %w", err)
	}
	return nil
}

func noopEvents(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 8<<20))
	body = bytes.TrimSpace(body)
	if err != nil || len(body) < 2 || !(body[0] == '{' && body[len(body)-1] == '}' || body[0] == '[' && body[len(body)-1] == ']') {
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"error":{"code":"invalid_json","message":"not a JSON object or array"}}` + "\n"))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	_, _ = w.Write([]byte(`{"accepted":0,"ids":[],"path":"noop"}` + "\n"))
}

// NoopCeiling is the closed-loop rate against the no-op server.
type NoopCeiling struct {
	Clients      int     `json:"clients"`
	ReqPerSec    float64 `json:"requests_per_s"`
	EventsPerSec float64 `json:"events_per_s"`
	P99          float64 `json:"p99_ms"`
	ErrorRate    float64 `json:"error_rate"`
}

// NoopCeilings starts "self noop-server" as a child process (so that it
// does not share the generator's process) and runs the closed-loop
// generator against it once per concurrency, clients[i] for durs[i].
func NoopCeilings(ctx context.Context, self, dir string, clients []int, durs []time.Duration, events, size int, log *zap.Logger) ([]NoopCeiling, error) {
	ports, err := freePorts(1)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("loadgen: noop dir: %w", err)
	}
	c, err := startChild("noop-server", self, []string{"noop-server", "-listen", ports[0]}, dir, os.Environ())
	if err != nil {
		return nil, err
	}
	defer c.stop(10 * time.Second) //nolint:errcheck // a scratch server
	if err := waitHealthy(ctx, c, ports[0]); err != nil {
		return nil, err
	}
	var out []NoopCeiling
	for i, n := range clients {
		g, err := NewGenerator(Load{Target: "http://" + ports[0], Mode: ModeClosed, Clients: n, Duration: durs[i],
			Events: events, Size: size, IDPrefix: "noop"}, log)
		if err != nil {
			return nil, err
		}
		res, err := g.Run(ctx)
		if err != nil {
			return nil, err
		}
		out = append(out, NoopCeiling{Clients: n, ReqPerSec: res.AcceptedReqPerSec, EventsPerSec: res.EventsPerSec,
			P99: res.Latency.P99, ErrorRate: res.ErrorRate})
	}
	return out, nil
}

func waitHealthy(ctx context.Context, c *child, addr string) error {
	hc := &http.Client{Timeout: time.Second}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		if resp, err := hc.Get("http://" + addr + "/healthz"); err == nil {
			resp.Body.Close()
			return nil
		}
		select {
		case <-c.done:
			return fmt.Errorf("loadgen: noop-server exited: %s (log %s)", c.exit(), c.log)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("loadgen: noop-server not healthy at %s", addr)
}
