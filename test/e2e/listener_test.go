package e2e

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// HTTPS on the public listener with a certificate made by the test: a
// client that trusts it posts over TLS 1.2 or later; plain HTTP, TLS 1.1
// and a client that does not trust the certificate get nowhere; a bad
// certificate file stops the binary at start, naming the key.
func TestIngestTLS(t *testing.T) {
	s := newSetup(t)
	cert, key := selfSigned(t, "ingest")
	ingest := start(t, "ingest", "-config", s.config, "-ingest.tls.cert_file", cert, "-ingest.tls.key_file", key)
	waitReady(t, s.admin) // the admin listener stays plain HTTP on loopback

	pem, err := os.ReadFile(cert)
	require.NoError(t, err)
	roots := x509.NewCertPool()
	require.True(t, roots.AppendCertsFromPEM(pem))
	client := func(c *tls.Config) *http.Client {
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: c}}
	}
	trusting := client(&tls.Config{RootCAs: roots})
	base := "https://" + s.public
	require.Eventually(t, func() bool {
		resp, err := trusting.Get(base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}, 30*time.Second, 50*time.Millisecond)

	resp, err := trusting.Post(base+"/v1/events", "application/json", strings.NewReader(`{"type":"tls.event","id":"tls-1"}`))
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, 202, resp.StatusCode, "%s", body)
	require.NotNil(t, resp.TLS)
	require.GreaterOrEqual(t, resp.TLS.Version, uint16(tls.VersionTLS12))
	require.Equal(t, "HTTP/1.1", resp.Proto)

	t.Run("plain HTTP", func(t *testing.T) {
		resp, err := http.Post("http://"+s.public+"/v1/events", "application/json", strings.NewReader(`{"type":"a"}`))
		if err == nil {
			resp.Body.Close()
			require.Equal(t, 400, resp.StatusCode)
		}
	})
	t.Run("TLS 1.1", func(t *testing.T) {
		_, err := client(&tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}).Get(base + "/healthz")
		require.ErrorContains(t, err, "protocol version")
	})
	t.Run("untrusted certificate", func(t *testing.T) {
		_, err := client(&tls.Config{}).Get(base + "/healthz")
		require.ErrorContains(t, err, "certificate")
	})
	require.Equal(t, 1.0, metricValue(t, s.admin, `levee_ingest_events_total{outcome="accepted",path="queue"}`))
	ingest.stop(t)

	t.Run("bad certificate file", func(t *testing.T) {
		requireExitsWith(t, "ingest", []string{"-config", s.config, "-ingest.tls.cert_file", key, "-ingest.tls.key_file", key}, "ingest.tls")
		requireExitsWith(t, "ingest", []string{"-config", s.config, "-ingest.tls.cert_file", cert}, "ingest.tls.cert_file")
	})
}

// readUntilClosed reads conn until the server closes it, at most limit,
// and returns what was read and when the close came (relative to begin).
func readUntilClosed(t *testing.T, conn net.Conn, begin time.Time, limit time.Duration) (string, time.Duration) {
	t.Helper()
	require.NoError(t, conn.SetReadDeadline(begin.Add(limit)))
	got, err := io.ReadAll(conn)
	elapsed := time.Since(begin)
	if errors.Is(err, os.ErrDeadlineExceeded) { // EOF or a reset is the server closing
		t.Fatalf("connection still open after %s (read %q)", elapsed, got)
	}
	return string(got), elapsed
}

// trickle writes b one byte every interval until it is written, the
// connection fails, or stop is closed.
func trickle(conn net.Conn, b []byte, interval time.Duration, stop <-chan struct{}) {
	for i := range b {
		if _, err := conn.Write(b[i : i+1]); err != nil {
			return
		}
		select {
		case <-stop:
			return
		case <-time.After(interval):
		}
	}
}

// Slow and oversized clients against the binary with short timeouts:
// headers sent a byte a second are cut off at read_header_timeout, a body
// sent slower than read_timeout is cut off at read_timeout without being
// accepted, headers over max_header_bytes get 431, an idle keep-alive
// connection is closed at idle_timeout.
func TestSlowClientsAreCutOff(t *testing.T) {
	s := newSetup(t)
	const readHeader, read, idle = time.Second, 2 * time.Second, 2 * time.Second
	ingest := start(t, "ingest", "-config", s.config,
		"-ingest.http.read_header_timeout", readHeader.String(), "-ingest.http.read_timeout", read.String(),
		"-ingest.http.idle_timeout", idle.String(), "-ingest.http.max_header_bytes", "4096")
	waitReady(t, s.public)
	const slack = time.Second
	request := func(extraHeader string, body string) string {
		return fmt.Sprintf("POST /v1/events HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n%sContent-Length: %d\r\n\r\n%s",
			s.public, extraHeader, len(body), body)
	}
	dial := func(t *testing.T) net.Conn {
		conn, err := net.Dial("tcp", s.public)
		require.NoError(t, err)
		t.Cleanup(func() { conn.Close() })
		return conn
	}

	t.Run("headers one byte per second", func(t *testing.T) {
		conn := dial(t)
		begin, stop := time.Now(), make(chan struct{})
		defer close(stop)
		go trickle(conn, []byte(request("", `{"type":"slow.headers"}`)), time.Second, stop)
		got, elapsed := readUntilClosed(t, conn, begin, readHeader+5*time.Second)
		t.Logf("disconnected after %s with %q", elapsed.Round(time.Millisecond), firstLine(got))
		require.NotContains(t, firstLine(got), " 202 ")
		require.GreaterOrEqual(t, elapsed, readHeader-100*time.Millisecond)
		require.Less(t, elapsed, readHeader+slack)
	})
	t.Run("body slower than read_timeout", func(t *testing.T) {
		conn := dial(t)
		body := `{"type":"slow.body","data":"` + strings.Repeat("x", 100) + `"}`
		head, _, _ := strings.Cut(request("", body), "\r\n\r\n")
		begin, stop := time.Now(), make(chan struct{})
		defer close(stop)
		_, err := conn.Write([]byte(head + "\r\n\r\n"))
		require.NoError(t, err)
		go trickle(conn, []byte(body), 100*time.Millisecond, stop) // 13 s for the whole body
		got, elapsed := readUntilClosed(t, conn, begin, read+5*time.Second)
		t.Logf("cut off after %s with %q", elapsed.Round(time.Millisecond), firstLine(got))
		require.NotContains(t, firstLine(got), " 202 ")
		require.GreaterOrEqual(t, elapsed, read-100*time.Millisecond)
		require.Less(t, elapsed, read+slack)
	})
	t.Run("headers over max_header_bytes", func(t *testing.T) {
		conn := dial(t)
		require.NoError(t, conn.SetDeadline(time.Now().Add(10*time.Second)))
		go func() {
			_, _ = conn.Write([]byte(request("X-Pad: "+strings.Repeat("p", 16<<10)+"\r\n", `{"type":"big.headers"}`)))
		}()
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusRequestHeaderFieldsTooLarge, resp.StatusCode)
	})
	t.Run("headers within max_header_bytes", func(t *testing.T) {
		conn := dial(t)
		require.NoError(t, conn.SetDeadline(time.Now().Add(10*time.Second)))
		_, err := conn.Write([]byte(request("X-Pad: "+strings.Repeat("p", 3<<10)+"\r\n", `{"type":"fine.headers"}`)))
		require.NoError(t, err)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusAccepted, resp.StatusCode)
	})
	t.Run("idle keep-alive connection", func(t *testing.T) {
		conn := dial(t)
		require.NoError(t, conn.SetDeadline(time.Now().Add(10*time.Second)))
		_, err := conn.Write([]byte(request("", `{"type":"idle.after"}`)))
		require.NoError(t, err)
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		require.Equal(t, http.StatusAccepted, resp.StatusCode)
		begin := time.Now()
		rest, err := io.ReadAll(br)
		elapsed := time.Since(begin)
		require.NoError(t, err, "closed by the server, not by the deadline")
		require.Empty(t, rest)
		t.Logf("idle connection closed after %s", elapsed.Round(time.Millisecond))
		require.GreaterOrEqual(t, elapsed, idle-100*time.Millisecond)
		require.Less(t, elapsed, idle+slack)
	})
	// Only the two complete requests were accepted, and the service still
	// answers.
	require.Equal(t, 2.0, metricValue(t, s.admin, `levee_ingest_events_total{outcome="accepted",path="queue"}`))
	postEvents(t, s.public, 0, 1)
	ingest.stop(t)
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\r\n")
	return line
}
