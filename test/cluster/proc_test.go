package cluster

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// proc is one long-lived process of the topology: a binary with fixed
// arguments that can be started, killed and started again (each start is a
// new incarnation, appending to the same log file).
type proc struct {
	t       *testing.T
	name    string // e.g. "worker-2", also the log file's name
	bin     string
	args    []string
	logPath string

	mu          sync.Mutex
	cmd         *exec.Cmd
	done        chan struct{} // closed when the current incarnation has exited
	incarnation int
}

func newProc(t *testing.T, logDir, name, bin string, args ...string) *proc {
	p := &proc{t: t, name: name, bin: bin, args: args, logPath: filepath.Join(logDir, name+".log")}
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("--- %s: last lines of %s ---\n%s", name, p.logPath, tail(p.logPath, 25))
		}
	})
	return p
}

// start starts a new incarnation. The child gets SIGKILL if the test binary
// dies (a timeout panic skips the cleanups).
func (p *proc) start() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	require.True(p.t, p.cmd == nil || p.exited(), "%s already running", p.name)
	log, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	require.NoError(p.t, err)
	fmt.Fprintf(log, "=== %s: start #%d: %s %s\n", time.Now().Format(time.RFC3339Nano), p.incarnation+1, p.bin, strings.Join(p.args, " "))
	cmd := exec.Command(filepath.Join(binDir, p.bin), p.args...)
	cmd.Env = childEnv()
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	require.NoError(p.t, cmd.Start(), p.name)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); log.Close(); close(done) }()
	p.cmd, p.done = cmd, done
	p.incarnation++
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// current returns the incarnation number and whether it is running.
func (p *proc) current() (int, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.incarnation, p.cmd != nil && !p.exited()
}

// kill9 sends SIGKILL and waits for the process to be gone.
func (p *proc) kill9() {
	p.t.Helper()
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	require.NotNil(p.t, cmd, p.name)
	require.NoError(p.t, cmd.Process.Kill(), p.name)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		p.t.Fatalf("%s did not die within 10s of SIGKILL", p.name)
	}
}

// stop sends sig and waits up to timeout for a clean exit (exit status 0).
func (p *proc) stop(sig syscall.Signal, timeout time.Duration) error {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil || p.exitedChan(done) {
		return nil
	}
	if err := cmd.Process.Signal(sig); err != nil {
		return err
	}
	select {
	case <-done:
		if !cmd.ProcessState.Success() {
			return fmt.Errorf("%s: %s after %v", p.name, cmd.ProcessState, sig)
		}
		return nil
	case <-time.After(timeout):
		_ = cmd.Process.Kill()
		<-done
		return fmt.Errorf("%s did not exit within %v of %v", p.name, timeout, sig)
	}
}

func (p *proc) exitedChan(done chan struct{}) bool {
	select {
	case <-done:
		return true
	default:
		return false
	}
}

// kill is the cleanup: SIGKILL whatever still runs.
func (p *proc) kill() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil || p.exitedChan(done) {
		return
	}
	_ = cmd.Process.Kill()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
	}
}

// childEnv is this process's environment without the variables of the
// tests themselves (LEVEE_CLUSTER_*, LEVEE_TEST_*): the binaries read every
// LEVEE_* variable as a config key and refuse unknown ones.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "LEVEE_CLUSTER_") && !strings.HasPrefix(kv, "LEVEE_TEST_") {
			env = append(env, kv)
		}
	}
	return env
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// freePorts returns n distinct free loopback addresses. They are free when
// returned; the processes bind them a moment later.
func freePorts(t *testing.T, n int) []string {
	t.Helper()
	addrs := make([]string, 0, n)
	var ls []net.Listener
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		ls = append(ls, l)
		addrs = append(addrs, l.Addr().String())
	}
	for _, l := range ls {
		l.Close()
	}
	return addrs
}

var probe = &http.Client{Timeout: 2 * time.Second}

// ready reports whether GET http://addr/path answers 200.
func ready(ctx context.Context, addr, path string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return false
	}
	resp, err := probe.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// waitReady waits up to d for addr+path to answer 200.
func waitReady(t *testing.T, addr, path string, d time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	require.Eventually(t, func() bool { return ready(context.Background(), addr, path) },
		d, 50*time.Millisecond, "http://%s%s never answered 200 within %v", addr, path, d)
	return time.Since(start)
}
