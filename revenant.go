package revenant

import (
	"database/sql"

	"github.com/jmoiron/sqlx"

	"github.com/revenant-go/revenant/internal/dbx"
	"github.com/revenant-go/revenant/internal/dialect"
)

// Executor is what the …Tx methods accept: *sql.Tx and *sqlx.Tx (and also
// *sql.DB, *sql.Conn, *sqlx.DB). Revenant's writes then commit or roll back
// with the caller's own work.
type Executor = dbx.Executor

// Sentinel errors shared by every package. Match them with errors.Is; the
// returned errors wrap them with the episode id, statuses and so on.
var (
	// ErrNotFound: no episode (or other record) has that id.
	ErrNotFound = dbx.ErrNotFound
	// ErrIllegalTransition: the episode's status does not allow the
	// requested move, e.g. done → running.
	ErrIllegalTransition = dbx.ErrIllegalTransition
	// ErrLeaseLost: the caller's claim token is no longer the episode's
	// current one (another node claimed it, or it was released, canceled or
	// finished). Nothing was written; the holder must stop.
	ErrLeaseLost = dbx.ErrLeaseLost
	// ErrInvalidInput: a parameter is missing or malformed. The message says
	// which and how to fix it.
	ErrInvalidInput = dbx.ErrInvalidInput
	// ErrNotJSON: a value could not be encoded as JSON.
	ErrNotJSON = dbx.ErrNotJSON
	// ErrTooLarge: a JSON value is over its configured size cap.
	ErrTooLarge = dbx.ErrTooLarge
	// ErrCorruptRow: a stored row holds a value this version cannot read
	// (for example an unknown status). It is skipped and reported with its
	// id, never guessed at, and left as it is.
	ErrCorruptRow = dbx.ErrCorruptRow
	// ErrNotMigrated: a revenant table does not exist; run
	// migrations.Migrate at boot (with the pool's search_path).
	ErrNotMigrated = dbx.ErrNotMigrated
	// ErrUnknownActor: with Config.StrictActors, Enqueue named an actor
	// that no live node in the episode's scope has registered and that
	// has no definition.
	ErrUnknownActor = dbx.ErrUnknownActor
)

// Limits on what revenant stores, the same on every backend. Values past
// them are refused with ErrInvalidInput (text, MaxAttempts) or ErrNotJSON
// (JSON) before anything is written.
const (
	// MaxNameBytes bounds actor ids, step names, workflow and step ids,
	// expectations, stacks, envs, node names, error classes and phases,
	// which must also be valid UTF-8 without NUL bytes.
	MaxNameBytes = dbx.MaxNameBytes
	// MaxKeyBytes bounds dedupe keys and workflow subjects.
	MaxKeyBytes = dbx.MaxKeyBytes
	// MaxJSONDepth bounds the nesting of JSON values (inputs, results,
	// step outputs, metadata). JSON must also be valid UTF-8 and hold no
	// \u0000 escape, which PostgreSQL cannot store.
	MaxJSONDepth = dbx.MaxJSONDepth
	// MaxMaxAttempts bounds MaxAttempts settings.
	MaxMaxAttempts = dbx.MaxMaxAttempts
)

// WrapDB wraps a plain *sql.DB (opened with lib/pq's "postgres" driver,
// pgx's "pgx" stdlib driver or modernc.org/sqlite's "sqlite" driver) for revenant's constructors. The *sql.DB is
// shared, not copied, and revenant never closes it.
func WrapDB(db *sql.DB) *sqlx.DB {
	if db == nil {
		return nil
	}
	// Revenant's SQL uses $N placeholders, which every supported driver
	// accepts; the name only tells sqlx (and revenant) the backend.
	if dialect.OfDB(db) == dialect.SQLite {
		return sqlx.NewDb(db, "sqlite")
	}
	return sqlx.NewDb(db, "postgres")
}

// IsRetryable reports whether err is a transient database failure that is
// safe to retry: connection loss (SQLSTATE class 08), server shutdown
// (57P01–57P03), serialization failure (40001) or deadlock (40P01). Context
// cancellation and deadlines are never retryable.
func IsRetryable(err error) bool { return dbx.IsRetryable(err) }
