package migrations

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/revenant-go/revenant/internal/dbx"
	"github.com/revenant-go/revenant/internal/dialect"
)

//go:embed sql/*.sql sql/sqlite/*.sql
var sqlFiles embed.FS

// Embedded directories of each backend's migrations. Both carry the same
// versions with the same meaning, so a version number says the same thing
// whatever the backend.
const (
	postgresDir = "sql"
	sqliteDir   = "sql/sqlite"
)

// TableName is the table that records applied versions, one row each.
const TableName = "revenant_migrations"

// LockTimeoutDefault is how long Migrate waits for another node's migration
// to finish before giving up.
const LockTimeoutDefault = 5 * time.Minute

// Migration is one numbered, forward-only schema change.
type Migration struct {
	// Version is the migration's number, starting at 1 with no gaps.
	Version int
	// Name is the file name without version and extension, e.g. "core".
	Name string
	// SQL is the full text of the migration. It creates unqualified
	// revenant_* objects, so they land in the connection's search_path.
	SQL string
}

// Applied reports one migration that Migrate ran.
type Applied struct {
	Version  int
	Name     string
	Duration time.Duration
}

// Result is what Migrate did.
type Result struct {
	// Applied lists the migrations this call ran, in order. Empty when the
	// schema was already up to date, which is success, not an error.
	Applied []Applied
	// Version is the schema version after the call.
	Version int
	// Unknown lists versions recorded in the database that this binary does
	// not know (a newer node migrated first). They are left alone.
	Unknown []int
}

// Config configures a Migrator. The zero value is valid.
type Config struct {
	// Logger receives one Info line per applied migration. Defaults to a
	// logger that discards everything.
	Logger *slog.Logger
	// LockTimeout bounds the wait for the migration advisory lock held by
	// another node. Defaults to LockTimeoutDefault.
	LockTimeout time.Duration
}

func (c *Config) withDefaults() *Config {
	out := Config{}
	if c != nil {
		out = *c
	}
	if out.Logger == nil {
		out.Logger = dbx.DiscardLogger()
	}
	if out.LockTimeout == 0 {
		out.LockTimeout = LockTimeoutDefault
	}
	return &out
}

func (c *Config) validate() error {
	if c.LockTimeout < 0 {
		return fmt.Errorf("%w: migrations Config.LockTimeout is %s; use a positive duration or 0 for the default (%s)", dbx.ErrInvalidInput, c.LockTimeout, LockTimeoutDefault)
	}
	return nil
}

// Migrator applies revenant's schema to a database.
type Migrator struct {
	db      *sqlx.DB
	config  *Config
	all     []Migration
	dialect dialect.Dialect
}

// ErrSchemaTooNew is returned on SQLite when the database file was
// migrated by a newer revenant than this binary: it records versions this
// binary does not know. Nothing is changed; upgrade the binary (or use a
// new file). On Postgres, where nodes of two versions coexist during a
// rolling deploy, such versions are reported in Result.Unknown instead.
var ErrSchemaTooNew = errors.New("migrations: database schema is newer than this binary")

// ErrInvalidVersions is returned when revenant_migrations holds versions
// <= 0, which no revenant writes: someone edited the table by hand. Nothing
// is changed; delete those rows and migrate again.
var ErrInvalidVersions = errors.New("migrations: invalid versions in " + TableName)

// ErrInsufficientPrivilege is returned (on Postgres) when migrations are
// pending and the role may not apply them. A schema that is current needs
// no CREATE privilege to call Migrate.
var ErrInsufficientPrivilege = errors.New("migrations: insufficient privilege to migrate")

// ErrNilDB is returned when a constructor is given a nil database handle.
var ErrNilDB = dbx.ErrNilDB

// New returns a Migrator for db. db is never closed by revenant.
func New(db *sqlx.DB, config *Config) (*Migrator, error) {
	if db == nil {
		return nil, ErrNilDB
	}
	cfg := config.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	d := dialect.Of(db)
	dir := postgresDir
	if d == dialect.SQLite {
		dir = sqliteDir
	}
	all, err := load(sqlFiles, dir)
	if err != nil {
		return nil, err
	}
	return &Migrator{db: db, config: cfg, all: all, dialect: d}, nil
}

// Migrate is a shortcut for New(db, nil) followed by Migrate.
func Migrate(ctx context.Context, db *sqlx.DB) (*Result, error) {
	m, err := New(db, nil)
	if err != nil {
		return nil, err
	}
	return m.Migrate(ctx)
}

// All returns every Postgres migration this binary carries, in version
// order. Use it to export the SQL to goose, golang-migrate or atlas; see
// also WriteGoose and GolangMigrateFileName.
func All() []Migration { return mustLoad(postgresDir) }

// AllSQLite is All for SQLite.
func AllSQLite() []Migration { return mustLoad(sqliteDir) }

func mustLoad(dir string) []Migration {
	all, err := load(sqlFiles, dir)
	if err != nil {
		// The files are embedded and checked by tests; a failure here is a
		// build defect, not a runtime condition.
		panic(err)
	}
	return all
}

var fileNameRE = regexp.MustCompile(`^(\d+)_([a-z0-9_]+)\.sql$`)

func load(fsys fs.FS, dir string) ([]Migration, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("migrations: reading embedded files: %w", err)
	}
	var out []Migration
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		m := fileNameRE.FindStringSubmatch(e.Name())
		if m == nil {
			return nil, fmt.Errorf("migrations: embedded file %q is not named NNNN_name.sql", e.Name())
		}
		v, _ := strconv.Atoi(m[1])
		body, err := fs.ReadFile(fsys, path.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("migrations: reading %s: %w", e.Name(), err)
		}
		out = append(out, Migration{Version: v, Name: m[2], SQL: string(body)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	for i, m := range out {
		if m.Version != i+1 {
			return nil, fmt.Errorf("migrations: versions must run 1..N without gaps; found %d at position %d", m.Version, i+1)
		}
	}
	return out, nil
}

// PartialError is returned when a migration fails. Migrations before it were
// applied and committed; the failed one was rolled back entirely, so the
// database is never left "dirty": fix the cause and call Migrate again.
type PartialError struct {
	Applied []Applied
	Failed  Migration
	Err     error
}

func (e *PartialError) Error() string {
	return fmt.Sprintf("migrations: version %d (%s) failed and was rolled back after %d applied: %v",
		e.Failed.Version, e.Failed.Name, len(e.Applied), e.Err)
}

func (e *PartialError) Unwrap() error { return e.Err }

// Migrate applies every missing migration, each in its own transaction
// together with its row in revenant_migrations. It holds a session advisory
// lock (scoped to the current schema) for the whole run, so many nodes may
// call it at boot at once: one applies, the others wait and then find nothing
// to do. It issues DDL only when something is pending, so once the schema is
// current a role without CREATE privilege can call it. Versions <= 0 in
// revenant_migrations give ErrInvalidVersions on both backends.
func (m *Migrator) Migrate(ctx context.Context) (*Result, error) {
	if m.dialect == dialect.SQLite {
		return m.migrateSQLite(ctx)
	}
	conn, err := m.db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrations: getting a connection: %w", err)
	}
	defer conn.Close()

	lockKey, err := m.lock(ctx, conn)
	if err != nil {
		return nil, err
	}
	defer m.unlock(conn, lockKey)

	// Read before any DDL: a schema that is current needs no CREATE
	// privilege, so the app may run as a role with DML privileges only.
	exists, err := tableExists(ctx, conn, m.dialect)
	if err != nil {
		return nil, err
	}
	existing := map[int]bool{}
	if exists {
		if existing, err = existingVersions(ctx, conn); err != nil {
			return nil, err
		}
	}
	if err := checkVersions(existing); err != nil {
		return nil, err
	}
	res := &Result{}
	known := map[int]bool{}
	for _, mig := range m.all {
		known[mig.Version] = true
	}
	for v := range existing {
		if !known[v] {
			res.Unknown = append(res.Unknown, v)
		}
	}
	sort.Ints(res.Unknown)
	if len(res.Unknown) > 0 {
		m.config.Logger.WarnContext(ctx, "revenant: database has migrations this binary does not know; a newer version ran first",
			slog.Any("versions", res.Unknown))
	}
	var pending []int
	for _, mig := range m.all {
		if !existing[mig.Version] {
			pending = append(pending, mig.Version)
		}
	}

	if len(pending) > 0 && !exists {
		if _, err := conn.ExecContext(ctx, createTableSQL); err != nil {
			if dbx.SQLState(err) == sqlStateInsufficientPrivilege {
				return nil, privilegeError(ctx, conn, pending, err)
			}
			return nil, fmt.Errorf("migrations: creating %s: %w", TableName, err)
		}
	}
	for _, mig := range m.all {
		if existing[mig.Version] {
			res.Version = mig.Version
			continue
		}
		start := time.Now()
		if err := applyOne(ctx, conn, mig); err != nil {
			if dbx.SQLState(err) == sqlStateInsufficientPrivilege {
				err = privilegeError(ctx, conn, pending, err)
			}
			return res, &PartialError{Applied: res.Applied, Failed: mig, Err: err}
		}
		a := Applied{Version: mig.Version, Name: mig.Name, Duration: time.Since(start)}
		res.Applied = append(res.Applied, a)
		res.Version = mig.Version
		m.config.Logger.InfoContext(ctx, "revenant: applied migration",
			slog.Int("version", a.Version), slog.String("name", a.Name), slog.Duration("duration", a.Duration))
	}
	if len(res.Unknown) > 0 {
		res.Version = res.Unknown[len(res.Unknown)-1]
	}
	return res, nil
}

const sqlStateInsufficientPrivilege = "42501"

// privilegeError explains a migration the database refused for lack of
// privilege. The failed migration was rolled back, so nothing is half done.
func privilegeError(ctx context.Context, conn *sql.Conn, pending []int, err error) error {
	role, schema := "?", "?"
	var r, s sql.NullString
	if conn.QueryRowContext(ctx, `SELECT current_user, current_schema()`).Scan(&r, &s) == nil {
		role, schema = quoteIdent(r.String), quoteIdent(s.String)
	}
	return fmt.Errorf("%w: role %s may not apply pending versions %v in schema %s (%w); "+
		"run migrations.Migrate (or the exported SQL) as the owner of the schema and of its revenant_* objects, "+
		"or GRANT CREATE ON SCHEMA %s TO %s if that role owns them; "+
		"once the schema is current, a role with only USAGE on the schema and DML privileges can call Migrate",
		ErrInsufficientPrivilege, role, pending, schema, err, schema, role)
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// Version returns the highest applied version, or 0 on a fresh database.
// Rows with a version <= 0 give ErrInvalidVersions.
func (m *Migrator) Version(ctx context.Context) (int, error) {
	exists, err := tableExists(ctx, m.db, m.dialect)
	if err != nil || !exists {
		return 0, err
	}
	existing, err := existingVersions(ctx, m.db)
	if err != nil {
		return 0, err
	}
	if err := checkVersions(existing); err != nil {
		return 0, err
	}
	v := 0
	for e := range existing {
		v = max(v, e)
	}
	return v, nil
}

// tableExists reports whether revenant_migrations exists where Migrate
// creates it: on Postgres in current_schema(), not anywhere on the
// search_path.
func tableExists(ctx context.Context, q dbx.Executor, d dialect.Dialect) (bool, error) {
	query := `SELECT to_regclass(quote_ident(current_schema()) || '.' || quote_ident($1)) IS NOT NULL`
	if d == dialect.SQLite {
		query = sqliteTableExistsSQL
	}
	var exists bool
	if err := q.QueryRowContext(ctx, query, TableName).Scan(&exists); err != nil {
		return false, fmt.Errorf("migrations: checking for %s: %w", TableName, dbx.Explain(err))
	}
	return exists, nil
}

// checkVersions refuses versions no revenant writes (they start at 1)
// rather than guessing what they mean.
func checkVersions(existing map[int]bool) error {
	var bad []int
	for v := range existing {
		if v <= 0 {
			bad = append(bad, v)
		}
	}
	if len(bad) == 0 {
		return nil
	}
	sort.Ints(bad)
	return fmt.Errorf("%w: %s records versions %v, which no revenant writes (versions start at 1); nothing was changed: "+
		"remove them with DELETE FROM %s WHERE version <= 0, then call Migrate again",
		ErrInvalidVersions, TableName, bad, TableName)
}

// Pending returns the migrations that Migrate would apply.
func (m *Migrator) Pending(ctx context.Context) ([]Migration, error) {
	v, err := m.Version(ctx)
	if err != nil {
		return nil, err
	}
	var out []Migration
	for _, mig := range m.all {
		if mig.Version > v {
			out = append(out, mig)
		}
	}
	return out, nil
}

const createTableSQL = `CREATE TABLE IF NOT EXISTS ` + TableName + ` (
    version    integer     PRIMARY KEY,
    name       text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)`

func existingVersions(ctx context.Context, conn dbx.Executor) (map[int]bool, error) {
	rows, err := conn.QueryContext(ctx, `SELECT version FROM `+TableName)
	if err != nil {
		return nil, fmt.Errorf("migrations: reading applied versions: %w", err)
	}
	defer rows.Close()
	out := map[int]bool{}
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			return nil, fmt.Errorf("migrations: reading applied versions: %w", err)
		}
		out[v] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("migrations: reading applied versions: %w", err)
	}
	return out, nil
}

func applyOne(ctx context.Context, conn *sql.Conn, mig Migration) error {
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	// No arguments: both lib/pq and pgx run this with the simple protocol,
	// which accepts several statements in one call.
	if _, err := tx.ExecContext(ctx, mig.SQL); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO `+TableName+` (version, name) VALUES ($1, $2)`, mig.Version, mig.Name); err != nil {
		return err
	}
	return tx.Commit()
}

// lock takes the session advisory lock that serialises migrations of one
// schema. Different schemas in one database migrate independently.
func (m *Migrator) lock(ctx context.Context, conn *sql.Conn) (int64, error) {
	var key int64
	if err := conn.QueryRowContext(ctx,
		`SELECT ('x' || substr(md5('revenant_migrations:' || current_schema()), 1, 16))::bit(64)::bigint`).Scan(&key); err != nil {
		return 0, fmt.Errorf("migrations: computing lock key (is a schema selected by search_path?): %w", err)
	}
	lockCtx, cancel := context.WithTimeout(ctx, m.config.LockTimeout)
	defer cancel()
	if _, err := conn.ExecContext(lockCtx, `SELECT pg_advisory_lock($1)`, key); err != nil {
		if lockCtx.Err() != nil && ctx.Err() == nil {
			return 0, fmt.Errorf("migrations: another node held the migration lock for over %s (Config.LockTimeout): %w", m.config.LockTimeout, err)
		}
		return 0, fmt.Errorf("migrations: taking advisory lock: %w", err)
	}
	return key, nil
}

func (m *Migrator) unlock(conn *sql.Conn, key int64) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_unlock($1)`, key); err != nil {
		// The session may still hold the lock: drop the connection rather
		// than return it to the pool, which ends the session and the lock.
		_ = conn.Raw(func(any) error { return driver.ErrBadConn })
		m.config.Logger.Warn("revenant: releasing migration lock failed; connection discarded", slog.Any("error", err))
	}
}

// WriteGoose returns m's SQL as a goose migration file body.
func WriteGoose(m Migration) string {
	return "-- +goose Up\n-- +goose StatementBegin\n" + strings.TrimSpace(m.SQL) + "\n-- +goose StatementEnd\n"
}

// GooseFileName is the file name goose expects for m, e.g. "00001_revenant_core.sql".
func GooseFileName(m Migration) string {
	return fmt.Sprintf("%05d_revenant_%s.sql", m.Version, m.Name)
}

// GolangMigrateFileName is the up-file name golang-migrate (and atlas, in its
// golang-migrate format) expects for m, e.g. "000001_revenant_core.up.sql".
// The file body is m.SQL as is.
func GolangMigrateFileName(m Migration) string {
	return fmt.Sprintf("%06d_revenant_%s.up.sql", m.Version, m.Name)
}
