package config_test

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/levee-dev/levee/configs"
	"github.com/levee-dev/levee/internal/config"
)

// digestA and digestB are SHA-256 digests as 64 hex characters.
var (
	digestA = strings.Repeat("ab", 32)
	digestB = strings.Repeat("0f", 32)
)

func noEnv() []string { return nil }

func environ(vars ...string) func() []string { return func() []string { return vars } }

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	require.NoError(t, os.WriteFile(path, []byte(content), 0o644))
}

// tempConfig writes content to a new config file and returns its path.
func tempConfig(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "levee.yaml")
	writeFile(t, path, content)
	return path
}

func TestDefaults(t *testing.T) {
	_, err := os.Stat(config.DefaultFile)
	require.True(t, os.IsNotExist(err), "%s must not exist relative to the test's directory", config.DefaultFile)

	cfg, err := config.Load(config.Source{File: "", Environ: noEnv})
	require.NoError(t, err)
	require.NoError(t, cfg.Validate())

	tests := []struct {
		key       string
		got, want any
	}{
		{"optimization.enabled", cfg.Optimization.Enabled, true},
		{"optimization.batching", cfg.Optimization.Batching, true},
		{"ingest.listen", cfg.Ingest.Listen, "127.0.0.1:8080"},
		{"ingest.admin_listen", cfg.Ingest.AdminListen, "127.0.0.1:9464"},
		{"ingest.max_body_bytes", cfg.Ingest.MaxBodyBytes, int64(1048576)},
		{"ingest.max_events_per_request", cfg.Ingest.MaxEventsPerRequest, 1000},
		{"ingest.max_event_bytes", cfg.Ingest.MaxEventBytes, 65536},
		{"ingest.auth.api_keys", len(cfg.Ingest.Auth.APIKeys), 0},
		{"nats.url", cfg.NATS.URL, ""},
		{"nats.embedded.listen", cfg.NATS.Embedded.Listen, "127.0.0.1:4222"},
		{"nats.embedded.store_dir", cfg.NATS.Embedded.StoreDir, "./data/nats"},
		{"nats.stream.name", cfg.NATS.Stream.Name, "EVENTS"},
		{"nats.stream.replicas", cfg.NATS.Stream.Replicas, 1},
		{"nats.stream.duplicates", cfg.NATS.Stream.Duplicates, 2 * time.Minute},
		{"worker.admin_listen", cfg.Worker.AdminListen, "127.0.0.1:9465"},
		{"batch.max_rows", cfg.Batch.MaxRows, 1000},
		{"batch.max_bytes", cfg.Batch.MaxBytes, 1048576},
		{"batch.linger", cfg.Batch.Linger, 50 * time.Millisecond},
		{"sink.kind", cfg.Sink.Kind, "sqlite"},
		{"sink.sqlite.path", cfg.Sink.SQLite.Path, "./data/levee.db"},
		{"sink.postgres.dsn", cfg.Sink.Postgres.DSN, ""},
		{"sink.table", cfg.Sink.Table, "events"},
		{"log.level", cfg.Log.Level, "info"},
		{"log.format", cfg.Log.Format, "json"},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			require.Equal(t, tt.want, tt.got)
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "absent.yaml")
	_, err := config.Load(config.Source{File: path, Environ: noEnv})
	require.ErrorContains(t, err, path)
}

func TestPrecedence(t *testing.T) {
	file := tempConfig(t, "batch:\n  max_rows: 100\nsink:\n  postgres:\n    dsn: postgres://file\n")
	tests := []struct {
		name    string
		file    string
		env     []string
		flags   map[string]string
		rows    int
		dsn     string
		linger  time.Duration
		minutes time.Duration
	}{
		{"defaults", "", nil, nil, 1000, "", 50 * time.Millisecond, 2 * time.Minute},
		{"file over defaults", file, nil, nil, 100, "postgres://file", 50 * time.Millisecond, 2 * time.Minute},
		{"env over file", file, []string{"LEVEE_BATCH__MAX_ROWS=500", "LEVEE_SINK__POSTGRES__DSN=postgres://env"}, nil, 500, "postgres://env", 50 * time.Millisecond, 2 * time.Minute},
		{"flags over env", file, []string{"LEVEE_BATCH__MAX_ROWS=500"}, map[string]string{"batch.max_rows": "7", "sink.postgres.dsn": "postgres://flag"}, 7, "postgres://flag", 50 * time.Millisecond, 2 * time.Minute},
		{"flags over file", file, nil, map[string]string{"batch.max_rows": "8"}, 8, "postgres://file", 50 * time.Millisecond, 2 * time.Minute},
		{"env alone", "", []string{"LEVEE_BATCH__LINGER=10ms", "LEVEE_NATS__STREAM__DUPLICATES=5m"}, nil, 1000, "", 10 * time.Millisecond, 5 * time.Minute},
		{"other keys keep their layers", file, []string{"LEVEE_BATCH__LINGER=1s"}, map[string]string{"nats.stream.duplicates": "90s"}, 100, "postgres://file", time.Second, 90 * time.Second},
		{"variables without the prefix are ignored", "", []string{"BATCH__MAX_ROWS=3", "PATH=/bin", "LEVEE=1"}, nil, 1000, "", 50 * time.Millisecond, 2 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := config.Load(config.Source{File: tt.file, Environ: environ(tt.env...), Flags: tt.flags})
			require.NoError(t, err)
			require.Equal(t, tt.rows, cfg.Batch.MaxRows)
			require.Equal(t, tt.dsn, cfg.Sink.Postgres.DSN)
			require.Equal(t, tt.linger, cfg.Batch.Linger)
			require.Equal(t, tt.minutes, cfg.NATS.Stream.Duplicates)
		})
	}
}

func TestLoadErrorsNameTheKey(t *testing.T) {
	tests := []struct {
		name  string
		file  string // YAML; "" = no file
		env   []string
		flags map[string]string
		want  []string // substrings of the error
	}{
		{name: "unknown key in file", file: "batch: {max_rowz: 1}", want: []string{"batch.max_rowz", "unknown key"}},
		{name: "unknown section in file", file: "nope: {x: 1}", want: []string{"nope.x"}},
		{name: "map under a value", file: "batch: {max_rows: {a: 1}}", want: []string{"batch.max_rows.a"}},
		{name: "value instead of a section", file: "batch: 5", want: []string{"batch"}},
		{name: "unknown env var", env: []string{"LEVEE_NOPE__X=1"}, want: []string{"LEVEE_NOPE__X", "nope.x"}},
		{name: "misspelt env var", env: []string{"LEVEE_BATCH__MAXROWS=1"}, want: []string{"LEVEE_BATCH__MAXROWS"}},
		{name: "unknown flag key", flags: map[string]string{"nope.x": "1"}, want: []string{"nope.x", "flags"}},
		{name: "max_rows 0", file: "batch: {max_rows: 0}", want: []string{"batch.max_rows"}},
		{name: "max_rows not a number", file: `batch: {max_rows: "abc"}`, want: []string{"batch.max_rows"}},
		{name: "max_rows a list", file: `batch: {max_rows: [1]}`, want: []string{"batch.max_rows"}},
		{name: "max_rows not a number in env", env: []string{"LEVEE_BATCH__MAX_ROWS=abc"}, want: []string{"batch.max_rows"}},
		{name: "max_rows not a number in flags", flags: map[string]string{"batch.max_rows": "abc"}, want: []string{"batch.max_rows"}},
		{name: "negative linger", file: "batch: {linger: -1s}", want: []string{"batch.linger"}},
		{name: "linger not a duration", file: `batch: {linger: "soon"}`, want: []string{"batch.linger"}},
		{name: "linger not a duration in flags", flags: map[string]string{"batch.linger": "soon"}, want: []string{"batch.linger"}},
		{name: "unknown sink kind", file: "sink: {kind: mysql}", want: []string{"sink.kind", "mysql"}},
		{name: "unknown log level", file: "log: {level: loud}", want: []string{"log.level", "loud"}},
		{name: "listen without a port", file: `ingest: {listen: "nope"}`, want: []string{"ingest.listen"}},
		{name: "postgres without dsn", file: "sink: {kind: postgres}", want: []string{"sink.postgres.dsn"}},
		{name: "api key digest not hex", file: `ingest: {auth: {api_keys: ["a:xyz"]}}`, want: []string{"ingest.auth.api_keys[0].sha256"}},
		{name: "api key digest too short", file: `ingest: {auth: {api_keys: [{name: a, sha256: "abcd"}]}}`, want: []string{"ingest.auth.api_keys[0].sha256"}},
		{name: "api key without a colon", file: `ingest: {auth: {api_keys: ["nocolon"]}}`, want: []string{"ingest.auth.api_keys[0]"}},
		{name: "api key with an unknown field", file: `ingest: {auth: {api_keys: [{name: a, sha256: "` + digestA + `", extra: 1}]}}`, want: []string{"ingest.auth.api_keys[0]", "extra"}},
		{name: "api key name invalid", file: `ingest: {auth: {api_keys: ["a b:` + digestA + `"]}}`, want: []string{"ingest.auth.api_keys[0].name"}},
		{name: "duplicate api key names", file: `ingest: {auth: {api_keys: ["a:` + digestA + `", "a:` + digestB + `"]}}`, want: []string{"ingest.auth.api_keys[1].name", "duplicate"}},
		{name: "duplicate api key names in env", env: []string{"LEVEE_INGEST__AUTH__API_KEYS=a:" + digestA + ",a:" + digestB}, want: []string{"ingest.auth.api_keys[1].name"}},
		{name: "stream and dlq with one name", file: "nats: {dlq: {name: EVENTS}}", want: []string{"nats.dlq.name"}},
		{name: "fetch_max above max_ack_pending", flags: map[string]string{"worker.fetch_max": "50000"}, want: []string{"worker.max_ack_pending"}},
		{name: "yaml syntax error", file: "batch: [", want: []string{"levee.yaml"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := config.Source{Environ: environ(tt.env...), Flags: tt.flags}
			if tt.file != "" {
				src.File = tempConfig(t, tt.file)
			}
			cfg, err := config.Load(src)
			require.Error(t, err)
			require.Nil(t, cfg)
			for _, w := range tt.want {
				require.Contains(t, err.Error(), w)
			}
		})
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	cfg, err := config.Load(config.Source{Environ: noEnv})
	require.NoError(t, err)
	cfg.Batch.MaxRows = 0
	cfg.Log.Level = "loud"
	cfg.Sink.Kind = "mysql"
	err = cfg.Validate()
	require.Error(t, err)
	for _, key := range []string{"batch.max_rows", "log.level", "sink.kind"} {
		require.Contains(t, err.Error(), key)
	}
}

func TestAPIKeys(t *testing.T) {
	want := []config.APIKey{{Name: "a", SHA256: digestA}, {Name: "b", SHA256: digestB}}
	tests := []struct {
		name  string
		file  string
		env   []string
		flags map[string]string
		want  []config.APIKey
	}{
		{name: "yaml strings", file: "ingest:\n  auth:\n    api_keys:\n      - \"a:" + digestA + "\"\n      - \"b:" + digestB + "\"\n", want: want},
		{name: "yaml maps", file: "ingest:\n  auth:\n    api_keys:\n      - {name: a, sha256: " + digestA + "}\n      - name: b\n        sha256: " + digestB + "\n", want: want},
		{name: "yaml mixed", file: "ingest: {auth: {api_keys: [\"a:" + digestA + "\", {name: b, sha256: " + digestB + "}]}}", want: want},
		{name: "env", env: []string{"LEVEE_INGEST__AUTH__API_KEYS=a:" + digestA + ",b:" + digestB}, want: want},
		{name: "env with spaces", env: []string{"LEVEE_INGEST__AUTH__API_KEYS= a : " + digestA + " , b:" + digestB}, want: want},
		{name: "flag", flags: map[string]string{"ingest.auth.api_keys": "a:" + digestA + ",b:" + digestB}, want: want},
		{name: "env empties the file's list", file: "ingest: {auth: {api_keys: [\"a:" + digestA + "\"]}}", env: []string{"LEVEE_INGEST__AUTH__API_KEYS="}, want: []config.APIKey{}},
		{name: "none", want: []config.APIKey{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := config.Source{Environ: environ(tt.env...), Flags: tt.flags}
			if tt.file != "" {
				src.File = tempConfig(t, tt.file)
			}
			cfg, err := config.Load(src)
			require.NoError(t, err)
			require.ElementsMatch(t, tt.want, cfg.Ingest.Auth.APIKeys)
		})
	}
}

func TestParseFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		file    string
		flags   map[string]string
		wantErr string
	}{
		{name: "none", args: nil, flags: map[string]string{}},
		{name: "config and a key", args: []string{"-config", "x.yaml", "-batch.max_rows=7"}, file: "x.yaml", flags: map[string]string{"batch.max_rows": "7"}},
		{name: "several keys", args: []string{"--batch.linger", "10ms", "-log.level=debug", "-nats.url="}, flags: map[string]string{"batch.linger": "10ms", "log.level": "debug", "nats.url": ""}},
		{name: "caller's own flag", args: []string{"-hash-key", "-sink.kind=postgres"}, flags: map[string]string{"sink.kind": "postgres"}},
		{name: "positional argument", args: []string{"extra"}, wantErr: `unexpected argument "extra"`},
		{name: "positional argument after flags", args: []string{"-batch.max_rows=7", "extra"}, wantErr: "extra"},
		{name: "unknown flag", args: []string{"-batch.max_rowz=7"}, wantErr: "batch.max_rowz"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := flag.NewFlagSet("levee", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			fs.Bool("hash-key", false, "the caller's own flag")
			src, err := config.ParseFlags(fs, tt.args)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.file, src.File)
			require.Equal(t, tt.flags, src.Flags)
		})
	}
	t.Run("flags reach the config", func(t *testing.T) {
		file := tempConfig(t, "batch: {max_rows: 100, max_bytes: 2048}")
		fs := flag.NewFlagSet("levee", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		src, err := config.ParseFlags(fs, []string{"-config", file, "-batch.max_rows=7"})
		require.NoError(t, err)
		src.Environ = noEnv
		cfg, err := config.Load(src)
		require.NoError(t, err)
		require.Equal(t, 7, cfg.Batch.MaxRows)
		require.Equal(t, 2048, cfg.Batch.MaxBytes)
	})
}

// yamlKey is a leaf key of configs/levee.yaml, its documented default and
// whether it is marked [live].
type yamlKey struct {
	key, value string
	live       bool
}

var keyLine = regexp.MustCompile(`^( *)([A-Za-z0-9_]+):(.*)$`)

// parseDocumented reads the documented config file as text: indentation
// gives the dotted key path; a key is marked live when its own comment, or
// the comment block right above it, contains "[live]".
func parseDocumented(t *testing.T, text []byte) []yamlKey {
	t.Helper()
	type level struct {
		indent int
		name   string
	}
	var (
		stack   []level
		keys    []yamlKey
		pending bool // the comment block above the next key says [live]
	)
	sc := bufio.NewScanner(bytes.NewReader(text))
	for sc.Scan() {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		switch {
		case trimmed == "":
			pending = false
			continue
		case strings.HasPrefix(trimmed, "#"):
			pending = pending || strings.Contains(trimmed, "[live]")
			continue
		}
		m := keyLine.FindStringSubmatch(line)
		require.NotNil(t, m, "unexpected line in levee.yaml: %q", line)
		indent, name, rest := len(m[1]), m[2], m[3]
		value, comment, _ := strings.Cut(rest, "#")
		for len(stack) > 0 && stack[len(stack)-1].indent >= indent {
			stack = stack[:len(stack)-1]
		}
		stack = append(stack, level{indent, name})
		if strings.TrimSpace(value) != "" {
			path := make([]string, len(stack))
			for i, l := range stack {
				path[i] = l.name
			}
			keys = append(keys, yamlKey{
				key:   strings.Join(path, "."),
				value: strings.Trim(strings.TrimSpace(value), `"`),
				live:  pending || strings.Contains(comment, "[live]"),
			})
		}
		pending = false
	}
	require.NoError(t, sc.Err())
	return keys
}

func TestKeysAreDocumented(t *testing.T) {
	keys, err := config.Keys()
	require.NoError(t, err)
	require.True(t, sort.StringsAreSorted(keys))
	require.Equal(t, len(keys), len(slices.Compact(slices.Clone(keys))), "duplicate keys")
	for _, k := range keys {
		for _, other := range keys {
			require.False(t, strings.HasPrefix(other, k+"."), "%s is not a leaf: %s is below it", k, other)
		}
	}

	doc := parseDocumented(t, configs.Default)
	var documented, live []string
	for _, d := range doc {
		documented = append(documented, d.key)
		if d.live {
			live = append(live, d.key)
		}
	}
	sort.Strings(documented)
	require.Equal(t, keys, documented, "Keys() and the keys of configs/levee.yaml differ")

	var isLive []string
	for _, k := range keys {
		if config.IsLive(k) {
			isLive = append(isLive, k)
		}
	}
	sort.Strings(live)
	require.Equal(t, live, isLive, "keys marked [live] in configs/levee.yaml and keys for which IsLive is true differ")
	require.Contains(t, isLive, "batch.max_rows")
	require.Contains(t, isLive, "ingest.auth.api_keys")
	require.NotContains(t, isLive, "ingest.listen")
}

// TestKeysMatchConfig: every field of Config is a documented key, and every
// key can be set by flag (here to its default value).
func TestKeysMatchConfig(t *testing.T) {
	keys, err := config.Keys()
	require.NoError(t, err)
	var fields []string
	var walk func(prefix string, typ reflect.Type)
	walk = func(prefix string, typ reflect.Type) {
		for f := range typ.Fields() {
			key := prefix + f.Tag.Get("koanf")
			if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeFor[time.Duration]() {
				walk(key+".", f.Type)
				continue
			}
			fields = append(fields, key)
		}
	}
	walk("", reflect.TypeFor[config.Config]())
	sort.Strings(fields)
	require.Equal(t, keys, fields)

	want, err := config.Load(config.Source{Environ: noEnv})
	require.NoError(t, err)
	for _, d := range parseDocumented(t, configs.Default) {
		t.Run(d.key, func(t *testing.T) {
			got, err := config.Load(config.Source{Environ: noEnv, Flags: map[string]string{d.key: d.value}})
			require.NoError(t, err)
			require.Equal(t, want, got)
		})
	}
}

func TestIsLive(t *testing.T) {
	tests := []struct {
		key  string
		live bool
	}{
		{"batch.max_rows", true},
		{"batch.linger", true},
		{"optimization.enabled", true},
		{"ingest.auth.api_keys", true},
		{"log.level", true},
		{"log.format", false},
		{"ingest.listen", false},
		{"sink.postgres.dsn", false},
		{"batch", false},
		{"batchx.max_rows", false},
		{"", false},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			require.Equal(t, tt.live, config.IsLive(tt.key))
		})
	}
}

// Watcher.

// captureRegisterer is a registry that keeps the watcher's counter so the
// test can read it.
type captureRegisterer struct {
	*prometheus.Registry
	reloads *prometheus.CounterVec
}

func (r *captureRegisterer) Register(c prometheus.Collector) error {
	if v, ok := c.(*prometheus.CounterVec); ok {
		r.reloads = v
	}
	return r.Registry.Register(c)
}

func (r *captureRegisterer) count(t *testing.T, result string) float64 {
	t.Helper()
	require.NotNil(t, r.reloads, "levee_config_reloads_total not registered")
	return testutil.ToFloat64(r.reloads.WithLabelValues(result))
}

// recorder is a subscriber that keeps every configuration it is given.
type recorder struct {
	mu   sync.Mutex
	cfgs []*config.Config
}

func (r *recorder) record(c *config.Config) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cfgs = append(r.cfgs, c)
}

func (r *recorder) all() []*config.Config {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.cfgs)
}

type watched struct {
	path string
	w    *config.Watcher
	reg  *captureRegisterer
	rec  *recorder
	init *config.Config
}

func watch(t *testing.T, content string, log *zap.Logger, env ...string) *watched {
	t.Helper()
	path := tempConfig(t, content)
	src := config.Source{File: path, Environ: environ(env...)}
	cfg, err := config.Load(src)
	require.NoError(t, err)
	reg := &captureRegisterer{Registry: prometheus.NewRegistry()}
	if log == nil {
		log = zaptest.NewLogger(t)
	}
	w, err := config.NewWatcher(src, cfg, log, reg)
	require.NoError(t, err)
	rec := &recorder{}
	w.Subscribe(rec.record)
	require.Same(t, cfg, w.Current())
	return &watched{path: path, w: w, reg: reg, rec: rec, init: cfg}
}

const baseFile = "batch:\n  max_rows: 100\ningest:\n  listen: \"127.0.0.1:8080\"\n"

func TestWatcherCheck(t *testing.T) {
	tests := []struct {
		name     string
		content  string
		applied  bool
		wantErr  string
		rows     int    // batch.max_rows in force afterwards
		listen   string // ingest.listen in force afterwards
		okDelta  float64
		errDelta float64
	}{
		{name: "unchanged", content: baseFile, rows: 100, listen: "127.0.0.1:8080"},
		{name: "live key", content: "batch:\n  max_rows: 200\ningest:\n  listen: \"127.0.0.1:8080\"\n", applied: true, rows: 200, listen: "127.0.0.1:8080", okDelta: 1},
		{name: "same values, other text", content: "# comment\nbatch: {max_rows: 100}\ningest: {listen: \"127.0.0.1:8080\"}\n", rows: 100, listen: "127.0.0.1:8080", okDelta: 1},
		{name: "restart-only key with a live key", content: "batch:\n  max_rows: 300\ningest:\n  listen: \"127.0.0.1:18080\"\n", applied: true, rows: 300, listen: "127.0.0.1:8080", okDelta: 1},
		{name: "restart-only key alone", content: "batch:\n  max_rows: 100\ningest:\n  listen: \"127.0.0.1:18080\"\n", rows: 100, listen: "127.0.0.1:8080", okDelta: 1},
		{name: "live key back to its default", content: "ingest:\n  listen: \"127.0.0.1:8080\"\n", applied: true, rows: 1000, listen: "127.0.0.1:8080", okDelta: 1},
		{name: "invalid value", content: "batch:\n  max_rows: 0\n", wantErr: "batch.max_rows", rows: 100, listen: "127.0.0.1:8080", errDelta: 1},
		{name: "unknown key", content: "batch:\n  max_rowz: 5\n", wantErr: "batch.max_rowz", rows: 100, listen: "127.0.0.1:8080", errDelta: 1},
		{name: "yaml syntax error", content: "batch: [", wantErr: "levee.yaml", rows: 100, listen: "127.0.0.1:8080", errDelta: 1},
		// The file is invalid: the watcher must not apply it (its live part)
		// and count it as ok; the next restart would fail on it.
		{name: "invalid restart-only value with a live key", content: "batch:\n  max_rows: 400\ningest:\n  listen: \"nope\"\n", wantErr: "ingest.listen", rows: 100, listen: "127.0.0.1:8080", errDelta: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wd := watch(t, baseFile, nil)
			writeFile(t, wd.path, tt.content)
			applied, err := wd.w.Check()
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				require.Same(t, wd.init, wd.w.Current(), "an invalid file must leave the configuration in force")
			} else {
				require.NoError(t, err)
			}
			require.Equal(t, tt.applied, applied)
			cur := wd.w.Current()
			require.Equal(t, tt.rows, cur.Batch.MaxRows)
			require.Equal(t, tt.listen, cur.Ingest.Listen)
			require.Equal(t, tt.okDelta, wd.reg.count(t, "ok"))
			require.Equal(t, tt.errDelta, wd.reg.count(t, "error"))

			got := wd.rec.all()
			if !tt.applied {
				require.Empty(t, got, "subscriber called without a change")
				require.Same(t, wd.init, cur)
				return
			}
			require.Len(t, got, 1)
			require.Same(t, cur, got[0])

			again, err := wd.w.Check()
			require.NoError(t, err)
			require.False(t, again, "the same file applied twice")
			require.Len(t, wd.rec.all(), 1)
		})
	}
}

func TestWatcherSequence(t *testing.T) {
	wd := watch(t, baseFile, nil)
	step := func(content string, applied bool, wantErr string, rows int) {
		t.Helper()
		writeFile(t, wd.path, content)
		got, err := wd.w.Check()
		if wantErr != "" {
			require.ErrorContains(t, err, wantErr)
		} else {
			require.NoError(t, err)
		}
		require.Equal(t, applied, got)
		require.Equal(t, rows, wd.w.Current().Batch.MaxRows)
	}
	step("batch: {max_rows: 200}\n", true, "", 200)
	step("batch: {max_rows: -1}\n", false, "batch.max_rows", 200)
	step("batch: {max_rows: -1}\n", false, "", 200) // the same bad file is not reported twice
	step("batch: {max_rows: 300}\n", true, "", 300)
	require.Equal(t, 2.0, wd.reg.count(t, "ok"))
	require.Equal(t, 1.0, wd.reg.count(t, "error"))

	rows := make([]int, 0, 2)
	for _, c := range wd.rec.all() {
		rows = append(rows, c.Batch.MaxRows)
	}
	require.Equal(t, []int{200, 300}, rows)
}

func TestWatcherFileRemoved(t *testing.T) {
	wd := watch(t, baseFile, nil)
	require.NoError(t, os.Remove(wd.path))
	applied, err := wd.w.Check()
	require.Error(t, err)
	require.False(t, applied)
	require.Same(t, wd.init, wd.w.Current())
	require.Equal(t, 1.0, wd.reg.count(t, "error"))
}

func TestWatcherAtomicRename(t *testing.T) {
	wd := watch(t, baseFile, nil)
	tmp := filepath.Join(filepath.Dir(wd.path), ".levee.yaml.tmp")
	writeFile(t, tmp, "batch:\n  max_rows: 250\n")
	require.NoError(t, os.Rename(tmp, wd.path))
	applied, err := wd.w.Check()
	require.NoError(t, err)
	require.True(t, applied)
	require.Equal(t, 250, wd.w.Current().Batch.MaxRows)
	require.Len(t, wd.rec.all(), 1)
}

func TestWatcherEnvKeepsPrecedence(t *testing.T) {
	wd := watch(t, baseFile, nil, "LEVEE_BATCH__MAX_ROWS=500")
	require.Equal(t, 500, wd.init.Batch.MaxRows)
	writeFile(t, wd.path, "batch:\n  max_rows: 200\n  linger: 10ms\n")
	applied, err := wd.w.Check()
	require.NoError(t, err)
	require.True(t, applied)
	require.Equal(t, 500, wd.w.Current().Batch.MaxRows, "the environment still wins over the file")
	require.Equal(t, 10*time.Millisecond, wd.w.Current().Batch.Linger)
}

func TestWatcherDoesNotLogSecrets(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	wd := watch(t, "sink:\n  postgres:\n    dsn: postgres://u:oldsecret@h/db\n", zap.New(core))
	writeFile(t, wd.path, "sink:\n  postgres:\n    dsn: postgres://u:newsecret@h/db\nbatch: {max_rows: 5}\n")
	applied, err := wd.w.Check()
	require.NoError(t, err)
	require.True(t, applied)
	require.Equal(t, "postgres://u:oldsecret@h/db", wd.w.Current().Sink.Postgres.DSN, "dsn needs a restart")

	warned := logs.FilterField(zap.String("key", "sink.postgres.dsn")).All()
	require.Len(t, warned, 1, "a restart-only change is logged once")
	for _, e := range logs.All() {
		line := fmt.Sprintf("%s %v", e.Message, e.ContextMap())
		require.NotContains(t, line, "secret", "a secret was logged")
	}
}

func TestWatcherRun(t *testing.T) {
	wd := watch(t, baseFile, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- wd.w.Run(ctx, 10*time.Millisecond) }()
	defer func() {
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(2 * time.Second):
			t.Fatal("Run did not return after ctx ended")
		}
	}()

	writeFile(t, wd.path, "batch:\n  max_rows: 321\n")
	require.Eventually(t, func() bool { return wd.w.Current().Batch.MaxRows == 321 }, 2*time.Second, 5*time.Millisecond)
	require.Eventually(t, func() bool { return len(wd.rec.all()) == 1 }, 2*time.Second, 5*time.Millisecond)

	writeFile(t, wd.path, "batch:\n  max_rows: 0\n") // logged, previous stays
	require.Eventually(t, func() bool { return wd.reg.count(t, "error") == 1 }, 2*time.Second, 5*time.Millisecond)
	require.Equal(t, 321, wd.w.Current().Batch.MaxRows)
}

func TestWatcherRunWithoutFile(t *testing.T) {
	src := config.Source{Environ: noEnv}
	cfg, err := config.Load(src)
	require.NoError(t, err)
	w, err := config.NewWatcher(src, cfg, zaptest.NewLogger(t), prometheus.NewRegistry())
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	require.NoError(t, w.Run(ctx, time.Millisecond))
}

func TestNewWatcherRegistersOnce(t *testing.T) {
	src := config.Source{Environ: noEnv}
	cfg, err := config.Load(src)
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	_, err = config.NewWatcher(src, cfg, zaptest.NewLogger(t), reg)
	require.NoError(t, err)
	_, err = config.NewWatcher(src, cfg, zaptest.NewLogger(t), reg)
	require.Error(t, err, "a second watcher on the same registry must fail to register its metric")
}
