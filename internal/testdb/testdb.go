// Package testdb gives each test an isolated, migrated database: a fresh
// PostgreSQL schema in the database at TEST_DATABASE_URL, or a fresh SQLite
// file in a temporary directory (Options.Driver "sqlite").
//
// SQLite needs nothing installed, so its tests always run. When no Postgres
// is reachable, tests that ask for one are skipped with a one-line hint,
// unless REVENANT_REQUIRE_DB=1, where they fail instead (CI sets it).
//
// The conformance suite: tests that take a driver from Drivers or Backends
// (directly or through Each) run the same assertions on every backend.
package testdb

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver, to test both drivers
	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"

	"github.com/revenant-go/revenant/migrations"
	"github.com/revenant-go/revenant/sqlite"
)

// DefaultURL is used when TEST_DATABASE_URL is unset.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// URL returns the test database URL.
func URL() string {
	if u := os.Getenv("TEST_DATABASE_URL"); u != "" {
		return u
	}
	return DefaultURL
}

var (
	adminOnce sync.Once
	adminDB   *sql.DB
	adminErr  error
)

func admin() (*sql.DB, error) {
	adminOnce.Do(func() {
		db, err := sql.Open("postgres", URL())
		if err != nil {
			adminErr = err
			return
		}
		db.SetMaxOpenConns(4)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := db.PingContext(ctx); err != nil {
			_ = db.Close()
			adminErr = err
			return
		}
		adminDB = db
	})
	return adminDB, adminErr
}

// Require skips (or, with REVENANT_REQUIRE_DB=1, fails) t when Postgres is
// not reachable.
func Require(t testing.TB) {
	t.Helper()
	if _, err := admin(); err != nil {
		if os.Getenv("REVENANT_REQUIRE_DB") == "1" {
			t.Fatalf("Postgres required (REVENANT_REQUIRE_DB=1) but not reachable at %s: %v", redact(URL()), err)
		}
		t.Skipf("Postgres not reachable at %s; set TEST_DATABASE_URL to run this test (REVENANT_REQUIRE_DB=1 makes it fail instead): %v", redact(URL()), err)
	}
}

// Drivers lists every driver the conformance tests run on: lib/pq and pgx
// on Postgres, and SQLite.
var Drivers = []string{"postgres", "pgx", SQLite}

// Backends lists one driver per backend, for tests whose subject is not
// the Postgres driver.
var Backends = []string{"postgres", SQLite}

// SQLite is the driver name of the SQLite backend.
const SQLite = "sqlite"

// Each runs fn as a parallel subtest per driver (Backends when drivers is
// nil), each with its own database.
func Each(t *testing.T, drivers []string, fn func(t *testing.T, driver string)) {
	t.Helper()
	t.Parallel()
	if drivers == nil {
		drivers = Backends
	}
	for _, d := range drivers {
		t.Run(d, func(t *testing.T) {
			t.Parallel()
			fn(t, d)
		})
	}
}

// Options tunes New.
type Options struct {
	// Driver is "postgres" (lib/pq, the default), "pgx" (pgx stdlib) or
	// "sqlite" (modernc.org/sqlite, a temporary file).
	Driver string
	// NoMigrate leaves the schema empty.
	NoMigrate bool
	// MaxOpenConns defaults to 8.
	MaxOpenConns int
}

// Schema is an isolated schema (or SQLite file) for one test.
type Schema struct {
	Name string
	// DSN selects the schema through search_path (on SQLite it is the
	// file's path); hand it to child processes.
	DSN string
	DB  *sqlx.DB
	// Driver is the driver the pool was opened with.
	Driver string
}

// IsSQLite reports whether s is a SQLite file.
func (s *Schema) IsSQLite() bool { return s.Driver == SQLite }

// NowPlus is a SQL expression for the database clock shifted by d, in s's
// dialect, for tests that write timestamps directly.
func (s *Schema) NowPlus(d time.Duration) string {
	if s.IsSQLite() {
		return fmt.Sprintf("strftime('%%Y-%%m-%%d %%H:%%M:%%f', 'now', '%+.3f seconds')", d.Seconds())
	}
	return fmt.Sprintf("(now() + interval '%d milliseconds')", d.Milliseconds())
}

// New creates a fresh schema, opens a pool whose search_path selects it,
// migrates it (unless opts.NoMigrate) and drops it when the test ends.
func New(t testing.TB, opts *Options) *Schema {
	t.Helper()
	if opts == nil || opts.Driver != SQLite {
		Require(t)
	}
	s, cleanup, err := Open(opts)
	if err != nil {
		t.Fatalf("testdb: %v", err)
	}
	t.Cleanup(func() {
		if err := cleanup(); err != nil {
			t.Logf("testdb: %v", err)
		}
	})
	return s
}

// Open is New for code without a testing.TB (Example functions). The
// returned cleanup closes the pool and drops the schema.
func Open(opts *Options) (*Schema, func() error, error) {
	if opts == nil {
		opts = &Options{}
	}
	driverName := opts.Driver
	if driverName == "" {
		driverName = "postgres"
	}
	if driverName == SQLite {
		return openSQLite(opts)
	}
	adm, err := admin()
	if err != nil {
		return nil, nil, fmt.Errorf("postgres not reachable at %s: %w", redact(URL()), err)
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "rvt_" + hex.EncodeToString(b[:])
	ctx := context.Background()
	if _, err := adm.ExecContext(ctx, "CREATE SCHEMA "+pq.QuoteIdentifier(name)); err != nil {
		return nil, nil, fmt.Errorf("creating schema: %w", err)
	}
	dropSchema := func() error {
		if _, err := adm.ExecContext(context.Background(), "DROP SCHEMA "+pq.QuoteIdentifier(name)+" CASCADE"); err != nil {
			return fmt.Errorf("dropping schema %s: %w", name, err)
		}
		return nil
	}
	dsn := WithSearchPath(URL(), name)
	db, err := sqlx.Open(driverName, dsn)
	if err != nil {
		return nil, nil, errors.Join(fmt.Errorf("opening %s: %w", driverName, err), dropSchema())
	}
	maxConns := opts.MaxOpenConns
	if maxConns == 0 {
		maxConns = 8
	}
	db.SetMaxOpenConns(maxConns)
	db.SetMaxIdleConns(maxConns)
	cleanup := func() error {
		_ = db.Close()
		return dropSchema()
	}
	if !opts.NoMigrate {
		if _, err := migrations.Migrate(ctx, db); err != nil {
			return nil, nil, errors.Join(fmt.Errorf("migrating schema %s: %w", name, err), cleanup())
		}
	}
	return &Schema{Name: name, DSN: dsn, DB: db, Driver: driverName}, cleanup, nil
}

// openSQLite creates a migrated SQLite file in a new temporary directory.
func openSQLite(opts *Options) (*Schema, func() error, error) {
	dir, err := os.MkdirTemp("", "revenant-test-*")
	if err != nil {
		return nil, nil, err
	}
	path := filepath.Join(dir, "revenant.db")
	db, err := sqlite.Open(context.Background(), path, &sqlite.Config{MaxOpenConns: opts.MaxOpenConns})
	if err != nil {
		return nil, nil, errors.Join(err, os.RemoveAll(dir))
	}
	cleanup := func() error {
		_ = db.Close()
		return os.RemoveAll(dir)
	}
	if !opts.NoMigrate {
		if _, err := migrations.Migrate(context.Background(), db); err != nil {
			return nil, nil, errors.Join(fmt.Errorf("migrating %s: %w", path, err), cleanup())
		}
	}
	return &Schema{Name: path, DSN: path, DB: db, Driver: SQLite}, cleanup, nil
}

// Main runs a package's tests. When Postgres is unreachable (and not
// required) it skips the Example functions, which cannot call t.Skip, and
// says so in one line.
func Main(m *testing.M) {
	if _, err := admin(); err != nil && os.Getenv("REVENANT_REQUIRE_DB") != "1" {
		_ = flag.Set("test.skip", "^Example")
		fmt.Printf("revenant: Postgres not reachable at %s; Postgres tests and examples skipped, SQLite tests run (set TEST_DATABASE_URL to run them all)\n", redact(URL()))
	}
	os.Exit(m.Run())
}

// WithSearchPath returns dsn with search_path set to schema, for URL and
// key=value forms alike.
func WithSearchPath(dsn, schema string) string {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err == nil {
			q := u.Query()
			q.Set("search_path", schema)
			u.RawQuery = q.Encode()
			return u.String()
		}
	}
	return fmt.Sprintf("%s search_path=%s", dsn, schema)
}

func redact(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil || u.User == nil {
		return dsn
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}
