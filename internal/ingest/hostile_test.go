package ingest_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/levee-dev/levee/internal/backpressure"
	"github.com/levee-dev/levee/internal/config"
	"github.com/levee-dev/levee/internal/degrade"
	"github.com/levee-dev/levee/internal/ingest"
	"github.com/levee-dev/levee/internal/queue"
)

// service is the ingest handler wired as cmd/ingest wires it: a real
// publisher on an embedded JetStream, a real admission gate, a real spool
// in a temporary directory, behind an http.Server with the configured
// limits on a loopback port.
type service struct {
	addr   string
	cfg    *config.Config
	h      *ingest.Handler
	js     jetstream.JetStream
	spool  *degrade.Spool
	modes  *degrade.Modes
	stream string
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().String()
}

func startService(t *testing.T, flags map[string]string) *service {
	t.Helper()
	dir := t.TempDir()
	all := map[string]string{
		"nats.embedded.listen":    freeAddr(t),
		"nats.embedded.store_dir": filepath.Join(dir, "nats"),
		"degrade.spool.dir":       filepath.Join(dir, "spool"),
	}
	for k, v := range flags {
		all[k] = v
	}
	cfg, err := config.Load(config.Source{Environ: func() []string { return nil }, Flags: all})
	require.NoError(t, err)
	log, reg := zaptest.NewLogger(t), prometheus.NewRegistry()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()

	ns, err := queue.StartEmbedded(cfg.NATS, log)
	require.NoError(t, err)
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	nc, err := queue.Connect(ctx, cfg.NATS, "hostile-test", log)
	require.NoError(t, err)
	t.Cleanup(func() { queue.Drain(nc, 5*time.Second) })
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	require.NoError(t, queue.EnsureStreams(ctx, js, cfg.NATS))
	pub, err := queue.NewPublisher(js, cfg.NATS.Stream.SubjectsPrefix, cfg.Queue.Pack.Lanes, queue.SettingsFrom(cfg), log, reg)
	require.NoError(t, err)
	t.Cleanup(func() {
		cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer ccancel()
		_ = pub.Close(cctx)
	})
	gate, err := backpressure.NewLimiter("admission", backpressure.IngestConfig(cfg), reg)
	require.NoError(t, err)
	spool, err := degrade.OpenSpool(degrade.SpoolOptionsFrom(cfg), log, reg)
	require.NoError(t, err)
	spoolCtx, stopSpool := context.WithCancel(context.Background())
	spoolDone := make(chan struct{})
	go func() { defer close(spoolDone); _ = spool.Run(spoolCtx) }()
	t.Cleanup(func() { stopSpool(); <-spoolDone; spool.Close() })
	modes, err := degrade.NewModes(spool, degrade.ModeSettingsFrom(cfg), log, reg)
	require.NoError(t, err)
	h, err := ingest.NewHandler(ingest.Deps{
		Publisher: pub, Gate: gate, Spool: spool, Modes: modes,
		NewID: func() string { return fmt.Sprintf("gen-%d", time.Now().UnixNano()) },
	}, ingest.SettingsFrom(cfg), log, reg)
	require.NoError(t, err)

	mux := http.NewServeMux()
	mux.Handle("/v1/events", h)
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: cfg.Ingest.HTTP.ReadHeaderTimeout,
		ReadTimeout:       cfg.Ingest.HTTP.ReadTimeout,
		WriteTimeout:      cfg.Ingest.HTTP.WriteTimeout,
		IdleTimeout:       cfg.Ingest.HTTP.IdleTimeout,
		MaxHeaderBytes:    cfg.Ingest.HTTP.MaxHeaderBytes,
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	served := make(chan struct{})
	go func() { defer close(served); _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close(); <-served })
	return &service{addr: ln.Addr().String(), cfg: cfg, h: h, js: js, spool: spool, modes: modes, stream: cfg.NATS.Stream.Name}
}

// stored returns the messages in the stream and the records in the spool.
func (s *service) stored(t *testing.T) (msgs uint64, records int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	st, err := s.js.Stream(ctx, s.stream)
	require.NoError(t, err)
	info, err := st.Info(ctx)
	require.NoError(t, err)
	records, _ = s.spool.Len()
	return info.State.Msgs, records
}

// exchange writes raw to a new connection while reading the answer, so that
// a server answering before it has read the whole body (413) is seen
// instead of a broken pipe. It returns the status and the error code of a
// JSON error body ("" when the body is not one).
func (s *service) exchange(t *testing.T, raw io.Reader) (int, string, http.Header) {
	t.Helper()
	conn, err := net.Dial("tcp", s.addr)
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.SetDeadline(time.Now().Add(20*time.Second)))
	go func() { _, _ = io.Copy(conn, raw) }()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	require.NoError(t, err)
	return resp.StatusCode, errorCode(body), resp.Header
}

func errorCode(body []byte) string {
	const marker = `{"error":{"code":"`
	if !bytes.HasPrefix(body, []byte(marker)) {
		return ""
	}
	code, _, _ := strings.Cut(string(body[len(marker):]), `"`)
	return code
}

// hostile is one request of the table. By default it is a POST of body as
// application/json with the good key and a Content-Length.
type hostile struct {
	name    string
	method  string
	path    string
	ct      string
	headers []string // name, value pairs, added after the defaults
	noKey   bool
	key     string
	body    []byte
	chunked bool   // no Content-Length: Transfer-Encoding: chunked
	raw     []byte // the whole request as sent, instead of the above
	status  int
	code    string // error code; "" when net/http answers before the handler
}

func (h hostile) request(addr string) io.Reader {
	if h.raw != nil {
		return bytes.NewReader(h.raw)
	}
	var b bytes.Buffer
	method, path := h.method, h.path
	if method == "" {
		method = http.MethodPost
	}
	if path == "" {
		path = "/v1/events"
	}
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n", method, path, addr)
	ct := h.ct
	if ct == "" {
		ct = "application/json"
	}
	fmt.Fprintf(&b, "Content-Type: %s\r\n", ct)
	if !h.noKey {
		key := h.key
		if key == "" {
			key = goodKey
		}
		fmt.Fprintf(&b, "X-API-Key: %s\r\n", key)
	}
	for i := 0; i+1 < len(h.headers); i += 2 {
		fmt.Fprintf(&b, "%s: %s\r\n", h.headers[i], h.headers[i+1])
	}
	if !h.chunked {
		fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n", len(h.body))
		return io.MultiReader(&b, bytes.NewReader(h.body))
	}
	b.WriteString("Transfer-Encoding: chunked\r\n\r\n")
	var chunks []io.Reader
	chunks = append(chunks, &b)
	for body := h.body; len(body) > 0; {
		n := min(len(body), 64<<10)
		chunks = append(chunks, strings.NewReader(fmt.Sprintf("%x\r\n", n)), bytes.NewReader(body[:n]), strings.NewReader("\r\n"))
		body = body[n:]
	}
	chunks = append(chunks, strings.NewReader("0\r\n\r\n"))
	return io.MultiReader(chunks...)
}

const (
	goodKey    = "good-key-0123456789"
	limitedKey = "limited-key-0123456789"
	revokedKey = "revoked-key-0123456789"
)

func ev1(field string) []byte { return []byte(`{"type":"a",` + field + `}`) }

func hostileCases(t *testing.T) []hostile {
	big := bytes.Repeat([]byte("x"), 10<<20)
	copy(big, `{"type":"a","data":"`)
	var bomb bytes.Buffer
	bomb.WriteString(`{"type":"a","data":"`)
	bomb.Write(bytes.Repeat([]byte("a"), 20<<20)) // 20 MiB in about 20 KiB
	many := "[" + strings.Repeat(`{"type":"a"},`, 1000) + `{"type":"a"}]`
	deep := strings.Repeat("[", 100000)
	deepObj := `{"type":"a","data":` + strings.Repeat(`{"a":`, 40) + "1" + strings.Repeat("}", 40) + "}"
	return []hostile{
		// Who may post, and how.
		{name: "no API key", noKey: true, body: ev1(`"id":"x1"`), status: 401, code: "unauthorized"},
		{name: "wrong API key", key: "not-a-key", body: ev1(`"id":"x1"`), status: 401, code: "unauthorized"},
		{name: "revoked API key", key: revokedKey, body: ev1(`"id":"x1"`), status: 401, code: "unauthorized"},
		{name: "digest sent as the key", key: ingest.HashKey(goodKey), body: ev1(`"id":"x1"`), status: 401, code: "unauthorized"},
		{name: "key in the query string", noKey: true, path: "/v1/events?api_key=" + goodKey, body: ev1(`"id":"x1"`), status: 401, code: "unauthorized"},
		{name: "basic auth with the key", noKey: true, headers: []string{"Authorization", "Basic " + goodKey}, body: ev1(`"id":"x1"`), status: 401, code: "unauthorized"},
		{name: "rate-limited key", key: limitedKey, body: ev1(`"id":"x1"`), status: 429, code: "rate_limited"},
		{name: "GET", method: http.MethodGet, status: 405, code: "method_not_allowed"},
		{name: "PUT", method: http.MethodPut, body: ev1(`"id":"x1"`), status: 405, code: "method_not_allowed"},
		{name: "DELETE", method: http.MethodDelete, status: 405, code: "method_not_allowed"},
		// Content types and encodings.
		{name: "text/plain", ct: "text/plain", body: ev1(`"id":"x1"`), status: 415, code: "unsupported_media_type"},
		{name: "application/xml", ct: "application/xml", body: []byte(`<event type="a"/>`), status: 415, code: "unsupported_media_type"},
		{name: "form urlencoded", ct: "application/x-www-form-urlencoded", body: []byte("type=a"), status: 415, code: "unsupported_media_type"},
		{name: "multipart", ct: "multipart/form-data; boundary=x", body: ev1(`"id":"x1"`), status: 415, code: "unsupported_media_type"},
		{name: "json in latin1", ct: "application/json; charset=iso-8859-1", body: ev1(`"id":"x1"`), status: 415, code: "unsupported_media_type"},
		{name: "brotli", headers: []string{"Content-Encoding", "br"}, body: ev1(`"id":"x1"`), status: 415, code: "unsupported_encoding"},
		{name: "stacked gzip", headers: []string{"Content-Encoding", "gzip, gzip"}, body: gz(t, gz(t, ev1(`"id":"x1"`))), status: 415, code: "unsupported_encoding"},
		{name: "not gzip", headers: []string{"Content-Encoding", "gzip"}, body: ev1(`"id":"x1"`), status: 400, code: "bad_body"},
		// Sizes.
		{name: "10 MB body", body: big, status: 413, code: "too_large"},
		{name: "10 MB chunked body", body: big, chunked: true, status: 413, code: "too_large"},
		{name: "gzip bomb (20 MiB)", headers: []string{"Content-Encoding", "gzip"}, body: gz(t, bomb.Bytes()), status: 413, code: "too_large"},
		{name: "too many events", body: []byte(many), status: 413, code: "too_many_events"},
		{name: "event too large", body: ev1(`"data":"` + strings.Repeat("x", 70000) + `"`), status: 413, code: "invalid_events"},
		{name: "headers over max_header_bytes", headers: []string{"X-Pad", strings.Repeat("p", 80<<10)}, body: ev1(`"id":"x1"`), status: 431},
		// Shapes.
		{name: "empty body", body: nil, status: 400, code: "empty_body"},
		{name: "whitespace body", body: []byte(" \r\n\t "), status: 400, code: "empty_body"},
		{name: "empty array", body: []byte("[]"), status: 400, code: "no_events"},
		{name: "array of non-objects", body: []byte(`[1,"a",null,[]]`), status: 400, code: "invalid_events"},
		{name: "top-level string", body: []byte(`"a"`), status: 400, code: "invalid_events"},
		{name: "ndjson with a broken line", ct: "application/x-ndjson", body: []byte("{\"type\":\"a\"}\n{\"type\":\"b\"\n{\"type\":\"c\"}\n"), status: 400, code: "invalid_events"},
		{name: "ndjson sent as json", body: []byte("{\"type\":\"a\"}\n{\"type\":\"b\"}\n"), status: 400, code: "invalid_json"},
		{name: "trailing garbage", body: []byte(`{"type":"a"} x`), status: 400, code: "invalid_json"},
		{name: "trailing garbage after array", body: []byte(`[{"type":"a"}]]`), status: 400, code: "invalid_json"},
		{name: "one bad event among good ones", body: []byte(`[{"type":"a"},{"type":"b"},{"id":"no-type"}]`), status: 400, code: "invalid_events"},
		// Injection into NATS headers (Nats-Msg-Id is the id) and subjects (the type).
		{name: "CRLF in type", body: []byte(`{"type":"a\r\nNats-Msg-Id: x"}`), status: 400, code: "invalid_events"},
		{name: "LF in type", body: []byte(`{"type":"a\nb"}`), status: 400, code: "invalid_events"},
		{name: "NUL in type", body: []byte(`{"type":"a\u0000b"}`), status: 400, code: "invalid_events"},
		{name: "raw CRLF bytes in type", body: []byte("{\"type\":\"a\r\nb\"}"), status: 400, code: "invalid_json"},
		{name: "CRLF in id", body: ev1(`"id":"x\r\nNats-Expected-Stream: OTHER"`), status: 400, code: "invalid_events"},
		{name: "NUL in id", body: ev1(`"id":"x\u0000y"`), status: 400, code: "invalid_events"},
		{name: "raw NUL byte in id", body: ev1("\"id\":\"x\x00y\""), status: 400, code: "invalid_json"},
		{name: "subject wildcard a.*", body: []byte(`{"type":"a.*"}`), status: 400, code: "invalid_events"},
		{name: "subject wildcard a.>", body: []byte(`{"type":"a.>"}`), status: 400, code: "invalid_events"},
		{name: "subject wildcard >", body: []byte(`{"type":">"}`), status: 400, code: "invalid_events"},
		{name: "space in type", body: []byte(`{"type":"a b"}`), status: 400, code: "invalid_events"},
		{name: "empty subject token", body: []byte(`{"type":"a..b"}`), status: 400, code: "invalid_events"},
		{name: "JetStream API subject", body: []byte(`{"type":"$JS.API.STREAM.DELETE.EVENTS"}`), status: 400, code: "invalid_events"},
		{name: "path traversal in id", body: ev1(`"id":"../etc/passwd"`), status: 400, code: "invalid_events"},
		{name: "backslash traversal in id", body: ev1(`"id":"..\\..\\windows"`), status: 400, code: "invalid_events"},
		{name: "percent-encoded traversal in id", body: ev1(`"id":"%2e%2e%2fetc"`), status: 400, code: "invalid_events"},
		// Numbers, nesting, encodings.
		{name: "1e400", body: ev1(`"data":1e400`), status: 400, code: "invalid_number"},
		{name: "-1e999", body: ev1(`"data":-1e999`), status: 400, code: "invalid_number"},
		{name: "400-digit integer", body: ev1(`"data":1` + strings.Repeat("0", 399)), status: 400, code: "invalid_number"},
		{name: "NaN", body: ev1(`"data":NaN`), status: 400, code: "invalid_number"},
		{name: "Infinity", body: ev1(`"data":[Infinity]`), status: 400, code: "invalid_number"},
		{name: "100000 open brackets", body: []byte(deep), status: 400, code: "too_deep"},
		{name: "objects 40 deep", body: []byte(deepObj), status: 400, code: "too_deep"},
		{name: "invalid UTF-8", body: ev1("\"data\":\"a\xffb\""), status: 400, code: "invalid_encoding"},
		{name: "overlong UTF-8 solidus", body: ev1("\"data\":\"\xc0\xaf\""), status: 400, code: "invalid_encoding"},
		{name: "overlong UTF-8 NUL", body: ev1("\"id\":\"x\xc0\x80\""), status: 400, code: "invalid_encoding"},
		{name: "UTF-8 encoded surrogate", body: ev1("\"data\":\"\xed\xa0\x80\""), status: 400, code: "invalid_encoding"},
		{name: "lone surrogate escape", body: ev1(`"data":"\ud800"`), status: 400, code: "invalid_encoding"},
		{name: "byte-order mark", body: append([]byte("\xef\xbb\xbf"), ev1(`"id":"x1"`)...), status: 400, code: "invalid_encoding"},
		// Not UTF-8 from its first byte, which is no JSON value's start either.
		{name: "UTF-16 body", body: []byte("\xff\xfe{\x00\"\x00t\x00"), status: 400, code: "invalid_json"},
		// Keys.
		{name: "duplicate type", body: []byte(`{"type":"a","type":"b"}`), status: 400, code: "invalid_events"},
		{name: "duplicate type by escape", body: []byte(`{"type":"a","\u0074ype":"b"}`), status: 400, code: "invalid_events"},
		{name: "duplicate id", body: ev1(`"id":"x1","id":"x2"`), status: 400, code: "invalid_events"},
		{name: "duplicate key in data", body: ev1(`"data":{"x":1,"x":2}`), status: 400, code: "duplicate_key"},
		{name: "unknown field", body: ev1(`"admin":true`), status: 400, code: "invalid_events"},
		{name: "__proto__ field", body: ev1(`"__proto__":{"admin":true}`), status: 400, code: "invalid_events"},
		{name: "received_at from the client", body: ev1(`"received_at":"2024-01-01T00:00:00Z"`), status: 400, code: "invalid_events"},
		{name: "ts not RFC 3339", body: ev1(`"ts":"yesterday"`), status: 400, code: "invalid_events"},
		// Framing that net/http refuses (or rewrites) before the handler runs.
		{name: "two different Content-Lengths", raw: []byte("POST /v1/events HTTP/1.1\r\nHost: x\r\nX-API-Key: " + goodKey +
			"\r\nContent-Type: application/json\r\nContent-Length: 12\r\nContent-Length: 5\r\n\r\n{\"type\":\"a\"}"), status: 400},
		// net/http unfolds the continuation into Content-Type, which is then no known type.
		{name: "obsolete line folding", raw: []byte("POST /v1/events HTTP/1.1\r\nHost: x\r\nX-API-Key: " + goodKey +
			"\r\nContent-Type: application/json\r\n X-Folded: y\r\nContent-Length: 12\r\n\r\n{\"type\":\"a\"}"),
			status: 415, code: "unsupported_media_type"},
		{name: "bare LF in header value", raw: []byte("POST /v1/events HTTP/1.1\r\nHost: x\r\nX-API-Key: " + goodKey +
			"\rX-Injected: 1\r\nContent-Type: application/json\r\nContent-Length: 12\r\n\r\n{\"type\":\"a\"}"), status: 400},
	}
}

// Hostile and malformed requests against the whole service: each gets its
// status and code, and none of them stores anything, in the stream or in
// the spool. A valid request before and after, and one forced onto the
// spool, show that both counts do move when something is stored.
func TestHostileRequestsStoreNothing(t *testing.T) {
	keys := []string{
		"ci:" + ingest.HashKey(goodKey), "bulk:" + ingest.HashKey(limitedKey), "old:" + ingest.HashKey(revokedKey),
	}
	s := startService(t, map[string]string{
		"ingest.auth.api_keys":   strings.Join(keys, ","),
		"ingest.auth.rate_limit": "0.001",
		"ingest.auth.rate_burst": "100",
	})
	valid := hostile{body: []byte(`{"type":"control.event","data":{"ok":true}}`)}
	status, code, _ := s.exchange(t, valid.request(s.addr))
	require.Equal(t, 202, status, code)
	msgs0, recs0 := s.stored(t)
	require.EqualValues(t, 1, msgs0, "the control event is in the stream")

	// Revoke "old" as a reload would, and use up "bulk"'s burst.
	cfg := *s.cfg
	cfg.Ingest.Auth.APIKeys = cfg.Ingest.Auth.APIKeys[:2]
	s.h.Apply(ingest.SettingsFrom(&cfg))
	for range 100 {
		status, _, _ := s.exchange(t, hostile{key: limitedKey, body: nil}.request(s.addr))
		require.Equal(t, 400, status)
	}

	cases := hostileCases(t)
	require.GreaterOrEqual(t, len(cases), 40)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, code, header := s.exchange(t, tc.request(s.addr))
			require.Equal(t, tc.status, status, "code %q", code)
			require.Equal(t, tc.code, code)
			if status == 429 {
				require.NotEmpty(t, header.Get("Retry-After"))
			}
			msgs, recs := s.stored(t)
			require.Equal(t, msgs0, msgs, "published")
			require.Equal(t, recs0, recs, "spooled")
		})
	}

	// Nothing arrives late either: refused requests started no publish.
	time.Sleep(200 * time.Millisecond)
	msgs, recs := s.stored(t)
	require.Equal(t, msgs0, msgs)
	require.Equal(t, recs0, recs)

	status, code, _ = s.exchange(t, valid.request(s.addr))
	require.Equal(t, 202, status, code)
	msgs, _ = s.stored(t)
	require.Equal(t, msgs0+1, msgs, "a valid request after the table is stored")
	s.modes.Apply(degrade.ModeSettings{Force: "degraded", NormalAfter: time.Minute, CriticalAbove: 0.95, CriticalBelow: 0.8})
	status, code, _ = s.exchange(t, valid.request(s.addr))
	require.Equal(t, 202, status, code)
	_, recs = s.stored(t)
	require.Equal(t, recs0+1, recs, "a request forced onto the degraded path is spooled")
}
