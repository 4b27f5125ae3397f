// Package config loads, validates and hot-reloads Levee's configuration:
// built-in defaults < config file < LEVEE_* environment < flags.
package config

import (
	"time"
)

// Config is the whole configuration of both binaries. Its defaults and the
// meaning of every key are documented in configs/levee.yaml.
type Config struct {
	Optimization Optimization `koanf:"optimization"`
	Ingest       Ingest       `koanf:"ingest"`
	NATS         NATS         `koanf:"nats"`
	Queue        Queue        `koanf:"queue"`
	Worker       Worker       `koanf:"worker"`
	Backpressure Backpressure `koanf:"backpressure"`
	Degrade      Degrade      `koanf:"degrade"`
	Batch        Batch        `koanf:"batch"`
	Sink         Sink         `koanf:"sink"`
	Log          Log          `koanf:"log"`
	Reload       Reload       `koanf:"reload"`
}

// Optimization holds the rollback switch and one switch per optimization.
type Optimization struct {
	Enabled  bool `koanf:"enabled"`
	Batching bool `koanf:"batching"`
	Packing  bool `koanf:"packing"`
	Adaptive bool `koanf:"adaptive"`
	Degrade  bool `koanf:"degrade"`
}

// Degrade configures the degraded path.
type Degrade struct {
	Force         string        `koanf:"force"`
	NormalAfter   time.Duration `koanf:"normal_after"`
	CriticalAbove float64       `koanf:"critical_above"`
	CriticalBelow float64       `koanf:"critical_below"`
	RetryAfter    time.Duration `koanf:"retry_after"`
	Spool         Spool         `koanf:"spool"`
	Replay        Replay        `koanf:"replay"`
	Breaker       Breaker       `koanf:"breaker"`
}

// Spool configures the on-disk spool.
type Spool struct {
	Dir          string        `koanf:"dir"`
	MaxBytes     int64         `koanf:"max_bytes"`
	SegmentBytes int64         `koanf:"segment_bytes"`
	SyncInterval time.Duration `koanf:"sync_interval"`
}

// Replay configures the spool replayer.
type Replay struct {
	Headroom    float64 `koanf:"headroom"`
	BatchEvents int     `koanf:"batch_events"`
}

// Breaker configures the worker's sink circuit breaker.
type Breaker struct {
	Failures int           `koanf:"failures"`
	OpenFor  time.Duration `koanf:"open_for"`
}

// Backpressure configures the adaptive limiters.
type Backpressure struct {
	Algorithm      string        `koanf:"algorithm"`
	MinLimit       int           `koanf:"min_limit"`
	MaxLimit       int           `koanf:"max_limit"`
	Step           float64       `koanf:"step"`
	Tolerance      float64       `koanf:"tolerance"`
	BaselineWindow time.Duration `koanf:"baseline_window"`
	AIMD           AIMD          `koanf:"aimd"`
	Gradient2      Gradient2     `koanf:"gradient2"`
	Ingest         IngestLimit   `koanf:"ingest"`
}

// AIMD holds the AIMD algorithm's parameters.
type AIMD struct {
	Backoff      float64 `koanf:"backoff"`
	RTTDeviation float64 `koanf:"rtt_deviation"`
	EWMAAlpha    float64 `koanf:"ewma_alpha"`
}

// Gradient2 holds the Gradient2 algorithm's parameters.
type Gradient2 struct {
	Smoothing float64 `koanf:"smoothing"`
}

// IngestLimit configures the admission gate of the ingest service.
type IngestLimit struct {
	MinLimit     int           `koanf:"min_limit"`
	MaxLimit     int           `koanf:"max_limit"`
	InitialLimit int           `koanf:"initial_limit"`
	Step         float64       `koanf:"step"`
	MaxWait      time.Duration `koanf:"max_wait"`
}

// Ingest configures the HTTP ingest service.
type Ingest struct {
	Listen              string        `koanf:"listen"`
	AdminListen         string        `koanf:"admin_listen"`
	MaxBodyBytes        int64         `koanf:"max_body_bytes"`
	MaxEventsPerRequest int           `koanf:"max_events_per_request"`
	MaxEventBytes       int           `koanf:"max_event_bytes"`
	MaxDepth            int           `koanf:"max_depth"`
	PublishTimeout      time.Duration `koanf:"publish_timeout"`
	ShutdownTimeout     time.Duration `koanf:"shutdown_timeout"`
	HTTP                HTTP          `koanf:"http"`
	TLS                 ServerTLS     `koanf:"tls"`
	Auth                Auth          `koanf:"auth"`
}

// HTTP holds the public listener's timeouts and limits.
type HTTP struct {
	ReadHeaderTimeout time.Duration `koanf:"read_header_timeout"`
	ReadTimeout       time.Duration `koanf:"read_timeout"`
	WriteTimeout      time.Duration `koanf:"write_timeout"`
	IdleTimeout       time.Duration `koanf:"idle_timeout"`
	MaxHeaderBytes    int           `koanf:"max_header_bytes"`
}

// ServerTLS holds the public listener's certificate; empty = plain HTTP.
type ServerTLS struct {
	CertFile string `koanf:"cert_file"`
	KeyFile  string `koanf:"key_file"`
}

// Enabled reports whether the listener serves HTTPS.
func (t ServerTLS) Enabled() bool { return t.CertFile != "" }

// Auth lists the accepted API keys by digest, and the request rate each key
// may use.
type Auth struct {
	APIKeys   []APIKey `koanf:"api_keys"`
	RateLimit float64  `koanf:"rate_limit"` // requests per second per key; 0 = unlimited
	RateBurst int      `koanf:"rate_burst"`
}

// APIKey is a named SHA-256 digest of an API key; the key itself is never stored.
type APIKey struct {
	Name   string `koanf:"name"`
	SHA256 string `koanf:"sha256"`
}

// NATS configures the connection to NATS and the JetStream resources.
type NATS struct {
	URL            string        `koanf:"url"`
	Name           string        `koanf:"name"`
	User           string        `koanf:"user"`
	Password       string        `koanf:"password"`
	Token          string        `koanf:"token"`
	CredsFile      string        `koanf:"creds_file"`
	NKeySeedFile   string        `koanf:"nkey_seed_file"`
	ConnectTimeout time.Duration `koanf:"connect_timeout"`
	TLS            TLS           `koanf:"tls"`
	Embedded       Embedded      `koanf:"embedded"`
	Stream         Stream        `koanf:"stream"`
	DLQ            DLQ           `koanf:"dlq"`
}

// TLS holds client TLS files for the NATS connection.
type TLS struct {
	CAFile   string `koanf:"ca_file"`
	CertFile string `koanf:"cert_file"`
	KeyFile  string `koanf:"key_file"`
}

// Enabled reports whether any TLS option is set.
func (t TLS) Enabled() bool { return t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" }

// Embedded configures the in-process NATS server used when nats.url is empty.
type Embedded struct {
	Listen       string `koanf:"listen"`
	StoreDir     string `koanf:"store_dir"`
	SyncInterval string `koanf:"sync_interval"`
}

// Stream configures the EVENTS stream.
type Stream struct {
	Name           string        `koanf:"name"`
	SubjectsPrefix string        `koanf:"subjects_prefix"`
	Replicas       int           `koanf:"replicas"`
	MaxBytes       int64         `koanf:"max_bytes"`
	Duplicates     time.Duration `koanf:"duplicates"`
}

// DLQ configures the dead-letter stream.
type DLQ struct {
	Name     string `koanf:"name"`
	Subject  string `koanf:"subject"`
	MaxBytes int64  `koanf:"max_bytes"`
}

// Queue configures the publishing side.
type Queue struct {
	AckTimeout        time.Duration `koanf:"ack_timeout"`
	MaxPending        int           `koanf:"max_pending"`
	MaxInflightEvents int           `koanf:"max_inflight_events"`
	MaxInflightBytes  int64         `koanf:"max_inflight_bytes"`
	Pack              Pack          `koanf:"pack"`
}

// Pack configures how events are coalesced into JetStream messages.
type Pack struct {
	MaxEvents int           `koanf:"max_events"`
	MaxBytes  int           `koanf:"max_bytes"`
	Lanes     int           `koanf:"lanes"`
	Linger    time.Duration `koanf:"linger"`
}

// Worker configures the worker service.
type Worker struct {
	AdminListen        string        `koanf:"admin_listen"`
	Consumer           string        `koanf:"consumer"`
	PoolSize           int           `koanf:"pool_size"`
	MaxInflightBatches int           `koanf:"max_inflight_batches"`
	FetchMax           int           `koanf:"fetch_max"`
	AckWait            time.Duration `koanf:"ack_wait"`
	MaxAckPending      int           `koanf:"max_ack_pending"`
	MaxDeliver         int           `koanf:"max_deliver"`
	NakDelay           time.Duration `koanf:"nak_delay"`
	WriteTimeout       time.Duration `koanf:"write_timeout"`
	ShutdownTimeout    time.Duration `koanf:"shutdown_timeout"`
}

// Batch configures the batcher's flush triggers.
type Batch struct {
	MaxRows  int           `koanf:"max_rows"`
	MaxBytes int           `koanf:"max_bytes"`
	Linger   time.Duration `koanf:"linger"`
}

// Sink configures the database the events are written to.
type Sink struct {
	Kind     string   `koanf:"kind"`
	Table    string   `koanf:"table"`
	SQLite   SQLite   `koanf:"sqlite"`
	Postgres Postgres `koanf:"postgres"`
}

// SQLite configures the embedded default sink.
type SQLite struct {
	Path        string        `koanf:"path"`
	Synchronous string        `koanf:"synchronous"`
	BusyTimeout time.Duration `koanf:"busy_timeout"`
}

// Postgres configures the PostgreSQL sink.
type Postgres struct {
	DSN      string `koanf:"dsn"`
	MaxConns int    `koanf:"max_conns"`
}

// Log configures the zap logger and the log policy.
type Log struct {
	Level           string        `koanf:"level"`
	Format          string        `koanf:"format"`
	SummaryInterval time.Duration `koanf:"summary_interval"`
	WarnBurst       int           `koanf:"warn_burst"`
	WarnInterval    time.Duration `koanf:"warn_interval"`
	DebugSample     int           `koanf:"debug_sample"`
}

// Reload configures hot reload of the config file.
type Reload struct {
	Interval time.Duration `koanf:"interval"`
}
