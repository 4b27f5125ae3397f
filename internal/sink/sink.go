// Package sink writes batches of events to a database, idempotently on the
// event id: writing an event twice leaves one row.
package sink

import (
	"context"
	"errors"
	"fmt"

	"github.com/levee-dev/levee/internal/config"
	"github.com/levee-dev/levee/internal/event"
)

// Sink is a database that stores events in a table with the columns
// id (unique), type, ts, received_at and data.
type Sink interface {
	// Write stores evs in one transaction and returns how many rows were
	// new. Events whose id is already stored are skipped. On error nothing
	// of the batch is stored.
	Write(ctx context.Context, evs []event.Event) (inserted int, err error)
	// Ping checks that the database answers.
	Ping(ctx context.Context) error
	// Count returns the number of rows in the table.
	Count(ctx context.Context) (int64, error)
	// Close releases the connections.
	Close() error
}

// Open connects to the sink configured by cfg and creates its table if missing.
func Open(ctx context.Context, cfg config.Sink) (Sink, error) {
	switch cfg.Kind {
	case "sqlite":
		return OpenSQLite(ctx, cfg.SQLite, cfg.Table)
	case "postgres":
		return OpenPostgres(ctx, cfg.Postgres, cfg.Table)
	default:
		return nil, fmt.Errorf("sink: unknown kind %q", cfg.Kind)
	}
}

// DataError is a write failure caused by the content of the batch (a value
// the database refuses), not by the database being unavailable. Writing the
// same events again fails the same way; writing them one by one isolates
// the culprit.
type DataError struct{ Err error }

func (e *DataError) Error() string { return "sink: rejected data: " + e.Err.Error() }
func (e *DataError) Unwrap() error { return e.Err }

// IsDataError reports whether err is a DataError.
func IsDataError(err error) bool {
	var de *DataError
	return errors.As(err, &de)
}
