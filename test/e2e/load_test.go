package e2e

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// natsProc is a nats-server process with JetStream, restartable on the same
// port and store.
type natsProc struct {
	t     *testing.T
	addr  string
	store string
	p     *proc
}

func startNATS(t *testing.T) *natsProc {
	n := &natsProc{t: t, addr: freePort(t), store: t.TempDir()}
	n.start()
	return n
}

func (n *natsProc) url() string { return "nats://" + n.addr }

func (n *natsProc) start() {
	host, port := splitAddr(n.t, n.addr)
	n.p = start(n.t, "nats-server", "-js", "-sd", n.store, "-a", host, "-p", port)
	require.Eventually(n.t, func() bool {
		c, err := net.Dial("tcp", n.addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	}, 10*time.Second, 20*time.Millisecond)
}

// stop shuts the server down cleanly (SIGTERM is lame duck in nats-server;
// SIGINT stops at once, after flushing the store).
func (n *natsProc) stop() {
	require.NoError(n.t, n.p.cmd.Process.Signal(syscall.SIGINT))
	select {
	case err := <-n.p.done:
		n.p.done <- err // for the cleanup
	case <-time.After(20 * time.Second):
		n.t.Fatal("nats-server did not stop")
	}
}

// poster runs clients that post bulk requests of events with unique ids
// and records every answer.
type poster struct {
	url    string
	prefix string
	per    int
	pace   time.Duration // pause between a client's requests (0 = back to back)
	next   atomic.Int64

	mu       sync.Mutex
	accepted map[string]struct{}
	status   map[int]int
	paths    map[string]int
	retryHdr []string
}

func newPoster(url, prefix string, per int) *poster {
	return &poster{url: url, prefix: prefix, per: per,
		accepted: map[string]struct{}{}, status: map[int]int{}, paths: map[string]int{}}
}

var client = &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

// postOnce sends one request and records its outcome.
func (p *poster) postOnce() (int, string) {
	first := p.next.Add(int64(p.per)) - int64(p.per)
	var b bytes.Buffer
	ids := make([]string, p.per)
	b.WriteByte('[')
	for i := range p.per {
		ids[i] = fmt.Sprintf("%s-%d", p.prefix, first+int64(i))
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":%q,"type":"e2e.load","data":{"n":%d,"pad":"%080d"}}`, ids[i], first+int64(i), i)
	}
	b.WriteByte(']')
	resp, err := client.Post(p.url+"/v1/events", "application/json", &b)
	if err != nil {
		p.mu.Lock()
		p.status[-1]++
		p.mu.Unlock()
		return -1, ""
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var a struct {
		Accepted int      `json:"accepted"`
		IDs      []string `json:"ids"`
		Path     string   `json:"path"`
	}
	_ = json.Unmarshal(body, &a)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.status[resp.StatusCode]++
	if resp.StatusCode == http.StatusAccepted {
		for _, id := range ids {
			p.accepted[id] = struct{}{}
		}
		p.paths[a.Path]++
	}
	if ra := resp.Header.Get("Retry-After"); ra != "" {
		p.retryHdr = append(p.retryHdr, ra)
	}
	return resp.StatusCode, a.Path
}

// run posts with clients goroutines until stop is closed.
func (p *poster) run(clients int, stop <-chan struct{}) *sync.WaitGroup {
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				case <-time.After(p.pace):
				}
				p.postOnce()
			}
		})
	}
	return &wg
}

func (p *poster) snapshot() (accepted int, status map[int]int, paths map[string]int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	status, paths = map[int]int{}, map[string]int{}
	for k, v := range p.status {
		status[k] = v
	}
	for k, v := range p.paths {
		paths[k] = v
	}
	return len(p.accepted), status, paths
}

// sinkIDs reads the ids with the poster's prefix from the sink, and the
// total and distinct counts.
type sinkReader func(t *testing.T, prefix string) (ids map[string]struct{}, total int)

func sqliteReader(path string) sinkReader {
	return func(t *testing.T, prefix string) (map[string]struct{}, int) {
		d, err := sql.Open("sqlite", "file:"+path+"?mode=ro&_pragma=busy_timeout(10000)")
		require.NoError(t, err)
		defer d.Close()
		return readIDs(t, func(q string) (rowsIter, error) {
			r, err := d.Query(q, prefix+"-%")
			return r, err
		})
	}
}

func pgReader(dsn string) sinkReader {
	return func(t *testing.T, prefix string) (map[string]struct{}, int) {
		ctx := context.Background()
		c, err := pgx.Connect(ctx, dsn)
		if err != nil {
			return map[string]struct{}{}, 0
		}
		defer c.Close(ctx)
		return readIDs(t, func(q string) (rowsIter, error) {
			q = replaceQ(q)
			r, err := c.Query(ctx, q, prefix+"-%")
			return pgRows{r}, err
		})
	}
}

type rowsIter interface {
	Next() bool
	Scan(...any) error
	Close() error
}

type pgRows struct{ pgx.Rows }

func (r pgRows) Close() error { r.Rows.Close(); return nil }

func replaceQ(q string) string {
	out := []byte{}
	for i := 0; i < len(q); i++ {
		if q[i] == '?' {
			out = append(out, '$', '1')
			continue
		}
		out = append(out, q[i])
	}
	return string(out)
}

func readIDs(t *testing.T, query func(string) (rowsIter, error)) (map[string]struct{}, int) {
	rows, err := query("SELECT id FROM events WHERE id LIKE ?")
	if err != nil {
		return map[string]struct{}{}, 0
	}
	defer rows.Close()
	ids := map[string]struct{}{}
	total := 0
	for rows.Next() {
		var id string
		require.NoError(t, rows.Scan(&id))
		ids[id] = struct{}{}
		total++
	}
	return ids, total
}

// requireExactlyOnce waits until every accepted event is in the sink, then
// checks that it holds each exactly once and nothing else of the poster's.
func requireExactlyOnce(t *testing.T, p *poster, read sinkReader, deadline time.Duration) {
	t.Helper()
	p.mu.Lock()
	want := len(p.accepted)
	p.mu.Unlock()
	var ids map[string]struct{}
	var total int
	require.Eventually(t, func() bool {
		ids, total = read(t, p.prefix)
		return len(ids) >= want
	}, deadline, 250*time.Millisecond, "sink has %d of %d accepted events", len(ids), want)
	time.Sleep(time.Second)
	ids, total = read(t, p.prefix)
	require.Equal(t, total, len(ids), "no id twice")
	missing := 0
	for id := range p.accepted {
		if _, ok := ids[id]; !ok {
			missing++
		}
	}
	require.Zero(t, missing, "accepted events missing from the sink")
	// Events of requests that failed (not 202) may still have landed (a
	// publish that timed out); they are not counted as accepted.
	t.Logf("accepted %d, in sink %d (unique), extra from unanswered requests %d", want, len(ids), len(ids)-want)
}

// writeConfig writes a YAML config file.
func writeConfig(t *testing.T, path, yaml string) {
	t.Helper()
	tmp := path + ".tmp"
	require.NoError(t, os.WriteFile(tmp, []byte(yaml), 0o644))
	require.NoError(t, os.Rename(tmp, path))
}

func splitAddr(t *testing.T, addr string) (string, string) {
	host, port, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	return host, port
}

func kill9(t *testing.T, p *proc) {
	t.Helper()
	require.NoError(t, p.cmd.Process.Kill())
	<-p.done
	p.done <- nil
}
