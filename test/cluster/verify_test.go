package cluster

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// sinkCount is what the sink holds of a loader's events.
type sinkCount struct {
	rows, distinct int64 // rows with the prefix, and distinct ids among them
	lost           int64 // answered 202 and absent
	extra          int64 // present without a 202 (a request cut off or given up after its publish)
}

// readSink compares the sink's rows with the loader's accepted events.
func readSink(ctx context.Context, dsn string, l *loader) (sinkCount, error) {
	var c sinkCount
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return c, err
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(ctx, "SELECT id FROM events WHERE id LIKE $1", l.prefix+"-%")
	if err != nil {
		return c, err
	}
	acc, nAcc := l.acceptedSet()
	seen := make([]uint64, len(acc))
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return c, err
		}
		c.rows++
		n, err := strconv.ParseInt(strings.TrimPrefix(id, l.prefix+"-"), 10, 64)
		if err != nil || n/64 >= int64(len(seen)) {
			c.extra++ // not one of ours: would be a bug of the test
			continue
		}
		if seen[n/64]&(1<<(n%64)) != 0 {
			continue
		}
		seen[n/64] |= 1 << (n % 64)
		c.distinct++
		if acc[n/64]&(1<<(n%64)) == 0 {
			c.extra++
		}
	}
	if err := rows.Err(); err != nil {
		return c, err
	}
	c.lost = nAcc - (c.distinct - c.extra)
	return c, nil
}

// waitSink waits up to d until every accepted event is in the sink, and
// returns the final count.
func waitSink(t *testing.T, dsn string, l *loader, d time.Duration) sinkCount {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		c, err := readSink(ctx, dsn, l)
		cancel()
		if err == nil && c.lost == 0 {
			return c
		}
		if time.Now().After(deadline) {
			require.NoError(t, err)
			t.Logf("after %v the sink still lacks %d accepted events (rows %d)", d, c.lost, c.rows)
			return c
		}
		time.Sleep(time.Second)
	}
}

// duplicateIDs counts ids stored more than once in the whole table; the
// primary key makes it 0 unless the schema is wrong.
func duplicateIDs(t *testing.T, dsn string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	require.NoError(t, err)
	defer conn.Close(context.Background())
	var n int64
	require.NoError(t, conn.QueryRow(ctx,
		"SELECT count(*) FROM (SELECT id FROM events GROUP BY id HAVING count(*) > 1) d").Scan(&n))
	return n
}
