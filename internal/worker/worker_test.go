package worker_test

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/levee-dev/levee/internal/config"
	"github.com/levee-dev/levee/internal/pgtest"
	"github.com/levee-dev/levee/internal/queue"
)

func TestMain(m *testing.M) {
	code := pgtest.Main(m)
	if code == 0 {
		if err := goleak.Find(goleak.IgnoreCurrent(),
			// pgx, nats.go and the embedded server stop their own goroutines
			// asynchronously after Close; the pipeline's own must be gone.
			goleak.IgnoreTopFunction("github.com/jackc/pgx/v5/pgxpool.(*Pool).backgroundHealthCheck"),
			goleak.IgnoreTopFunction("time.Sleep"),
			goleak.IgnoreAnyFunction("github.com/nats-io/nats-server/v2/server.(*Server).Start.func1"),
		); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// 8 concurrent clients post 100,000 events in bulk requests: exactly
// 100,000 rows with unique ids; posting them all again adds none.
func TestBulkLoadExactlyOnce(t *testing.T) {
	for _, kind := range []string{"sqlite", "postgres"} {
		for _, packing := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/packing=%v", kind, packing), func(t *testing.T) {
				e := newEnv(t, kind, func(c *config.Config) { c.Optimization.Packing = packing })
				srv := e.startIngest()
				w := e.startWorker(e.sink)
				defer w.stop(t)

				const clients, total, perReq = 8, 100_000, 250
				postAll := func() {
					var wg sync.WaitGroup
					for c := range clients {
						wg.Go(func() {
							for i := c * perReq; i < total; i += clients * perReq {
								status, a := post(t, srv.URL, "application/json", bulk("ev", i, perReq))
								require.Equal(t, 202, status)
								require.Equal(t, perReq, a.Accepted)
								require.Equal(t, "queue", a.Path)
							}
						})
					}
					wg.Wait()
				}
				postAll()
				e.waitRows(total, 2*time.Minute)
				postAll()
				e.waitRows(total, 2*time.Minute)
			})
		}
	}
}

// A worker that stored rows but dies before acking (its connection closes
// mid-batch) loses nothing: another worker takes over after AckWait, and
// the rows it writes again are not duplicated.
func TestWorkerDeathLosesNothing(t *testing.T) {
	for _, kind := range []string{"sqlite", "postgres"} {
		t.Run(kind, func(t *testing.T) {
			e := newEnv(t, kind, nil)
			srv := e.startIngest()
			const total = 20_000
			for i := 0; i < total; i += 500 {
				status, _ := post(t, srv.URL, "application/json", bulk("d", i, 500))
				require.Equal(t, 202, status)
			}
			gate := newGateSink(e.sink)
			a := e.startWorker(gate)
			select {
			case <-gate.entered:
			case <-time.After(30 * time.Second):
				t.Fatal("first worker never wrote")
			}
			a.nc.Close() // the process dies: no ack will ever arrive
			close(gate.release)
			a.cancel()
			<-a.done
			require.Positive(t, gate.rows.Load(), "the dead worker stored rows it never acked")

			b := e.startWorker(e.sink)
			defer b.stop(t)
			e.waitRows(total, 2*time.Minute)
		})
	}
}

// Two workers on the same durable consumer share the load.
func TestWorkersShareLoad(t *testing.T) {
	e := newEnv(t, "postgres", func(c *config.Config) {
		c.Queue.Pack.MaxEvents = 50 // many messages, so that both workers get some
		c.Worker.FetchMax = 20
	})
	srv := e.startIngest()
	s1, s2 := &countingSink{Sink: e.sink}, &countingSink{Sink: e.sink}
	w1, w2 := e.startWorker(s1), e.startWorker(s2)
	const total = 40_000
	var wg sync.WaitGroup
	for c := range 4 {
		wg.Go(func() {
			for i := c * 500; i < total; i += 4 * 500 {
				status, _ := post(t, srv.URL, "application/json", bulk("s", i, 500))
				require.Equal(t, 202, status)
			}
		})
	}
	wg.Wait()
	e.waitRows(total, 2*time.Minute)
	w1.stop(t)
	w2.stop(t)
	t.Logf("worker 1 wrote %d events, worker 2 wrote %d", s1.rows.Load(), s2.rows.Load())
	require.Positive(t, s1.rows.Load())
	require.Positive(t, s2.rows.Load())
	require.Equal(t, int64(total), s1.rows.Load()+s2.rows.Load())
}

// A message that cannot be decoded goes to the DLQ with its reason; a pack
// with one bad record sends that record alone to the DLQ and the rest of
// the pack is written; neither blocks the events behind it.
func TestPoisonMessagesGoToDLQ(t *testing.T) {
	e := newEnv(t, "sqlite", nil)
	nc, js := e.connect()
	defer nc.Close()
	ctx := context.Background()
	prefix := e.cfg.NATS.Stream.SubjectsPrefix

	_, err := js.PublishMsg(ctx, &nats.Msg{Subject: prefix + ".junk", Data: []byte("not json"),
		Header: nats.Header{queue.HeaderFormat: []string{queue.FormatJSON}}})
	require.NoError(t, err)

	var w queue.PackWriter
	good := decodeBulk(t, bulk("p", 0, 3))
	for i := range good {
		w.Add(&good[i])
	}
	bad := good[1]
	bad.ID = "bad-record"
	bad.Type = "has space" // breaks the event rules inside a well-formed pack
	w.Add(&bad)
	data, id := w.Finish()
	_, err = js.PublishMsg(ctx, &nats.Msg{Subject: queue.PackSubject(prefix), Data: data, Header: nats.Header{
		queue.HeaderFormat: []string{queue.FormatPack}, jetstream.MsgIDHeader: []string{id}}})
	require.NoError(t, err)

	srv := e.startIngest()
	status, _ := post(t, srv.URL, "application/json", bulk("after", 0, 10))
	require.Equal(t, 202, status)

	wk := e.startWorker(e.sink)
	defer wk.stop(t)
	e.waitRows(13, 30*time.Second)

	dlq, err := js.Stream(ctx, e.cfg.NATS.DLQ.Name)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		info, err := dlq.Info(ctx)
		return err == nil && info.State.Msgs == 2
	}, 10*time.Second, 50*time.Millisecond)
	reasons := map[string]string{}
	for _, subj := range []string{"undecodable", "invalid_event"} {
		m, err := dlq.GetLastMsgForSubject(ctx, e.cfg.NATS.DLQ.Subject+"."+subj)
		require.NoError(t, err)
		reasons[subj] = m.Header.Get(queue.HeaderReason)
		require.NotEmpty(t, m.Header.Get("Levee-Stream-Seq"))
	}
	require.Contains(t, reasons["undecodable"], "undecodable:")
	require.Contains(t, reasons["invalid_event"], "type must be")
	require.Equal(t, 1.0, value(t, wk, "levee_dlq_events_total", "reason", "undecodable"))
	require.Equal(t, 1.0, value(t, wk, "levee_dlq_events_total", "reason", "invalid_event"))
}
