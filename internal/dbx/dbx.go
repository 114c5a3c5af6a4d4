// Package dbx holds the small database helpers every revenant package
// shares: the executor interface behind the …Tx methods, JSON encoding with
// size caps, and retryable-error classification.
//
// Layering: dbx imports nothing from revenant; every other package may
// import it.
package dbx

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/jmoiron/sqlx"

	"github.com/revenant-go/revenant/internal/dialect"
)

// Executor runs statements. *sql.DB, *sql.Tx, *sql.Conn, *sqlx.DB and
// *sqlx.Tx all satisfy it, so …Tx methods join whatever the caller holds.
type Executor interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// DiscardLogger returns a logger that drops everything: revenant is quiet
// unless the host injects a logger.
func DiscardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// ErrNotJSON wraps values that cannot be encoded as JSON.
var ErrNotJSON = errors.New("value is not valid JSON")

// EncodeJSON turns v into JSON text for a jsonb parameter. nil stays SQL
// NULL. json.RawMessage and []byte are checked with json.Valid instead of
// re-encoded. maxBytes <= 0 means no cap. Errors wrap ErrNotJSON or
// ErrTooLarge.
func EncodeJSON(v any, maxBytes int) (any, error) {
	var b []byte
	switch x := v.(type) {
	case nil:
		return nil, nil
	case json.RawMessage:
		if x == nil {
			return nil, nil
		}
		b = x
	case []byte:
		if x == nil {
			return nil, nil
		}
		b = x
	default:
		var err error
		b, err = json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrNotJSON, err)
		}
	}
	if !json.Valid(b) {
		return nil, fmt.Errorf("%w: %.60q", ErrNotJSON, b)
	}
	if maxBytes > 0 && len(b) > maxBytes {
		return nil, fmt.Errorf("%w: %d bytes, cap is %d", ErrTooLarge, len(b), maxBytes)
	}
	// A string, not []byte: lib/pq would send []byte as bytea, which jsonb
	// rejects. pgx accepts both.
	return string(b), nil
}

// ErrTooLarge wraps JSON values over a configured cap.
var ErrTooLarge = errors.New("value exceeds the size cap")

// sqlStater is implemented by *pq.Error (lib/pq) and *pgconn.PgError (pgx).
type sqlStater interface{ SQLState() string }

// SQLState returns the SQLSTATE code of a database error, or "".
func SQLState(err error) string {
	var s sqlStater
	if errors.As(err, &s) {
		return s.SQLState()
	}
	return ""
}

// IsRetryable reports whether err is a transient database failure that is
// safe to retry: connection loss (class 08), server shutdown (57P01..57P03),
// serialization failure (40001) and deadlock (40P01). Context cancellation
// and deadlines are never retryable.
func IsRetryable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	code := SQLState(err)
	switch {
	case strings.HasPrefix(code, "08"):
		return true
	case code == "57P01", code == "57P02", code == "57P03":
		return true
	case code == "40001", code == "40P01":
		return true
	}
	if errors.Is(err, sql.ErrConnDone) || errors.Is(err, io.ErrUnexpectedEOF) {
		return true
	}
	// SQLite: another connection held the write lock past busy_timeout.
	switch SQLiteCode(err) & 0xff {
	case dialect.SQLiteBusy, dialect.SQLiteLocked:
		return true
	}
	return false
}

// SQLiteCode returns the (extended) SQLite result code of err, or 0.
func SQLiteCode(err error) int {
	var e dialect.SQLiteError
	if errors.As(err, &e) {
		return e.Code()
	}
	return 0
}

// IsUniqueViolation reports a unique or primary key violation (SQLSTATE
// 23505 on Postgres, SQLITE_CONSTRAINT_UNIQUE/PRIMARYKEY on SQLite).
func IsUniqueViolation(err error) bool {
	if SQLState(err) == "23505" {
		return true
	}
	c := SQLiteCode(err)
	return c == dialect.SQLiteConstraintUnique || c == dialect.SQLiteConstraintPrimaryKey
}

// Explain adds a hint to SQLite errors whose driver message does not say
// what to do: a file that stayed locked past busy_timeout, or a read-only
// file. Other errors are returned unchanged.
func Explain(err error) error {
	switch SQLiteCode(err) & 0xff {
	case dialect.SQLiteBusy, dialect.SQLiteLocked:
		return fmt.Errorf("%w (the SQLite file stayed locked by another connection or process for longer than its busy_timeout; nothing was written: retry, or raise busy_timeout, e.g. with revenant's sqlite.Config.BusyTimeout)", err)
	case dialect.SQLiteReadOnly:
		return fmt.Errorf("%w (the SQLite file or its directory is read-only for this process; revenant needs to write the file and its -wal/-shm files next to it)", err)
	}
	return err
}

// InTx runs fn in a transaction on db and commits if fn returns nil.
func InTx(ctx context.Context, db *sqlx.DB, fn func(tx *sqlx.Tx) error) error {
	tx, err := db.BeginTxx(ctx, nil)
	if err != nil {
		return fmt.Errorf("beginning transaction: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}
