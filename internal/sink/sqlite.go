package sink

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/levee-dev/levee/internal/config"
	"github.com/levee-dev/levee/internal/event"
)

// SQLite is the embedded default sink: one file in WAL mode, one
// transaction per batch, INSERT … ON CONFLICT (id) DO NOTHING. Writes from
// this process go through one connection (SQLite has one writer at a time);
// other processes wait up to busy_timeout for the lock.
type SQLite struct {
	db     *sql.DB
	table  string
	insert string
}

// sqliteChunk is the number of rows per multi-row INSERT statement.
const sqliteChunk = 100

// OpenSQLite opens (creating if needed) the database file and the table.
func OpenSQLite(ctx context.Context, cfg config.SQLite, table string) (*SQLite, error) {
	if dir := filepath.Dir(cfg.Path); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("sink: sqlite: %w", err)
		}
	}
	q := url.Values{}
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous("+strings.ToUpper(cfg.Synchronous)+")")
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", cfg.BusyTimeout.Milliseconds()))
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+cfg.Path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("sink: sqlite: %w", err)
	}
	db.SetMaxOpenConns(1)
	ddl := fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (
		id TEXT PRIMARY KEY,
		type TEXT NOT NULL,
		ts TEXT NOT NULL,
		received_at TEXT NOT NULL,
		data TEXT NOT NULL
	)`, table)
	if _, err := db.ExecContext(ctx, ddl); err != nil {
		db.Close()
		return nil, fmt.Errorf("sink: sqlite: create table %s: %w", table, err)
	}
	s := &SQLite{db: db, table: table}
	s.insert = s.insertSQL(sqliteChunk)
	return s, nil
}

func (s *SQLite) insertSQL(rows int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "INSERT INTO %s (id, type, ts, received_at, data) VALUES ", s.table)
	for i := range rows {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("(?,?,?,?,?)")
	}
	b.WriteString(" ON CONFLICT (id) DO NOTHING")
	return b.String()
}

// Write stores evs in one transaction.
func (s *SQLite) Write(ctx context.Context, evs []event.Event) (int, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("sink: sqlite: begin: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	inserted := 0
	args := make([]any, 0, 5*sqliteChunk)
	for len(evs) > 0 {
		n := min(len(evs), sqliteChunk)
		query := s.insert
		if n < sqliteChunk {
			query = s.insertSQL(n)
		}
		args = args[:0]
		for i := range evs[:n] {
			e := &evs[i]
			args = append(args, e.ID, e.Type, e.TS.UTC().Format(event.TimeLayout),
				e.ReceivedAt.UTC().Format(event.TimeLayout), string(e.Data))
		}
		res, err := tx.ExecContext(ctx, query, args...)
		if err != nil {
			return 0, fmt.Errorf("sink: sqlite: insert: %w", classifySQLite(err))
		}
		k, _ := res.RowsAffected()
		inserted += int(k)
		evs = evs[n:]
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("sink: sqlite: commit: %w", err)
	}
	return inserted, nil
}

// classifySQLite marks errors caused by the values themselves.
func classifySQLite(err error) error {
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_TOOBIG, sqlite3.SQLITE_CONSTRAINT, sqlite3.SQLITE_MISMATCH, sqlite3.SQLITE_RANGE:
			return &DataError{Err: err}
		}
	}
	return err
}

// Ping checks that the database answers.
func (s *SQLite) Ping(ctx context.Context) error { return s.db.PingContext(ctx) }

// Count returns the number of rows.
func (s *SQLite) Count(ctx context.Context) (int64, error) {
	var n int64
	err := s.db.QueryRowContext(ctx, "SELECT count(*) FROM "+s.table).Scan(&n)
	return n, err
}

// DB returns the underlying database, for inspection.
func (s *SQLite) DB() *sql.DB { return s.db }

// Close closes the database.
func (s *SQLite) Close() error { return s.db.Close() }
