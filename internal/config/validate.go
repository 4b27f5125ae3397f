package config

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strings"
	"time"
)

var (
	nameRE       = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	subjectRE    = regexp.MustCompile(`^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$`)
	identifierRE = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)
)

// checker collects "key: problem" errors.
type checker struct{ errs []error }

func (c *checker) check(ok bool, key, format string, args ...any) {
	if !ok {
		c.errs = append(c.errs, fmt.Errorf("config: %s: %s", key, fmt.Sprintf(format, args...)))
	}
}

func (c *checker) addr(key, v string) {
	_, _, err := net.SplitHostPort(v)
	c.check(err == nil, key, "want host:port, got %q", v)
}

func (c *checker) atLeast(key string, v, min int64) {
	c.check(v >= min, key, "must be at least %d, got %d", min, v)
}

func (c *checker) positive(key string, d time.Duration) {
	c.check(d > 0, key, "must be a positive duration, got %s", d)
}

func (c *checker) oneOf(key, v string, allowed ...string) {
	for _, a := range allowed {
		if v == a {
			return
		}
	}
	c.check(false, key, "must be one of %s, got %q", strings.Join(allowed, ", "), v)
}

// Validate checks every value and returns all problems at once, each naming its key.
func (c *Config) Validate() error {
	var k checker
	c.validateIngest(&k)
	c.validateNATS(&k)
	c.validateQueue(&k)
	c.validateWorker(&k)
	c.validateSink(&k)
	c.validateBackpressure(&k)
	c.validateDegrade(&k)
	k.oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error")
	k.oneOf("log.format", c.Log.Format, "json", "console")
	k.check(c.Log.SummaryInterval >= 0, "log.summary_interval", "must not be negative")
	k.atLeast("log.warn_burst", int64(c.Log.WarnBurst), 1)
	k.check(c.Log.WarnInterval >= 100*time.Millisecond, "log.warn_interval", "must be at least 100ms, got %s", c.Log.WarnInterval)
	k.atLeast("log.debug_sample", int64(c.Log.DebugSample), 1)
	k.check(c.Reload.Interval >= 0, "reload.interval", "must not be negative")
	return errors.Join(k.errs...)
}

func (c *Config) validateIngest(k *checker) {
	in := c.Ingest
	k.addr("ingest.listen", in.Listen)
	k.addr("ingest.admin_listen", in.AdminListen)
	k.atLeast("ingest.max_body_bytes", in.MaxBodyBytes, 64)
	k.atLeast("ingest.max_events_per_request", int64(in.MaxEventsPerRequest), 1)
	k.atLeast("ingest.max_event_bytes", int64(in.MaxEventBytes), 64)
	k.check(in.MaxDepth >= 1 && in.MaxDepth <= 1000, "ingest.max_depth", "must be between 1 and 1000, got %d", in.MaxDepth)
	k.positive("ingest.publish_timeout", in.PublishTimeout)
	k.positive("ingest.shutdown_timeout", in.ShutdownTimeout)
	k.positive("ingest.http.read_header_timeout", in.HTTP.ReadHeaderTimeout)
	k.positive("ingest.http.read_timeout", in.HTTP.ReadTimeout)
	k.positive("ingest.http.write_timeout", in.HTTP.WriteTimeout)
	k.positive("ingest.http.idle_timeout", in.HTTP.IdleTimeout)
	k.atLeast("ingest.http.max_header_bytes", int64(in.HTTP.MaxHeaderBytes), 1024)
	k.check((in.TLS.CertFile == "") == (in.TLS.KeyFile == ""), "ingest.tls.cert_file", "cert_file and key_file go together")
	k.check(in.Auth.RateLimit >= 0, "ingest.auth.rate_limit", "must not be negative, got %g", in.Auth.RateLimit)
	k.atLeast("ingest.auth.rate_burst", int64(in.Auth.RateBurst), 1)
	seen := map[string]bool{}
	for i, key := range in.Auth.APIKeys {
		name := fmt.Sprintf("ingest.auth.api_keys[%d]", i)
		k.check(nameRE.MatchString(key.Name), name+".name", "must be 1-64 letters, digits, '_' or '-', got %q", key.Name)
		k.check(!seen[key.Name], name+".name", "duplicate key name %q", key.Name)
		k.check(key.Name != "none", name+".name", `"none" is reserved (the key label of requests while auth is off)`)
		seen[key.Name] = true
		b, err := hex.DecodeString(key.SHA256)
		k.check(err == nil && len(b) == 32, name+".sha256", "must be a SHA-256 digest as 64 hex characters (printf %%s \"$KEY\" | sha256sum)")
	}
}

func (c *Config) validateNATS(k *checker) {
	n := c.NATS
	k.positive("nats.connect_timeout", n.ConnectTimeout)
	k.check((n.TLS.CertFile == "") == (n.TLS.KeyFile == ""), "nats.tls.cert_file", "cert_file and key_file go together")
	if n.URL == "" {
		k.addr("nats.embedded.listen", n.Embedded.Listen)
		k.check(n.Embedded.StoreDir != "", "nats.embedded.store_dir", "must not be empty")
	}
	if si := n.Embedded.SyncInterval; si != "always" {
		d, err := time.ParseDuration(si)
		k.check(err == nil && d > 0, "nats.embedded.sync_interval", `must be "always" or a positive duration, got %q`, si)
	}
	k.check(nameRE.MatchString(n.Stream.Name), "nats.stream.name", "must be 1-64 letters, digits, '_' or '-', got %q", n.Stream.Name)
	k.check(subjectRE.MatchString(n.Stream.SubjectsPrefix), "nats.stream.subjects_prefix", "must be a subject without wildcards, got %q", n.Stream.SubjectsPrefix)
	k.check(n.Stream.Replicas >= 1 && n.Stream.Replicas <= 5, "nats.stream.replicas", "must be between 1 and 5, got %d", n.Stream.Replicas)
	k.atLeast("nats.stream.max_bytes", n.Stream.MaxBytes, 1<<20)
	k.positive("nats.stream.duplicates", n.Stream.Duplicates)
	k.check(nameRE.MatchString(n.DLQ.Name) && n.DLQ.Name != n.Stream.Name, "nats.dlq.name", "must be a stream name different from nats.stream.name, got %q", n.DLQ.Name)
	k.check(subjectRE.MatchString(n.DLQ.Subject), "nats.dlq.subject", "must be a subject without wildcards, got %q", n.DLQ.Subject)
	k.check(n.DLQ.Subject != n.Stream.SubjectsPrefix && !strings.HasPrefix(n.DLQ.Subject, n.Stream.SubjectsPrefix+"."),
		"nats.dlq.subject", "must not overlap nats.stream.subjects_prefix")
	k.atLeast("nats.dlq.max_bytes", n.DLQ.MaxBytes, 1<<20)
}

func (c *Config) validateQueue(k *checker) {
	q := c.Queue
	k.positive("queue.ack_timeout", q.AckTimeout)
	k.atLeast("queue.max_pending", int64(q.MaxPending), 1)
	k.check(q.MaxInflightEvents >= c.Ingest.MaxEventsPerRequest, "queue.max_inflight_events",
		"must be at least ingest.max_events_per_request (%d), got %d", c.Ingest.MaxEventsPerRequest, q.MaxInflightEvents)
	k.check(q.MaxInflightBytes >= c.Ingest.MaxBodyBytes, "queue.max_inflight_bytes",
		"must be at least ingest.max_body_bytes (%d), got %d", c.Ingest.MaxBodyBytes, q.MaxInflightBytes)
	k.check(q.Pack.MaxEvents >= 1 && q.Pack.MaxEvents <= 100000, "queue.pack.max_events", "must be between 1 and 100000, got %d", q.Pack.MaxEvents)
	k.check(q.Pack.MaxBytes >= c.Ingest.MaxEventBytes+1024, "queue.pack.max_bytes",
		"must be at least ingest.max_event_bytes + 1024 (%d) so that any event fits a pack, got %d", c.Ingest.MaxEventBytes+1024, q.Pack.MaxBytes)
	k.check(q.Pack.Lanes >= 1 && q.Pack.Lanes <= 64, "queue.pack.lanes", "must be between 1 and 64, got %d", q.Pack.Lanes)
	k.check(q.Pack.Linger >= 0, "queue.pack.linger", "must not be negative")
}

func (c *Config) validateWorker(k *checker) {
	w := c.Worker
	k.addr("worker.admin_listen", w.AdminListen)
	k.check(nameRE.MatchString(w.Consumer), "worker.consumer", "must be 1-64 letters, digits, '_' or '-', got %q", w.Consumer)
	k.atLeast("worker.pool_size", int64(w.PoolSize), 1)
	k.atLeast("worker.max_inflight_batches", int64(w.MaxInflightBatches), 1)
	k.atLeast("worker.fetch_max", int64(w.FetchMax), 1)
	k.check(w.AckWait >= time.Second, "worker.ack_wait", "must be at least 1s, got %s", w.AckWait)
	k.check(w.MaxAckPending >= w.FetchMax, "worker.max_ack_pending", "must be at least worker.fetch_max (%d), got %d", w.FetchMax, w.MaxAckPending)
	k.atLeast("worker.max_deliver", int64(w.MaxDeliver), 1)
	k.check(w.NakDelay >= 0, "worker.nak_delay", "must not be negative")
	k.positive("worker.shutdown_timeout", w.ShutdownTimeout)
	k.positive("worker.write_timeout", w.WriteTimeout)
	b := c.Batch
	k.atLeast("batch.max_rows", int64(b.MaxRows), 1)
	k.atLeast("batch.max_bytes", int64(b.MaxBytes), 1)
	k.check(b.Linger >= 0, "batch.linger", "must not be negative")
}

func (c *Config) validateSink(k *checker) {
	s := c.Sink
	k.oneOf("sink.kind", s.Kind, "sqlite", "postgres")
	k.check(identifierRE.MatchString(s.Table), "sink.table", "must be a lower-case SQL identifier, got %q", s.Table)
	if s.Kind == "sqlite" {
		k.check(s.SQLite.Path != "", "sink.sqlite.path", "must not be empty")
	}
	k.oneOf("sink.sqlite.synchronous", s.SQLite.Synchronous, "full", "normal")
	k.positive("sink.sqlite.busy_timeout", s.SQLite.BusyTimeout)
	if s.Kind == "postgres" {
		k.check(s.Postgres.DSN != "", "sink.postgres.dsn", "must be set when sink.kind is postgres")
	}
	k.atLeast("sink.postgres.max_conns", int64(s.Postgres.MaxConns), 1)
}

func (c *Config) validateBackpressure(k *checker) {
	b := c.Backpressure
	k.oneOf("backpressure.algorithm", b.Algorithm, "gradient2", "aimd")
	k.atLeast("backpressure.min_limit", int64(b.MinLimit), 1)
	k.check(b.MaxLimit >= b.MinLimit && b.MaxLimit <= 1024, "backpressure.max_limit",
		"must be between backpressure.min_limit (%d) and 1024, got %d", b.MinLimit, b.MaxLimit)
	k.check(c.Worker.MaxInflightBatches <= b.MaxLimit, "worker.max_inflight_batches",
		"must be at most backpressure.max_limit (%d), got %d", b.MaxLimit, c.Worker.MaxInflightBatches)
	k.check(b.Step > 0, "backpressure.step", "must be positive")
	k.check(b.Tolerance >= 1, "backpressure.tolerance", "must be at least 1, got %g", b.Tolerance)
	k.check(b.BaselineWindow >= 0, "backpressure.baseline_window", "must not be negative")
	k.check(b.AIMD.Backoff > 0 && b.AIMD.Backoff < 1, "backpressure.aimd.backoff", "must be between 0 and 1, got %g", b.AIMD.Backoff)
	k.check(b.AIMD.RTTDeviation > 0, "backpressure.aimd.rtt_deviation", "must be positive")
	k.check(b.AIMD.EWMAAlpha > 0 && b.AIMD.EWMAAlpha <= 1, "backpressure.aimd.ewma_alpha", "must be in (0, 1], got %g", b.AIMD.EWMAAlpha)
	k.check(b.Gradient2.Smoothing > 0 && b.Gradient2.Smoothing <= 1, "backpressure.gradient2.smoothing", "must be in (0, 1], got %g", b.Gradient2.Smoothing)
	in := b.Ingest
	k.check(in.MinLimit >= c.Ingest.MaxEventsPerRequest, "backpressure.ingest.min_limit",
		"must be at least ingest.max_events_per_request (%d), got %d", c.Ingest.MaxEventsPerRequest, in.MinLimit)
	k.check(in.MaxLimit >= in.MinLimit && in.MaxLimit <= c.Queue.MaxInflightEvents, "backpressure.ingest.max_limit",
		"must be between backpressure.ingest.min_limit (%d) and queue.max_inflight_events (%d), got %d", in.MinLimit, c.Queue.MaxInflightEvents, in.MaxLimit)
	k.check(in.InitialLimit >= in.MinLimit && in.InitialLimit <= in.MaxLimit, "backpressure.ingest.initial_limit",
		"must be between backpressure.ingest.min_limit and max_limit, got %d", in.InitialLimit)
	k.check(in.Step > 0, "backpressure.ingest.step", "must be positive")
	k.check(in.MaxWait >= 0, "backpressure.ingest.max_wait", "must not be negative")
}

func (c *Config) validateDegrade(k *checker) {
	d := c.Degrade
	k.oneOf("degrade.force", d.Force, "", "normal", "degraded", "critical")
	k.check(d.NormalAfter >= 0, "degrade.normal_after", "must not be negative")
	k.check(d.CriticalAbove > 0 && d.CriticalAbove <= 1, "degrade.critical_above", "must be in (0, 1], got %g", d.CriticalAbove)
	k.check(d.CriticalBelow >= 0 && d.CriticalBelow < d.CriticalAbove, "degrade.critical_below",
		"must be in [0, degrade.critical_above), got %g", d.CriticalBelow)
	k.check(d.RetryAfter >= time.Second, "degrade.retry_after", "must be at least 1s, got %s", d.RetryAfter)
	k.check(d.Spool.Dir != "", "degrade.spool.dir", "must not be empty")
	k.check(d.Spool.MaxBytes >= c.Ingest.MaxBodyBytes*2, "degrade.spool.max_bytes",
		"must be at least twice ingest.max_body_bytes (%d), got %d", c.Ingest.MaxBodyBytes*2, d.Spool.MaxBytes)
	k.atLeast("degrade.spool.segment_bytes", d.Spool.SegmentBytes, 1<<20)
	k.check(d.Spool.SyncInterval >= 0, "degrade.spool.sync_interval", "must not be negative")
	k.check(d.Replay.Headroom >= 0 && d.Replay.Headroom < 1, "degrade.replay.headroom", "must be in [0, 1), got %g", d.Replay.Headroom)
	k.atLeast("degrade.replay.batch_events", int64(d.Replay.BatchEvents), 1)
	k.atLeast("degrade.breaker.failures", int64(d.Breaker.Failures), 1)
	k.check(d.Breaker.OpenFor >= 100*time.Millisecond, "degrade.breaker.open_for", "must be at least 100ms, got %s", d.Breaker.OpenFor)
}
