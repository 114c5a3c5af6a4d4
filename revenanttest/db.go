package revenanttest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"

	"github.com/revenant-go/revenant/migrations"
	"github.com/revenant-go/revenant/sqlite"
)

// DatabaseURLEnv names the environment variable that makes DB return a
// fresh PostgreSQL schema in that database instead of a SQLite file.
const DatabaseURLEnv = "REVENANT_TEST_DATABASE_URL"

// TB is the part of testing.TB the kit uses: *testing.T and *testing.B
// satisfy it, and so can a recorder that collects failures (the kit's own
// tests use one to check what CrashAtEveryStep reports).
type TB interface {
	Helper()
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
	Logf(format string, args ...any)
	Cleanup(fn func())
	TempDir() string
}

// opened remembers, per handle DB returned, how to open the same database
// again: Process mode hands it to the child it starts.
var opened sync.Map // *sqlx.DB → dbSource

type dbSource struct {
	driver string // "sqlite" or "postgres"
	dsn    string // a file path, or a DSN whose search_path names the schema
}

// DB returns a fresh, migrated database for one test, closed (and dropped)
// when the test ends: a SQLite file in t.TempDir(), or, when the
// environment variable REVENANT_TEST_DATABASE_URL names a PostgreSQL
// database, a new schema in it, selected by the pool's search_path.
func DB(t TB) *sqlx.DB {
	t.Helper()
	if u := os.Getenv(DatabaseURLEnv); u != "" {
		return postgresDB(t, u)
	}
	return sqliteDB(t)
}

func sqliteDB(t TB) *sqlx.DB {
	t.Helper()
	path := filepath.Join(t.TempDir(), "revenant.db")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db, err := sqlite.Open(ctx, path, nil)
	if err != nil {
		t.Fatalf("revenanttest: opening a SQLite database: %v", err)
	}
	t.Cleanup(func() { opened.Delete(db); _ = db.Close() })
	if _, err := migrations.Migrate(ctx, db); err != nil {
		t.Fatalf("revenanttest: migrating %s: %v", path, err)
	}
	opened.Store(db, dbSource{driver: sqlite.DriverName, dsn: path})
	return db
}

func postgresDB(t TB, adminURL string) *sqlx.DB {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin, err := sqlx.Open("postgres", adminURL)
	if err != nil {
		t.Fatalf("revenanttest: %s does not parse as a PostgreSQL URL: %v", DatabaseURLEnv, redactErr(err, adminURL))
	}
	admin.SetMaxOpenConns(1)
	var b [6]byte
	_, _ = rand.Read(b[:])
	schema := "revenanttest_" + hex.EncodeToString(b[:])
	if _, err := admin.ExecContext(ctx, "CREATE SCHEMA "+pq.QuoteIdentifier(schema)); err != nil {
		_ = admin.Close()
		t.Fatalf("revenanttest: creating a schema in the database %s names (is it reachable, and may the role create schemas?): %v",
			DatabaseURLEnv, redactErr(err, adminURL))
	}
	t.Cleanup(func() {
		dctx, dcancel := context.WithTimeout(context.Background(), time.Minute)
		defer dcancel()
		if _, err := admin.ExecContext(dctx, "DROP SCHEMA "+pq.QuoteIdentifier(schema)+" CASCADE"); err != nil {
			t.Logf("revenanttest: dropping schema %s: %v", schema, err)
		}
		_ = admin.Close()
	})
	dsn := withSearchPath(adminURL, schema)
	db, err := sqlx.Open("postgres", dsn)
	if err != nil {
		t.Fatalf("revenanttest: opening schema %s: %v", schema, redactErr(err, dsn))
	}
	// Cleanups run last-in first-out: the pool closes before the schema
	// is dropped.
	t.Cleanup(func() { opened.Delete(db); _ = db.Close() })
	db.SetMaxOpenConns(16)
	db.SetMaxIdleConns(16)
	if _, err := migrations.Migrate(ctx, db); err != nil {
		t.Fatalf("revenanttest: migrating schema %s: %v", schema, redactErr(err, dsn))
	}
	opened.Store(db, dbSource{driver: "postgres", dsn: dsn})
	return db
}

// withSearchPath returns dsn with search_path set to schema, for the URL
// and key=value forms alike.
func withSearchPath(dsn, schema string) string {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		if u, err := url.Parse(dsn); err == nil {
			q := u.Query()
			q.Set("search_path", schema)
			u.RawQuery = q.Encode()
			return u.String()
		}
	}
	return fmt.Sprintf("%s search_path=%s", dsn, schema)
}

// redactErr keeps a password that the driver may quote out of messages.
func redactErr(err error, dsn string) error {
	u, perr := url.Parse(dsn)
	if perr != nil || u.User == nil {
		return err
	}
	pw, ok := u.User.Password()
	if !ok || pw == "" || !strings.Contains(err.Error(), pw) {
		return err
	}
	return fmt.Errorf("%s", strings.ReplaceAll(err.Error(), pw, "xxxxx"))
}
