// Package pgtest starts a throwaway PostgreSQL server for tests: initdb in a
// temporary directory, postgres on a free loopback port, removed at the end.
// With PGTEST_DSN set, that server is used instead (the name avoids the
// LEVEE_ prefix, which Levee's binaries read as configuration). Each caller gets
// a fresh database.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Server is a running PostgreSQL server.
type Server struct {
	Port    int
	Dir     string
	Admin   string // DSN of the "postgres" database
	cmd     *exec.Cmd
	cred    *syscall.Credential
	binDir  string
	stopped bool
	mu      sync.Mutex
}

var (
	shared    *Server
	sharedErr error
	once      sync.Once
	dbSeq     atomic.Int64
)

// DSN returns the DSN of a new, empty database on the package's shared
// server, started on first use. The test fails if PostgreSQL cannot run.
func DSN(t testing.TB) string {
	t.Helper()
	if dsn := os.Getenv("PGTEST_DSN"); dsn != "" {
		return newDatabase(t, dsn)
	}
	once.Do(func() { shared, sharedErr = Start() })
	if sharedErr != nil {
		t.Fatalf("pgtest: %v", sharedErr)
	}
	return newDatabase(t, shared.Admin)
}

// Shared returns the package's shared server, or nil if none was started.
func Shared() *Server { return shared }

// Main runs the tests of a package and stops the shared server afterwards.
// Use it from TestMain: os.Exit(pgtest.Main(m)).
func Main(m interface{ Run() int }) int {
	code := m.Run()
	if shared != nil {
		shared.Stop()
	}
	return code
}

func newDatabase(t testing.TB, admin string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatalf("pgtest: connect: %v", err)
	}
	defer conn.Close(ctx)
	name := fmt.Sprintf("levee_test_%d_%d", os.Getpid(), dbSeq.Add(1))
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("pgtest: create database: %v", err)
	}
	cfg, err := pgx.ParseConfig(admin)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return fmt.Sprintf("postgres://%s@%s:%d/%s?sslmode=disable", cfg.User, cfg.Host, cfg.Port, name)
}

// Database returns the DSN of a new, empty database on s.
func (s *Server) Database(t testing.TB) string { return newDatabase(t, s.Admin) }

// binDir finds the directory of initdb and postgres.
func binDir() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if _, err := exec.LookPath("postgres"); err == nil {
			return filepath.Dir(p), nil
		}
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(matches) == 0 {
		return "", errors.New("PostgreSQL server binaries not found: run `make test` (it installs them) or apt-get install postgresql")
	}
	return filepath.Dir(matches[len(matches)-1]), nil
}

// Start initialises and starts a new server. PostgreSQL refuses to run as
// root, so under root it runs as the postgres user.
func Start() (*Server, error) {
	bin, err := binDir()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "levee-pg-")
	if err != nil {
		return nil, err
	}
	s := &Server{Dir: dir, binDir: bin}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("running as root needs the postgres user: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			return nil, err
		}
	}
	data := filepath.Join(dir, "data")
	out, err := s.command("initdb", "-D", data, "-U", "levee", "--auth=trust", "-E", "UTF8", "--no-sync", "--no-instructions").CombinedOutput()
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("initdb: %w: %s", err, out)
	}
	if err := s.start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return s, nil
}

func (s *Server) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(s.binDir, name), args...)
	cmd.Dir = s.Dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: s.cred}
	return cmd
}

func (s *Server) start() error {
	if s.Port == 0 {
		port, err := freePort()
		if err != nil {
			return err
		}
		s.Port = port
	}
	port := s.Port
	log, err := os.OpenFile(filepath.Join(s.Dir, "postgres.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	s.cmd = s.command("postgres", "-D", filepath.Join(s.Dir, "data"), "-p", strconv.Itoa(port),
		"-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="+s.Dir,
		"-c", "max_connections=200", "-c", "fsync=off", "-c", "synchronous_commit=off",
		"-c", "full_page_writes=off", "-c", "shared_buffers=128MB")
	s.cmd.Stdout, s.cmd.Stderr = log, log
	if err := s.cmd.Start(); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	s.Admin = fmt.Sprintf("postgres://levee@127.0.0.1:%d/postgres?sslmode=disable", port)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		conn, err := pgx.Connect(ctx, s.Admin)
		cancel()
		if err == nil {
			conn.Close(context.Background())
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.Stop()
	b, _ := os.ReadFile(filepath.Join(s.Dir, "postgres.log"))
	return fmt.Errorf("postgres did not accept connections within 30s: %s", b)
}

// Halt shuts the server down (fast shutdown), keeping its data, as a
// stopped database would be. Restart brings it back on the same port.
func (s *Server) Halt() error {
	if err := s.cmd.Process.Signal(syscall.SIGINT); err != nil {
		return err
	}
	_ = s.cmd.Wait()
	return nil
}

// Restart starts a halted server again on the same port and data.
func (s *Server) Restart() error { return s.start() }

// Pause stops the server (SIGSTOP), as a hung database would be: the
// postmaster and every backend, so that open connections hang too.
func (s *Server) Pause() error { return s.signalAll(syscall.SIGSTOP) }

// Resume continues a paused server.
func (s *Server) Resume() error { return s.signalAll(syscall.SIGCONT) }

// signalAll signals the postmaster and its children (each backend is its
// own process, in its own process group).
func (s *Server) signalAll(sig syscall.Signal) error {
	pid := s.cmd.Process.Pid
	if err := syscall.Kill(pid, sig); err != nil {
		return err
	}
	for _, c := range children(pid) {
		_ = syscall.Kill(c, sig)
	}
	return nil
}

// children returns the processes whose parent is pid, from /proc.
func children(pid int) []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so split after ')'.
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			out = append(out, n)
		}
	}
	return out
}

// Stop shuts the server down and removes its files.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return
	}
	s.stopped = true
	if s.cmd != nil && s.cmd.Process != nil && s.cmd.ProcessState == nil {
		_ = s.signalAll(syscall.SIGCONT)
		_ = s.cmd.Process.Signal(syscall.SIGQUIT) // immediate shutdown
		done := make(chan struct{})
		go func() { _ = s.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = s.cmd.Process.Kill()
		}
	}
	os.RemoveAll(s.Dir)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
