package migrations

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"sort"
	"time"

	"github.com/revenant-go/revenant/internal/dbx"
)

const sqliteCreateTableSQL = `CREATE TABLE IF NOT EXISTS ` + TableName + ` (
    version    integer   PRIMARY KEY,
    name       text      NOT NULL,
    applied_at timestamp NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now'))
)`

const sqliteTableExistsSQL = `SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = $1`

// migrateSQLite applies missing migrations one per write transaction. SQLite's write lock does what the advisory lock does on
// Postgres: processes sharing the file migrate one at a time, and each
// re-reads the applied versions once it holds the lock.
func (m *Migrator) migrateSQLite(ctx context.Context) (*Result, error) {
	conn, err := m.db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrations: getting a connection: %w", dbx.Explain(err))
	}
	defer conn.Close()
	var busy int
	if err := conn.QueryRowContext(ctx, `PRAGMA busy_timeout`).Scan(&busy); err != nil {
		return nil, fmt.Errorf("migrations: reading busy_timeout: %w", dbx.Explain(err))
	}
	if busy <= 0 {
		return nil, fmt.Errorf("%w: migrations: the SQLite handle has no busy_timeout, so any concurrent write fails at once with \"database is locked\"; open it with revenant's sqlite.Open, or add _pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_txlock=immediate to the DSN", dbx.ErrInvalidInput)
	}
	if _, err := conn.ExecContext(ctx, sqliteCreateTableSQL); err != nil {
		return nil, fmt.Errorf("migrations: creating %s: %w", TableName, dbx.Explain(err))
	}
	res := &Result{}
	for {
		applied, done, err := m.sqliteStep(ctx, conn, res)
		if err != nil {
			return res, err
		}
		if done {
			return res, nil
		}
		res.Applied = append(res.Applied, applied)
		res.Version = applied.Version
		m.config.Logger.InfoContext(ctx, "revenant: applied migration",
			slog.Int("version", applied.Version), slog.String("name", applied.Name), slog.Duration("duration", applied.Duration))
	}
}

// sqliteStep applies the first missing migration under the write lock, or
// reports that none is missing.
func (m *Migrator) sqliteStep(ctx context.Context, conn *sql.Conn, res *Result) (Applied, bool, error) {
	// Look before taking the write lock: an up-to-date file needs no write
	// (and may be read-only).
	existing, err := existingVersions(ctx, conn)
	if err != nil {
		return Applied{}, false, dbx.Explain(err)
	}
	if err := checkVersions(existing); err != nil {
		return Applied{}, false, err
	}
	if len(existing) == len(m.all) {
		upToDate := true
		for _, mig := range m.all {
			upToDate = upToDate && existing[mig.Version]
		}
		if upToDate {
			res.Version = len(m.all)
			return Applied{}, true, nil
		}
	}
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return Applied{}, false, fmt.Errorf("migrations: beginning: %w", dbx.Explain(err))
	}
	defer func() { _ = tx.Rollback() }()
	// A write first takes the write lock now, even where the handle begins
	// transactions DEFERRED: the versions read next cannot go stale. It
	// matches no row, so it changes nothing.
	if _, err := tx.ExecContext(ctx, `UPDATE `+TableName+` SET name = name WHERE version IS NULL`); err != nil {
		return Applied{}, false, fmt.Errorf("migrations: taking the SQLite write lock: %w", dbx.Explain(err))
	}
	existing, err = existingVersions(ctx, tx)
	if err != nil {
		return Applied{}, false, dbx.Explain(err)
	}
	if err := checkVersions(existing); err != nil {
		return Applied{}, false, err
	}
	known := map[int]bool{}
	for _, mig := range m.all {
		known[mig.Version] = true
	}
	var unknown []int
	for v := range existing {
		if !known[v] {
			unknown = append(unknown, v)
		}
	}
	if len(unknown) > 0 {
		sort.Ints(unknown)
		res.Unknown = unknown
		return Applied{}, false, fmt.Errorf("%w: the file records versions %v, this binary knows 1..%d; nothing was changed: run a revenant at least as new as the one that migrated it", ErrSchemaTooNew, unknown, len(m.all))
	}
	for _, mig := range m.all {
		if existing[mig.Version] {
			res.Version = mig.Version
			continue
		}
		start := time.Now()
		if _, err := tx.ExecContext(ctx, mig.SQL); err != nil {
			return Applied{}, false, &PartialError{Applied: res.Applied, Failed: mig, Err: dbx.Explain(err)}
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO `+TableName+` (version, name) VALUES ($1, $2)`, mig.Version, mig.Name); err != nil {
			return Applied{}, false, &PartialError{Applied: res.Applied, Failed: mig, Err: dbx.Explain(err)}
		}
		if err := tx.Commit(); err != nil {
			return Applied{}, false, &PartialError{Applied: res.Applied, Failed: mig, Err: dbx.Explain(err)}
		}
		return Applied{Version: mig.Version, Name: mig.Name, Duration: time.Since(start)}, false, nil
	}
	return Applied{}, true, nil
}
