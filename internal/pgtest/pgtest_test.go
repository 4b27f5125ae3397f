package pgtest

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

// Pause hangs connections that are already open, not only new ones; Resume
// brings them back.
func TestPauseHangsOpenConnections(t *testing.T) {
	s, err := Start()
	require.NoError(t, err)
	defer s.Stop()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, s.Database(t))
	require.NoError(t, err)
	defer conn.Close(ctx)
	require.NoError(t, conn.Ping(ctx))

	require.NoError(t, s.Pause())
	qctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	var one int
	err = conn.QueryRow(qctx, "SELECT 1").Scan(&one)
	cancel()
	require.Error(t, err, "a paused server answers nothing")

	require.NoError(t, s.Resume())
	conn2, err := pgx.Connect(ctx, s.Admin)
	require.NoError(t, err)
	defer conn2.Close(ctx)
	require.NoError(t, conn2.QueryRow(ctx, "SELECT 1").Scan(&one))
	require.Equal(t, 1, one)
}
