package revenanttest

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
)

func TestMain(m *testing.M) {
	Main(m)
}

// pgURL is the Postgres the tests use, or "" to run on SQLite only.
func pgURL() string {
	if u := os.Getenv(DatabaseURLEnv); u != "" {
		return u
	}
	return os.Getenv("TEST_DATABASE_URL")
}

// backend is one database a test runs on.
type testBackend struct {
	name string
	open func(t TB) *sqlx.DB
}

// backends lists SQLite, and Postgres when a URL is set; with
// REVENANT_REQUIRE_DB=1 a Postgres that does not answer fails the test.
func backends(t *testing.T) []testBackend {
	out := []testBackend{{name: "sqlite", open: sqliteDB}}
	u := pgURL()
	if u == "" {
		if os.Getenv("REVENANT_REQUIRE_DB") == "1" {
			t.Fatal("REVENANT_REQUIRE_DB=1 but neither TEST_DATABASE_URL nor " + DatabaseURLEnv + " is set")
		}
		return out
	}
	if err := pingPostgres(u); err != nil {
		if os.Getenv("REVENANT_REQUIRE_DB") == "1" {
			t.Fatalf("Postgres required (REVENANT_REQUIRE_DB=1) but not reachable: %v", err)
		}
		t.Logf("Postgres not reachable, running on SQLite only: %v", err)
		return out
	}
	return append(out, testBackend{name: "postgres", open: func(t TB) *sqlx.DB { return postgresDB(t, u) }})
}

var (
	pingOnce sync.Once
	pingErr  error
)

func pingPostgres(u string) error {
	pingOnce.Do(func() {
		db, err := sql.Open("postgres", u)
		if err != nil {
			pingErr = err
			return
		}
		defer func() { _ = db.Close() }()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		pingErr = db.PingContext(ctx)
	})
	return pingErr
}

// eachBackend runs fn as a parallel subtest per backend.
func eachBackend(t *testing.T, fn func(t *testing.T, open func(t TB) *sqlx.DB)) {
	t.Parallel()
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			fn(t, b.open)
		})
	}
}

// recorder collects what the kit reports instead of failing the test, so
// that a test can check that a broken actor is caught.
type recorder struct {
	*testing.T
	mu     sync.Mutex
	errs   []string
	fatals []string
}

func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func (r *recorder) Fatalf(format string, args ...any) {
	r.mu.Lock()
	r.fatals = append(r.fatals, fmt.Sprintf(format, args...))
	r.mu.Unlock()
	runtime.Goexit()
}

// record runs fn with a recorder on its own goroutine (a Fatalf ends it).
func record(t *testing.T, fn func(r *recorder)) *recorder {
	t.Helper()
	r := &recorder{T: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(r)
	}()
	<-done
	return r
}

// recordOK is record for calls that must not stop.
func recordOK(t *testing.T, fn func(r *recorder)) *recorder {
	t.Helper()
	r := record(t, fn)
	if len(r.fatals) > 0 {
		t.Fatalf("the kit stopped: %s", r.fatalsText())
	}
	return r
}

func (r *recorder) fatalsText() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.fatals, "\n")
}

func (r *recorder) all() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.errs, "\n")
}
