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
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"syscall"

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

// ErrNotFound means no row has that id. Package revenant re-exports it.
var ErrNotFound = errors.New("revenant: not found")

// ErrCorruptRow means a stored row holds a value this version cannot read (an
// unknown status, text where a number belongs). The row is left as it is,
// skipped and reported. Package revenant re-exports it.
var ErrCorruptRow = errors.New("revenant: corrupt row")

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
			return nil, fmt.Errorf("%w: %w", ErrNotJSON, err)
		}
	}
	if maxBytes > 0 && len(b) > maxBytes {
		return nil, fmt.Errorf("%w: %d bytes, cap is %d", ErrTooLarge, len(b), maxBytes)
	}
	// The message never quotes the value: payloads stay out of errors and
	// logs.
	if !json.Valid(b) {
		return nil, fmt.Errorf("%w: %d bytes that do not parse as JSON", ErrNotJSON, len(b))
	}
	if err := checkJSON(b); err != nil {
		return nil, err
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
// safe to retry: connection loss however the driver reports it (SQLSTATE
// class 08, driver.ErrBadConn, sql.ErrConnDone, EOF, a refused, reset or
// timed-out network connection, pgx's "conn closed" and other errors pgx
// marks safe to retry), server shutdown or start-up (57P01..57P03), too
// many connections (53300), serialization failure (40001), deadlock
// (40P01), and a SQLite file locked past its busy timeout. Context
// cancellation and deadlines are never retryable.
func IsRetryable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	code := SQLState(err)
	switch {
	case strings.HasPrefix(code, "08"):
		return true
	case code == "57P01", code == "57P02", code == "57P03", code == "53300":
		return true
	case code == "40001", code == "40P01":
		return true
	case code != "":
		return false // the server answered: not a lost connection
	}
	if connLost(err) {
		return true
	}
	// SQLite: another connection held the write lock past busy_timeout.
	switch SQLiteCode(err) & 0xff {
	case dialect.SQLiteBusy, dialect.SQLiteLocked:
		return true
	}
	return false
}

// connLost reports the ways lib/pq, pgx and database/sql say that a
// connection is gone or could not be made.
func connLost(err error) bool {
	if errors.Is(err, driver.ErrBadConn) || errors.Is(err, sql.ErrConnDone) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.EPIPE) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true // dial failures, resets and i/o timeouts on the wire
	}
	// pgx (pgconn) marks errors that happened before anything reached the
	// server, such as "conn closed"; matched by method so that the core
	// does not import pgx.
	var safe interface{ SafeToRetry() bool }
	return errors.As(err, &safe) && safe.SafeToRetry()
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

// Explain adds a hint to errors whose driver message does not say what to
// do: a revenant table that does not exist (the database was never
// migrated, or search_path selects another schema), a SQLite file that
// stayed locked past busy_timeout, or a read-only file. Other errors are
// returned unchanged.
func Explain(err error) error {
	if err == nil {
		return nil
	}
	if isMissingTable(err) && !errors.Is(err, ErrNotMigrated) {
		return fmt.Errorf("%w: %w", ErrNotMigrated, err)
	}
	switch SQLiteCode(err) & 0xff {
	case dialect.SQLiteBusy, dialect.SQLiteLocked:
		return fmt.Errorf("%w (the SQLite file stayed locked by another connection or process for longer than its busy_timeout; nothing was written: retry, or raise busy_timeout, e.g. with revenant's sqlite.Config.BusyTimeout)", err)
	case dialect.SQLiteReadOnly:
		return fmt.Errorf("%w (the SQLite file or its directory is read-only for this process; revenant needs to write the file and its -wal/-shm files next to it)", err)
	}
	return err
}

// ErrNotMigrated is returned (wrapped) when a revenant table is missing.
var ErrNotMigrated = errors.New("revenant: the revenant schema is missing (run migrations.Migrate at boot, on a connection whose search_path selects the schema this pool uses)")

// isMissingTable reports "relation revenant_… does not exist" (42P01) and
// SQLite's "no such table: revenant_…".
func isMissingTable(err error) bool {
	msg := err.Error()
	if SQLState(err) == "42P01" {
		return strings.Contains(msg, "revenant_")
	}
	return SQLiteCode(err) != 0 && strings.Contains(msg, "no such table: revenant_")
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
