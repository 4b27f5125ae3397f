package loadgen

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"
)

func sqliteSink(t *testing.T) (*sql.DB, SinkConfig) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "levee.db")
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_pragma=synchronous(OFF)&_pragma=busy_timeout(5000)")
	require.NoError(t, err)
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	_, err = db.Exec(`CREATE TABLE events (id TEXT PRIMARY KEY, type TEXT NOT NULL, ts TEXT NOT NULL, received_at TEXT NOT NULL, data TEXT NOT NULL)`)
	require.NoError(t, err)
	return db, SinkConfig{Kind: SinkSQLite, SQLitePath: path, Table: "events"}
}

func insert(t *testing.T, db *sql.DB, ids ...string) {
	t.Helper()
	tx, err := db.Begin()
	require.NoError(t, err)
	for _, id := range ids {
		_, err := tx.Exec(`INSERT INTO events VALUES (?, 't', 'ts', 'ts', '{}')`, id)
		require.NoError(t, err)
	}
	require.NoError(t, tx.Commit())
}

func TestCheckFindsLostUnexpectedAndUnknown(t *testing.T) {
	db, sink := sqliteSink(t)
	accepted, unknown := &IDSet{}, &IDSet{}
	accepted.AddRange(0, 100)
	unknown.AddRange(200, 10)
	var ids []string
	for n := range int64(100) {
		if n != 5 {
			ids = append(ids, ID("pfx", n))
		}
	}
	insert(t, db, ids...)
	insert(t, db, ID("pfx", 200), ID("pfx", 300), "pfx-abc", "pfxx-1", "pfx.2-1", "other-5")

	chk := NewChecker(CheckConfig{Sink: sink, Prefix: "pfx", DrainTimeout: 300 * time.Millisecond, Poll: 20 * time.Millisecond}, zaptest.NewLogger(t))
	res, err := chk.Check(context.Background(), accepted, unknown, time.Now())
	require.NoError(t, err)
	require.False(t, res.OK)
	require.True(t, res.Drained)
	require.EqualValues(t, 100, res.Accepted)
	require.EqualValues(t, 102, res.Rows) // 99 + 200 + 300 + pfx-abc; other prefixes excluded
	require.EqualValues(t, 1, res.Lost)
	require.Equal(t, []string{"pfx-5"}, res.LostSample)
	require.EqualValues(t, 1, res.Unexpected)
	require.Equal(t, []string{"pfx-300"}, res.UnexpectedSample)
	require.EqualValues(t, 1, res.UnknownOutcome)
	require.EqualValues(t, 1, res.Foreign)
	require.Zero(t, res.Duplicates)
}

func TestCheckWaitsForTheSinkToCatchUp(t *testing.T) {
	db, sink := sqliteSink(t)
	accepted := &IDSet{}
	accepted.AddRange(0, 50)
	var ids []string
	for n := range int64(20) {
		ids = append(ids, ID("run", n))
	}
	insert(t, db, ids...)
	lastAccepted := time.Now()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for n := int64(20); n < 50; n++ {
			time.Sleep(5 * time.Millisecond)
			_, _ = db.Exec(`INSERT INTO events VALUES (?, 't', 'ts', 'ts', '{}')`, ID("run", n))
		}
	}()
	chk := NewChecker(CheckConfig{Sink: sink, Prefix: "run", DrainTimeout: 10 * time.Second, Poll: 20 * time.Millisecond}, zaptest.NewLogger(t))
	res, err := chk.Check(context.Background(), accepted, &IDSet{}, lastAccepted)
	<-done
	require.NoError(t, err)
	require.True(t, res.OK, "%+v", res)
	require.True(t, res.Drained)
	require.EqualValues(t, 50, res.Rows)
	require.Positive(t, res.DrainS)
}

func TestCheckTimesOutShort(t *testing.T) {
	_, sink := sqliteSink(t)
	accepted := &IDSet{}
	accepted.AddRange(0, 3)
	chk := NewChecker(CheckConfig{Sink: sink, Prefix: "none", DrainTimeout: 100 * time.Millisecond, Poll: 20 * time.Millisecond}, zaptest.NewLogger(t))
	res, err := chk.Check(context.Background(), accepted, &IDSet{}, time.Now())
	require.NoError(t, err)
	require.False(t, res.Drained)
	require.False(t, res.OK)
	require.EqualValues(t, 3, res.Lost)
}
