package sink_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/levee-dev/levee/internal/config"
	"github.com/levee-dev/levee/internal/event"
	"github.com/levee-dev/levee/internal/pgtest"
	"github.com/levee-dev/levee/internal/sink"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func openSinks(t *testing.T) map[string]sink.Sink {
	t.Helper()
	ctx := context.Background()
	sq, err := sink.Open(ctx, config.Sink{Kind: "sqlite", Table: "events",
		SQLite: config.SQLite{Path: filepath.Join(t.TempDir(), "levee.db"), Synchronous: "full", BusyTimeout: 5 * time.Second}})
	require.NoError(t, err)
	pg, err := sink.Open(ctx, config.Sink{Kind: "postgres", Table: "events",
		Postgres: config.Postgres{DSN: pgtest.DSN(t), MaxConns: 4}})
	require.NoError(t, err)
	t.Cleanup(func() { sq.Close(); pg.Close() })
	return map[string]sink.Sink{"sqlite": sq, "postgres": pg}
}

func events(prefix string, n int) []event.Event {
	ts := time.Date(2026, 1, 2, 3, 4, 5, 123456000, time.UTC)
	evs := make([]event.Event, n)
	for i := range evs {
		evs[i] = event.Event{
			ID: fmt.Sprintf("%s-%d", prefix, i), Type: "user.signup",
			TS: ts, ReceivedAt: ts.Add(time.Second),
			Data: json.RawMessage(fmt.Sprintf(`{"n": %d, "s": "caf\u00e9 \\u0000"}`, i)),
		}
	}
	return evs
}

func TestWriteIsIdempotent(t *testing.T) {
	for name, s := range openSinks(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			// Small batches take the direct path, large ones COPY (Postgres).
			for _, n := range []int{1, 10, 500} {
				evs := events(fmt.Sprintf("w%d", n), n)
				inserted, err := s.Write(ctx, evs)
				require.NoError(t, err)
				require.Equal(t, n, inserted)
				inserted, err = s.Write(ctx, evs)
				require.NoError(t, err)
				require.Zero(t, inserted, "rewriting the same events adds no row")
			}
			// A batch mixing stored and new events, with an id twice.
			mixed := append(events("w10", 3), events("new", 2)...)
			mixed = append(mixed, mixed[len(mixed)-1])
			inserted, err := s.Write(ctx, mixed)
			require.NoError(t, err)
			require.Equal(t, 2, inserted)
			n, err := s.Count(ctx)
			require.NoError(t, err)
			require.EqualValues(t, 1+10+500+2, n)
		})
	}
}

func TestRowsKeepEveryField(t *testing.T) {
	sinks := openSinks(t)
	ctx := context.Background()
	ev := events("f", 1)[0]
	for name, s := range sinks {
		_, err := s.Write(ctx, []event.Event{ev})
		require.NoError(t, err, name)
	}
	var typ, ts, rec, data string
	err := sinks["sqlite"].(*sink.SQLite).DB().QueryRowContext(ctx,
		"SELECT type, ts, received_at, data FROM events WHERE id = ?", ev.ID).Scan(&typ, &ts, &rec, &data)
	require.NoError(t, err)
	require.Equal(t, []string{"user.signup", "2026-01-02T03:04:05.123456Z", "2026-01-02T03:04:06.123456Z", string(ev.Data)},
		[]string{typ, ts, rec, data})

	var pts, prec time.Time
	err = sinks["postgres"].(*sink.Postgres).Pool().QueryRow(ctx,
		"SELECT type, ts, received_at, data::text FROM events WHERE id = $1", ev.ID).Scan(&typ, &pts, &prec, &data)
	require.NoError(t, err)
	require.Equal(t, "user.signup", typ)
	require.True(t, pts.Equal(ev.TS), "ts %v", pts)
	require.True(t, prec.Equal(ev.ReceivedAt))
	require.Equal(t, string(ev.Data), data, "json column keeps the bytes as sent")
}

func TestPostgresDataErrorIsClassified(t *testing.T) {
	s := openSinks(t)["postgres"]
	for _, n := range []int{1, 100} { // direct and COPY paths
		evs := events(fmt.Sprintf("bad%d", n), n)
		evs[n/2].ID = "nul\x00byte" // PostgreSQL text cannot hold NUL
		_, err := s.Write(context.Background(), evs)
		require.Error(t, err)
		require.True(t, sink.IsDataError(err), "%v", err)
	}
	n, err := s.Count(context.Background())
	require.NoError(t, err)
	require.Zero(t, n, "a failed batch stores nothing")
}

func TestPostgresUnavailableIsNotDataError(t *testing.T) {
	ctx := context.Background()
	pg, err := sink.Open(ctx, config.Sink{Kind: "postgres", Table: "events",
		Postgres: config.Postgres{DSN: pgtest.DSN(t), MaxConns: 2}})
	require.NoError(t, err)
	pg.Close()
	_, err = pg.Write(ctx, events("x", 1))
	require.Error(t, err)
	require.False(t, sink.IsDataError(err))
}
