package loadgen

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"regexp"

	"github.com/jackc/pgx/v5"
	_ "modernc.org/sqlite" // the "sqlite" database/sql driver
)

// Sink kinds.
const (
	SinkSQLite   = "sqlite"
	SinkPostgres = "postgres"
)

// SinkConfig says where the pipeline writes its rows.
type SinkConfig struct {
	Kind       string `json:"kind"`
	SQLitePath string `json:"sqlite_path,omitempty"`
	PGDSN      string `json:"-"`
	Table      string `json:"table"`
}

// rowSource reads the rows of one run back from the sink.
type rowSource interface {
	// Count returns the number of rows whose id starts with prefix.
	Count(ctx context.Context, prefix string) (int64, error)
	// Distinct returns count(*) and count(DISTINCT id) of those rows.
	Distinct(ctx context.Context, prefix string) (rows, distinct int64, err error)
	// IDs calls fn with the id of every such row.
	IDs(ctx context.Context, prefix string, fn func(id string)) error
	Close() error
}

var tableName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// openRows connects to the sink read-only.
func openRows(ctx context.Context, cfg SinkConfig) (rowSource, error) {
	table := cfg.Table
	if table == "" {
		table = "events"
	}
	if !tableName.MatchString(table) {
		return nil, fmt.Errorf("loadgen: table name %q: want an SQL identifier", table)
	}
	switch cfg.Kind {
	case SinkSQLite:
		q := url.Values{}
		q.Set("mode", "ro")
		q.Add("_pragma", "busy_timeout(10000)")
		db, err := sql.Open("sqlite", "file:"+cfg.SQLitePath+"?"+q.Encode())
		if err != nil {
			return nil, fmt.Errorf("loadgen: open sqlite %s: %w", cfg.SQLitePath, err)
		}
		db.SetMaxOpenConns(1)
		if err := db.PingContext(ctx); err != nil {
			db.Close()
			return nil, fmt.Errorf("loadgen: open sqlite %s: %w", cfg.SQLitePath, err)
		}
		return &sqliteRows{db: db, table: table}, nil
	case SinkPostgres:
		conn, err := pgx.Connect(ctx, cfg.PGDSN)
		if err != nil {
			return nil, fmt.Errorf("loadgen: connect postgres: %w", err)
		}
		return &pgRows{conn: conn, table: table}, nil
	}
	return nil, fmt.Errorf("loadgen: sink %q: want sqlite or postgres", cfg.Kind)
}

// sqliteRows selects by a range on the primary key: ids "<prefix>-…" sort
// between "<prefix>-" and "<prefix>." ('.' follows '-' in ASCII) under
// SQLite's binary collation, so the index serves the query.
type sqliteRows struct {
	db    *sql.DB
	table string
}

func bounds(prefix string) (string, string) { return prefix + "-", prefix + "." }

func (s *sqliteRows) Count(ctx context.Context, prefix string) (int64, error) {
	lo, hi := bounds(prefix)
	var n int64
	err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM `+s.table+` WHERE id >= ? AND id < ?`, lo, hi).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("loadgen: sqlite count: %w", err)
	}
	return n, nil
}

func (s *sqliteRows) Distinct(ctx context.Context, prefix string) (int64, int64, error) {
	lo, hi := bounds(prefix)
	var n, d int64
	err := s.db.QueryRowContext(ctx, `SELECT count(*), count(DISTINCT id) FROM `+s.table+` WHERE id >= ? AND id < ?`, lo, hi).Scan(&n, &d)
	if err != nil {
		return 0, 0, fmt.Errorf("loadgen: sqlite distinct: %w", err)
	}
	return n, d, nil
}

func (s *sqliteRows) IDs(ctx context.Context, prefix string, fn func(string)) error {
	lo, hi := bounds(prefix)
	rows, err := s.db.QueryContext(ctx, `SELECT id FROM `+s.table+` WHERE id >= ? AND id < ?`, lo, hi)
	if err != nil {
		return fmt.Errorf("loadgen: sqlite ids: %w", err)
	}
	defer rows.Close()
	var id string
	for rows.Next() {
		if err := rows.Scan(&id); err != nil {
			return fmt.Errorf("loadgen: sqlite ids: %w", err)
		}
		fn(id)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("loadgen: sqlite ids: %w", err)
	}
	return nil
}

func (s *sqliteRows) Close() error { return s.db.Close() }

// pgRows selects with starts_with, which is exact whatever the collation.
type pgRows struct {
	conn  *pgx.Conn
	table string
}

func (p *pgRows) Count(ctx context.Context, prefix string) (int64, error) {
	var n int64
	err := p.conn.QueryRow(ctx, `SELECT count(*) FROM `+p.table+` WHERE starts_with(id, $1)`, prefix+"-").Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("loadgen: postgres count: %w", err)
	}
	return n, nil
}

func (p *pgRows) Distinct(ctx context.Context, prefix string) (int64, int64, error) {
	var n, d int64
	err := p.conn.QueryRow(ctx, `SELECT count(*), count(DISTINCT id) FROM `+p.table+` WHERE starts_with(id, $1)`, prefix+"-").Scan(&n, &d)
	if err != nil {
		return 0, 0, fmt.Errorf("loadgen: postgres distinct: %w", err)
	}
	return n, d, nil
}

func (p *pgRows) IDs(ctx context.Context, prefix string, fn func(string)) error {
	rows, err := p.conn.Query(ctx, `SELECT id FROM `+p.table+` WHERE starts_with(id, $1)`, prefix+"-")
	if err != nil {
		return fmt.Errorf("loadgen: postgres ids: %w", err)
	}
	defer rows.Close()
	var id string
	for rows.Next() {
		if err := rows.Scan(&id); err != nil {
			return fmt.Errorf("loadgen: postgres ids: %w", err)
		}
		fn(id)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("loadgen: postgres ids: %w", err)
	}
	return nil
}

func (p *pgRows) Close() error { return p.conn.Close(context.Background()) }
