package queue

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"github.com/levee-dev/levee/internal/config"
)

// StartEmbedded starts an in-process NATS server with JetStream, listening on
// cfg.Embedded.Listen so that worker processes can connect to it. The caller
// stops it with Shutdown and WaitForShutdown.
func StartEmbedded(cfg config.NATS, log *zap.Logger) (*server.Server, error) {
	host, portStr, err := net.SplitHostPort(cfg.Embedded.Listen)
	if err != nil {
		return nil, fmt.Errorf("queue: nats.embedded.listen: %w", err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("queue: nats.embedded.listen: %w", err)
	}
	opts := &server.Options{
		ServerName: "levee-embedded",
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   cfg.Embedded.StoreDir,
		NoSigs:     true,
		// The embedded server only serves this machine; a client that does
		// not answer pings within 2 × 20 s is dropped.
		PingInterval: 20 * time.Second,
		MaxPingsOut:  2,
	}
	if cfg.Embedded.SyncInterval == "always" {
		opts.SyncAlways = true
	} else if d, err := time.ParseDuration(cfg.Embedded.SyncInterval); err == nil {
		opts.SyncInterval = d
	}
	if cfg.User != "" {
		opts.Username, opts.Password = cfg.User, cfg.Password
	}
	if cfg.Token != "" {
		opts.Authorization = cfg.Token
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("queue: embedded server: %w", err)
	}
	s.SetLoggerV2(serverLogger{log.With(zap.String("component", "nats-server"))}, false, false, false)
	s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("queue: embedded server on %s not ready after 30s", cfg.Embedded.Listen)
	}
	return s, nil
}

// serverLogger routes the embedded server's log lines to zap.
type serverLogger struct{ l *zap.Logger }

func (s serverLogger) Noticef(format string, v ...any) { s.l.Debug(fmt.Sprintf(format, v...)) }
func (s serverLogger) Warnf(format string, v ...any)   { s.l.Warn(fmt.Sprintf(format, v...)) }
func (s serverLogger) Fatalf(format string, v ...any)  { s.l.Error(fmt.Sprintf(format, v...)) }
func (s serverLogger) Errorf(format string, v ...any)  { s.l.Error(fmt.Sprintf(format, v...)) }
func (s serverLogger) Debugf(format string, v ...any)  { s.l.Debug(fmt.Sprintf(format, v...)) }
func (s serverLogger) Tracef(format string, v ...any)  {}

// URL returns the server URL of cfg for logs: a password or token in it
// is replaced.
func URL(cfg config.NATS) string { return redactURL(serverURL(cfg)) }

// serverURL returns the server URL a client connects to for cfg.
func serverURL(cfg config.NATS) string {
	if cfg.URL != "" {
		return cfg.URL
	}
	return "nats://" + cfg.Embedded.Listen
}

// Connect connects to NATS with the credentials and TLS options of cfg,
// retrying while the server cannot be reached until ctx ends. An
// authentication or TLS error fails at once: retrying would not fix it.
// After the first connection, the client reconnects forever.
func Connect(ctx context.Context, cfg config.NATS, name string, log *zap.Logger) (*nats.Conn, error) {
	log = log.With(zap.String("component", "nats"))
	opts, err := clientOptions(cfg, name, log)
	if err != nil {
		return nil, err
	}
	url := serverURL(cfg)
	delay := 100 * time.Millisecond
	for {
		nc, err := nats.Connect(url, opts...)
		if err == nil {
			return nc, nil
		}
		if permanent(err) {
			return nil, fmt.Errorf("queue: connect to %s: %w", redactURL(url), err)
		}
		log.Warn("nats not reachable yet; retrying", zap.String("url", redactURL(url)), zap.Error(err))
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("queue: connect to %s: %w (last error: %v)", redactURL(url), ctx.Err(), err)
		case <-time.After(delay):
		}
		delay = min(2*delay, 2*time.Second)
	}
}

func clientOptions(cfg config.NATS, name string, log *zap.Logger) ([]nats.Option, error) {
	if cfg.Name != "" {
		name = cfg.Name
	}
	opts := []nats.Option{
		nats.Name(name),
		nats.Timeout(cfg.ConnectTimeout),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectBufSize(8 << 20),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			if err != nil && !nc.IsClosed() && !nc.IsDraining() {
				log.Warn("nats disconnected", zap.Error(err))
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("nats reconnected", zap.String("server", redactURL(nc.ConnectedUrl())))
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subj := ""
			if sub != nil {
				subj = sub.Subject
			}
			log.Warn("nats async error", zap.String("subject", subj), zap.Error(err))
		}),
	}
	if cfg.User != "" {
		opts = append(opts, nats.UserInfo(cfg.User, cfg.Password))
	}
	if cfg.Token != "" {
		opts = append(opts, nats.Token(cfg.Token))
	}
	if cfg.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(cfg.CredsFile))
	}
	if cfg.NKeySeedFile != "" {
		opt, err := nats.NkeyOptionFromSeed(cfg.NKeySeedFile)
		if err != nil {
			return nil, fmt.Errorf("queue: nats.nkey_seed_file: %w", err)
		}
		opts = append(opts, opt)
	}
	if cfg.TLS.CAFile != "" {
		opts = append(opts, nats.RootCAs(cfg.TLS.CAFile))
	}
	if cfg.TLS.CertFile != "" {
		opts = append(opts, nats.ClientCert(cfg.TLS.CertFile, cfg.TLS.KeyFile))
	}
	return opts, nil
}

// permanent reports whether a connect error cannot be cured by retrying.
func permanent(err error) bool {
	if errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) ||
		errors.Is(err, nats.ErrAuthRevoked) || errors.Is(err, nats.ErrAccountAuthExpired) ||
		errors.Is(err, nats.ErrNkeysNotSupported) || errors.Is(err, nats.ErrSecureConnRequired) ||
		errors.Is(err, nats.ErrSecureConnWanted) || errors.Is(err, nats.ErrBadTimeout) {
		return true
	}
	msg := strings.ToLower(err.Error())
	for _, s := range []string{"authorization", "authentication", "tls:", "x509", "certificate", "no such file", "permission denied"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// redactURL hides a password or token embedded in a NATS URL (or in any
// URL of a comma-separated list, with or without a scheme).
func redactURL(u string) string {
	parts := strings.Split(u, ",")
	for i, p := range parts {
		prefix, rest := "", p
		if scheme, after, ok := strings.Cut(p, "://"); ok {
			prefix, rest = scheme+"://", after
		}
		if at := strings.LastIndex(rest, "@"); at >= 0 {
			parts[i] = prefix + "redacted@" + rest[at+1:]
		}
	}
	return strings.Join(parts, ",")
}

// Drain drains nc (pending publishes and acks are flushed, subscriptions
// finish) and waits up to timeout for it to close, then closes it anyway.
func Drain(nc *nats.Conn, timeout time.Duration) {
	if nc == nil || nc.IsClosed() {
		return
	}
	closed := make(chan struct{})
	nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
	if err := nc.Drain(); err != nil {
		nc.Close()
		return
	}
	select {
	case <-closed:
	case <-time.After(timeout):
		nc.Close()
	}
}
