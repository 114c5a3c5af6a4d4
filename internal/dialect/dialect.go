// Package dialect tells revenant's packages which SQL backend a handle
// talks to, and holds the few SQL fragments that differ between them.
//
// The core packages never import a SQLite driver: the dialect is read from
// the handle's driver type, so a Postgres-only program does not compile
// SQLite in.
package dialect

import (
	"database/sql"
	"reflect"
	"strings"

	"github.com/jmoiron/sqlx"
)

// Dialect is the SQL backend of a handle.
type Dialect uint8

const (
	// Postgres is PostgreSQL through lib/pq or pgx's stdlib driver.
	Postgres Dialect = iota
	// SQLite is SQLite through modernc.org/sqlite (pure Go).
	SQLite
)

func (d Dialect) String() string {
	if d == SQLite {
		return "sqlite"
	}
	return "postgres"
}

// Of returns the dialect of db, read from its driver's type and the name
// sqlx was given.
func Of(db *sqlx.DB) Dialect {
	if db == nil || db.DB == nil {
		return Postgres
	}
	if isSQLiteName(db.DriverName()) {
		return SQLite
	}
	return OfDB(db.DB)
}

// OfDB is Of for a plain *sql.DB.
func OfDB(db *sql.DB) Dialect {
	if db == nil {
		return Postgres
	}
	t := reflect.TypeOf(db.Driver())
	name := t.String()
	if t.Kind() == reflect.Pointer {
		name += " " + t.Elem().PkgPath()
	}
	if isSQLiteName(name) {
		return SQLite
	}
	return Postgres
}

func isSQLiteName(s string) bool { return strings.Contains(strings.ToLower(s), "sqlite") }

// SQLiteNow is the database clock on SQLite, as text that sorts and
// compares in time order and that modernc.org/sqlite reads back as a
// time.Time from columns declared timestamp: UTC, millisecond precision.
// SQLite keeps 'now' fixed for the whole of one statement, as Postgres does
// for a transaction. It is a scalar subquery on purpose: SQLite computes an
// uncorrelated one once per statement, where a bare strftime() would be
// re-evaluated for every row a bulk statement touches.
const SQLiteNow = `(SELECT strftime('%Y-%m-%d %H:%M:%f', 'now'))`

// SQLiteNowPlusMillis is SQLiteNow shifted by the milliseconds in param
// (a positional parameter such as "$3", or a column); negative values
// shift back.
func SQLiteNowPlusMillis(param string) string {
	return `(SELECT strftime('%Y-%m-%d %H:%M:%f', 'now', printf('%+.3f seconds', ` + param + ` / 1000.0)))`
}

// SQLiteNowMinusMillis is SQLiteNow shifted back by the milliseconds in
// param.
func SQLiteNowMinusMillis(param string) string {
	return `(SELECT strftime('%Y-%m-%d %H:%M:%f', 'now', printf('%+.3f seconds', -(` + param + `) / 1000.0)))`
}

// SQLiteError is implemented by modernc.org/sqlite's *Error.
type SQLiteError interface {
	error
	Code() int
}

// SQLite result codes revenant reacts to (primary codes are the low byte
// of extended ones).
const (
	SQLiteBusy     = 5
	SQLiteLocked   = 6
	SQLiteReadOnly = 8
	// Extended constraint codes.
	SQLiteConstraintPrimaryKey = 1555
	SQLiteConstraintUnique     = 2067
)

// sqliteRewriter turns the portable subset of revenant's Postgres SQL into
// SQLite: the database clock, jsonb casts and greatest(). Statements that
// need more than this (arrays, locks, PL/pgSQL, LATERAL) have hand-written
// SQLite twins next to them.
var sqliteRewriter = strings.NewReplacer(
	"now()", SQLiteNow,
	"::jsonb", "",
	"greatest(", "max(",
)

// Rewrite returns query in d's dialect (see sqliteRewriter for what it
// covers). Postgres queries are returned unchanged.
func (d Dialect) Rewrite(query string) string {
	if d != SQLite {
		return query
	}
	return sqliteRewriter.Replace(query)
}
