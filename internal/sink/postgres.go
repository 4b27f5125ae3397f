package sink

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/levee-dev/levee/internal/config"
	"github.com/levee-dev/levee/internal/event"
)

// Postgres writes batches with COPY into a per-connection temporary staging
// table, then INSERT … SELECT … ON CONFLICT (id) DO NOTHING, in one
// transaction. Small batches (a single request on the synchronous path)
// skip the staging table and insert from arrays in one round trip.
type Postgres struct {
	pool   *pgxpool.Pool
	table  string
	ident  string // quoted table name
	merge  string // staging → table
	direct string // arrays → table
}

// copyThreshold is the batch size from which COPY beats one INSERT from arrays.
const copyThreshold = 64

const stagingTable = "levee_staging"

var columns = []string{"id", "type", "ts", "received_at", "data"}

// OpenPostgres connects to cfg.DSN and creates the table if missing.
func OpenPostgres(ctx context.Context, cfg config.Postgres, table string) (*Postgres, error) {
	pc, err := pgxpool.ParseConfig(cfg.DSN)
	if err != nil {
		return nil, fmt.Errorf("sink: postgres: parse sink.postgres.dsn: %w", redactErr(err))
	}
	pc.MaxConns = int32(cfg.MaxConns)
	ident := pgx.Identifier{table}.Sanitize()
	pc.AfterConnect = func(ctx context.Context, c *pgx.Conn) error {
		_, err := c.Exec(ctx, `CREATE TEMP TABLE IF NOT EXISTS `+stagingTable+
			` (id text, type text, ts timestamptz, received_at timestamptz, data json) ON COMMIT DELETE ROWS`)
		return err
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("sink: postgres: %w", redactErr(err))
	}
	p := &Postgres{
		pool: pool, table: table, ident: ident,
		merge: fmt.Sprintf(`INSERT INTO %s (id, type, ts, received_at, data)
			SELECT id, type, ts, received_at, data FROM %s ON CONFLICT (id) DO NOTHING`, ident, stagingTable),
		direct: fmt.Sprintf(`INSERT INTO %s (id, type, ts, received_at, data)
			SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::timestamptz[], $5::text[]::json[])
			ON CONFLICT (id) DO NOTHING`, ident),
	}
	if err := p.createTable(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return p, nil
}

// createTable creates the table; two processes creating it at once may race
// on the catalog, so a duplicate-object error means it exists now.
func (p *Postgres) createTable(ctx context.Context) error {
	ddl := fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (
		id text PRIMARY KEY,
		type text NOT NULL,
		ts timestamptz NOT NULL,
		received_at timestamptz NOT NULL,
		data json NOT NULL
	)`, p.ident)
	_, err := p.pool.Exec(ctx, ddl)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && (pgErr.Code == "23505" || pgErr.Code == "42P07") {
		err = nil
	}
	if err != nil {
		return fmt.Errorf("sink: postgres: create table %s: %w", p.table, redactErr(err))
	}
	return nil
}

// Write stores evs in one transaction.
func (p *Postgres) Write(ctx context.Context, evs []event.Event) (int, error) {
	if len(evs) < copyThreshold {
		return p.writeDirect(ctx, evs)
	}
	tx, err := p.pool.Begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("sink: postgres: begin: %w", redactErr(err))
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // a no-op after Commit
	_, err = tx.CopyFrom(ctx, pgx.Identifier{stagingTable}, columns, pgx.CopyFromSlice(len(evs), func(i int) ([]any, error) {
		e := &evs[i]
		return []any{e.ID, e.Type, e.TS, e.ReceivedAt, []byte(e.Data)}, nil
	}))
	if err != nil {
		return 0, fmt.Errorf("sink: postgres: copy: %w", classifyPG(err))
	}
	tag, err := tx.Exec(ctx, p.merge)
	if err != nil {
		return 0, fmt.Errorf("sink: postgres: merge: %w", classifyPG(err))
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, fmt.Errorf("sink: postgres: commit: %w", classifyPG(err))
	}
	return int(tag.RowsAffected()), nil
}

func (p *Postgres) writeDirect(ctx context.Context, evs []event.Event) (int, error) {
	ids := make([]string, len(evs))
	types := make([]string, len(evs))
	ts := make([]any, len(evs))
	rec := make([]any, len(evs))
	data := make([]string, len(evs))
	for i := range evs {
		e := &evs[i]
		ids[i], types[i], ts[i], rec[i], data[i] = e.ID, e.Type, e.TS, e.ReceivedAt, string(e.Data)
	}
	tag, err := p.pool.Exec(ctx, p.direct, ids, types, ts, rec, data)
	if err != nil {
		return 0, fmt.Errorf("sink: postgres: insert: %w", classifyPG(err))
	}
	return int(tag.RowsAffected()), nil
}

// classifyPG marks errors caused by the values themselves: SQLSTATE class
// 22 (data exception), 23 (integrity) and 54 (program limit exceeded).
func classifyPG(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && len(pgErr.Code) == 5 {
		switch pgErr.Code[:2] {
		case "22", "23", "54":
			return &DataError{Err: err}
		}
	}
	return redactErr(err)
}

// redactErr removes a password that a connection error may echo from the DSN.
func redactErr(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	if i := strings.Index(msg, "password="); i >= 0 {
		end := strings.IndexAny(msg[i:], " )'\"")
		if end < 0 {
			end = len(msg) - i
		}
		return errors.New(msg[:i] + "password=redacted" + msg[i+end:])
	}
	return err
}

// Ping checks that the database answers.
func (p *Postgres) Ping(ctx context.Context) error { return p.pool.Ping(ctx) }

// Count returns the number of rows.
func (p *Postgres) Count(ctx context.Context) (int64, error) {
	var n int64
	err := p.pool.QueryRow(ctx, "SELECT count(*) FROM "+p.ident).Scan(&n)
	return n, err
}

// Pool returns the connection pool, for inspection.
func (p *Postgres) Pool() *pgxpool.Pool { return p.pool }

// Close closes the pool.
func (p *Postgres) Close() error {
	p.pool.Close()
	return nil
}
