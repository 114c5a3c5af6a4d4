package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/revenant-go/revenant/internal/dbx"
)

// DriverName is the database/sql driver name modernc.org/sqlite registers.
const DriverName = "sqlite"

// BusyTimeoutDefault is how long a connection waits for another
// connection's (or process's) write lock before failing with "database is
// locked".
const BusyTimeoutDefault = 10 * time.Second

// Config tunes Open. The zero value is valid.
type Config struct {
	// BusyTimeout bounds the wait for the write lock. Defaults to
	// BusyTimeoutDefault.
	BusyTimeout time.Duration
	// MaxOpenConns caps the pool. SQLite has one writer at a time; readers
	// run beside it in WAL mode. Defaults to 8.
	MaxOpenConns int
	// ReadOnly opens the file read-only (inspection tools). Revenant's
	// writers then fail with a clear error.
	ReadOnly bool
}

// MaxOpenConnsDefault is Config.MaxOpenConns' default.
const MaxOpenConnsDefault = 8

func (c *Config) withDefaults() (*Config, error) {
	out := Config{}
	if c != nil {
		out = *c
	}
	// SQLite takes whole milliseconds: under 1 ms would be 0, no wait at
	// all, and every concurrent write would fail at once.
	if out.BusyTimeout != 0 && (out.BusyTimeout < time.Millisecond || out.BusyTimeout > 24*time.Hour) {
		return nil, fmt.Errorf("%w: sqlite Config.BusyTimeout is %s; use a duration from 1ms to 24h, or 0 for the default (%s)", dbx.ErrInvalidInput, out.BusyTimeout, BusyTimeoutDefault)
	}
	if out.MaxOpenConns < 0 {
		return nil, fmt.Errorf("%w: sqlite Config.MaxOpenConns is %d; use a positive number or 0 for the default (%d)", dbx.ErrInvalidInput, out.MaxOpenConns, MaxOpenConnsDefault)
	}
	if out.BusyTimeout == 0 {
		out.BusyTimeout = BusyTimeoutDefault
	}
	if out.MaxOpenConns == 0 {
		out.MaxOpenConns = MaxOpenConnsDefault
	}
	return &out, nil
}

// DSN returns the modernc.org/sqlite data source name Open uses for path,
// for programs that call sql.Open themselves (or hand the DSN to a child
// process). The path is escaped, so the file opened is exactly path; a path
// containing '?' is refused.
func DSN(path string, config *Config) (string, error) {
	cfg, err := config.withDefaults()
	if err != nil {
		return "", err
	}
	if path == "" {
		return "", fmt.Errorf("%w: sqlite: path is empty; pass a file name such as \"revenant.db\"", dbx.ErrInvalidInput)
	}
	// A '?' could be escaped like '#', but a path holding one is far more
	// often a DSN passed by mistake, which would silently become a file name.
	if strings.HasPrefix(path, "file:") || strings.Contains(path, "?") {
		return "", fmt.Errorf("%w: sqlite: pass a plain file path, not a DSN, and without '?' (%q); use sql.Open for custom DSNs", dbx.ErrInvalidInput, path)
	}
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", cfg.BusyTimeout.Milliseconds()))
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Set("_txlock", "immediate")
	mode := "rwc"
	if cfg.ReadOnly {
		mode = "ro"
	} else {
		q.Add("_pragma", "journal_mode(WAL)")
	}
	q.Set("mode", mode)
	return "file:" + uriPath(path) + "?" + q.Encode(), nil
}

// uriPath escapes what SQLite's URI parser would otherwise take for
// syntax: a '#' starts a fragment, a '?' the query, and "%41" would open
// "A". Cleaning the path keeps "//x" from reading as an authority.
func uriPath(path string) string {
	return strings.NewReplacer("%", "%25", "#", "%23", "?", "%3F").Replace(filepath.Clean(path))
}

// Open opens (creating if needed) the SQLite file at path with the
// settings revenant relies on and checks that it can be used: a read-only
// file or directory, or a file that stays locked past BusyTimeout, is
// reported here with what to do. The handle queues this process's writers
// on the file in FIFO order (see gate.go) so that none waits past
// BusyTimeout while others keep the file busy. The caller closes it.
func Open(ctx context.Context, path string, config *Config) (*sqlx.DB, error) {
	cfg, err := config.withDefaults()
	if err != nil {
		return nil, err
	}
	dsn, err := DSN(path, cfg)
	if err != nil {
		return nil, err
	}
	if !cfg.ReadOnly {
		if err := checkWritable(path); err != nil {
			return nil, err
		}
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("sqlite: resolving %s: %w", path, err)
	}
	db := sqlx.NewDb(sql.OpenDB(&connector{dsn: dsn, path: abs, wait: cfg.BusyTimeout}), DriverName)
	db.SetMaxOpenConns(cfg.MaxOpenConns)
	db.SetMaxIdleConns(cfg.MaxOpenConns)
	// The pragmas run when a connection opens: a locked or unreadable file
	// fails here rather than at the first write.
	var mode string
	if err := db.QueryRowContext(ctx, `PRAGMA journal_mode`).Scan(&mode); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("sqlite: opening %s: %w", path, dbx.Explain(err))
	}
	if !cfg.ReadOnly && !strings.EqualFold(mode, "wal") {
		_ = db.Close()
		return nil, fmt.Errorf("sqlite: %s stays in journal_mode %q, not WAL (is it on a network file system, or in memory?); revenant needs WAL so readers do not block the writer", path, mode)
	}
	return db, nil
}

// checkWritable fails early, and clearly, on a file or directory this
// process cannot write.
func checkWritable(path string) error {
	dir := filepath.Dir(path)
	if fi, err := os.Stat(path); err == nil {
		if fi.IsDir() {
			return fmt.Errorf("%w: sqlite: %s is a directory; pass a file name", dbx.ErrInvalidInput, path)
		}
		f, err := os.OpenFile(path, os.O_RDWR, 0) //nolint:gosec // G304: opening the caller's database file is the point
		if err != nil {
			return fmt.Errorf("sqlite: %s is not writable by this process (%w); revenant writes to it, and to its -wal and -shm files beside it", path, err)
		}
		_ = f.Close()
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("sqlite: checking %s: %w", path, err)
	}
	probe, err := os.CreateTemp(dir, ".revenant-probe-*")
	if err != nil {
		return fmt.Errorf("sqlite: directory %s is not writable by this process (%w); SQLite keeps its -wal and -shm files next to the database file", dir, err)
	}
	name := probe.Name()
	_ = probe.Close()
	_ = os.Remove(name)
	return nil
}
