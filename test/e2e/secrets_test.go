package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/levee-dev/levee/internal/ingest"
	"github.com/levee-dev/levee/internal/pgtest"
)

// newSecret returns a distinctive value that must never reach a log.
func newSecret(t *testing.T, label string) string {
	b := make([]byte, 8)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return label + "-" + hex.EncodeToString(b)
}

// passwordPostgres starts a PostgreSQL server where role levee_pw logs in
// with password only, owning database levee_sec; it returns the DSN for a
// given password.
func passwordPostgres(t *testing.T, password string) func(pw string) string {
	t.Helper()
	pg, err := pgtest.Start()
	require.NoError(t, err)
	t.Cleanup(pg.Stop)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, pg.Admin)
	require.NoError(t, err)
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, fmt.Sprintf("CREATE ROLE levee_pw LOGIN PASSWORD '%s'", password))
	require.NoError(t, err)
	_, err = conn.Exec(ctx, "CREATE DATABASE levee_sec OWNER levee_pw")
	require.NoError(t, err)
	// pgtest trusts every loopback connection; levee_pw must prove itself.
	hba := filepath.Join(pg.Dir, "data", "pg_hba.conf")
	old, err := os.ReadFile(hba)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(hba, append([]byte("host all levee_pw 127.0.0.1/32 scram-sha-256\n"), old...), 0o600))
	_, err = conn.Exec(ctx, "SELECT pg_reload_conf()")
	require.NoError(t, err)
	dsn := func(pw string) string {
		return fmt.Sprintf("postgres://levee_pw:%s@127.0.0.1:%d/levee_sec?sslmode=disable", pw, pg.Port)
	}
	require.Eventually(t, func() bool {
		c, err := pgx.Connect(ctx, dsn("not-"+password))
		if err == nil {
			c.Close(ctx)
			return false
		}
		var pgErr *pgconn.PgError
		return errors.As(err, &pgErr) && pgErr.Code == "28P01"
	}, 10*time.Second, 50*time.Millisecond, "a wrong password is refused")
	c, err := pgx.Connect(ctx, dsn(password))
	require.NoError(t, err)
	c.Close(ctx)
	return dsn
}

func pgCount(t *testing.T, dsn string) int64 {
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, dsn)
	require.NoError(t, err)
	defer c.Close(ctx)
	var n int64
	if err := c.QueryRow(ctx, "SELECT count(*) FROM events").Scan(&n); err != nil {
		return 0
	}
	return n
}

func postWithKey(t *testing.T, addr, header, value string) int {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://"+addr+"/v1/events",
		strings.NewReader(`[{"type":"secret.test"},{"type":"secret.test"}]`))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	if header != "" {
		req.Header.Set(header, value)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// Ingest and worker at log.level debug, with an API key, NATS user and
// password (in the URL for ingest, as keys for the worker) and a
// PostgreSQL password: requests with right and wrong keys, a reload that
// changes every secret, and processes started with a wrong NATS or
// database password or a DSN that does not parse. No secret, right or wrong, old or new, appears in
// any output.
func TestLogsHoldNoSecrets(t *testing.T) {
	sec := map[string]string{}
	for _, label := range []string{"api-key", "api-key-new", "api-key-wrong", "nats-pw", "nats-pw-new", "nats-pw-wrong", "db-pw", "db-pw-new", "db-pw-wrong", "db-pw-malformed"} {
		sec[label] = newSecret(t, label)
	}
	dsn := passwordPostgres(t, sec["db-pw"])
	n := startSecureNATS(t, fmt.Sprintf("authorization {\n  user: levee\n  password: %q\n}", sec["nats-pw"]))
	dir := t.TempDir()
	public, admin, wadmin := freePort(t), freePort(t), freePort(t)
	ingestFile, workerFile := filepath.Join(dir, "ingest.yaml"), filepath.Join(dir, "worker.yaml")
	ingestYAML := func(key, natsPw string) string {
		return fmt.Sprintf(`
ingest:
  listen: %q
  admin_listen: %q
  auth:
    api_keys: ["ci:%s"]
nats:
  url: "nats://levee:%s@%s"
degrade:
  spool:
    dir: %q
log:
  level: debug
reload:
  interval: 200ms
`, public, admin, ingest.HashKey(key), natsPw, n.addr, filepath.Join(dir, "spool"))
	}
	workerYAML := func(natsPw, dbPw string) string {
		return fmt.Sprintf(`
nats:
  url: "nats://%s"
  user: levee
  password: %q
worker:
  admin_listen: %q
sink:
  kind: postgres
  postgres:
    dsn: %q
log:
  level: debug
reload:
  interval: 200ms
`, n.addr, natsPw, wadmin, dsn(dbPw))
	}
	writeConfig(t, ingestFile, ingestYAML(sec["api-key"], sec["nats-pw"]))
	writeConfig(t, workerFile, workerYAML(sec["nats-pw"], sec["db-pw"]))

	ing := start(t, "ingest", "-config", ingestFile)
	waitReady(t, public)
	wrk := start(t, "worker", "-config", workerFile)
	waitReady(t, wadmin)
	outputs := map[string]func() string{"ingest": ing.out.String, "worker": wrk.out.String}

	for range 5 {
		require.Equal(t, 202, postWithKey(t, public, "Authorization", "Bearer "+sec["api-key"]))
	}
	require.Equal(t, 401, postWithKey(t, public, "Authorization", "Bearer "+sec["api-key-wrong"]))
	require.Equal(t, 401, postWithKey(t, public, "X-API-Key", sec["api-key-wrong"]))
	require.Equal(t, 401, postWithKey(t, public, "Authorization", "Basic "+sec["api-key"]))
	require.Equal(t, 401, postWithKey(t, public, "", ""))
	require.Eventually(t, func() bool { return pgCount(t, dsn(sec["db-pw"])) == 10 }, 30*time.Second, 100*time.Millisecond)

	// One reload changing every secret: the API key is live, the others
	// need a restart (and are named, not shown, in the warning).
	writeConfig(t, ingestFile, ingestYAML(sec["api-key-new"], sec["nats-pw-new"]))
	writeConfig(t, workerFile, workerYAML(sec["nats-pw-new"], sec["db-pw-new"]))
	require.Eventually(t, func() bool {
		return postWithKey(t, public, "X-API-Key", sec["api-key-new"]) == 202
	}, 10*time.Second, 100*time.Millisecond, "the new key is accepted after the reload")
	require.Equal(t, 401, postWithKey(t, public, "X-API-Key", sec["api-key"]), "the old key is revoked")
	require.Eventually(t, func() bool {
		return strings.Contains(ing.out.String(), "needs a restart") && strings.Contains(wrk.out.String(), "needs a restart")
	}, 10*time.Second, 100*time.Millisecond)

	// Wrong credentials: ingest and worker refused by NATS exit with an
	// error; a worker refused by PostgreSQL retries, logging each failure.
	outputs["ingest, wrong NATS password in the URL"] = constant(requireExitsWith(t, "ingest", []string{"-config", ingestFile,
		"-ingest.listen", freePort(t), "-ingest.admin_listen", freePort(t),
		"-nats.url", fmt.Sprintf("nats://levee:%s@%s", sec["nats-pw-wrong"], n.addr)}, "authorization violation"))
	outputs["worker, wrong NATS password"] = constant(requireExitsWith(t, "worker", []string{"-config", workerFile,
		"-worker.admin_listen", freePort(t), "-nats.password", sec["nats-pw-wrong"]}, "authorization violation"))
	bad := start(t, "worker", "-config", workerFile, "-worker.admin_listen", freePort(t),
		"-nats.password", sec["nats-pw"], "-sink.postgres.dsn", dsn(sec["db-pw-wrong"]))
	require.Eventually(t, func() bool {
		return strings.Contains(bad.out.String(), "password authentication failed")
	}, 20*time.Second, 100*time.Millisecond, "the worker logs why it cannot open the sink")
	outputs["worker, wrong database password"] = bad.out.String
	malformed := start(t, "worker", "-config", workerFile, "-worker.admin_listen", freePort(t), "-nats.password", sec["nats-pw"],
		"-sink.postgres.dsn", fmt.Sprintf("postgres://levee_pw:%s@127.0.0.1:badport/levee_sec", sec["db-pw-malformed"]))
	require.Eventually(t, func() bool {
		return strings.Contains(malformed.out.String(), "sink.postgres.dsn")
	}, 20*time.Second, 100*time.Millisecond, "the worker logs that it cannot parse the DSN")
	outputs["worker, malformed DSN"] = malformed.out.String

	wrk.stop(t)
	ing.stop(t)
	require.Contains(t, ing.out.String(), `"key":"ci"`, "debug lines name the key")
	require.Contains(t, ing.out.String(), `"level":"debug"`)
	for proc, out := range outputs {
		text := out()
		for label, s := range sec {
			if i := strings.Index(text, s); i >= 0 {
				start := strings.LastIndex(text[:i], "\n") + 1
				end := strings.Index(text[i:], "\n")
				if end < 0 {
					end = len(text) - i
				}
				t.Errorf("%s: %s appears in its output: %s", proc, label, text[start:i+end])
			}
		}
	}
}

func constant(s string) func() string { return func() string { return s } }
