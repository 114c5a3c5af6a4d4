package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/jmoiron/sqlx"
	_ "github.com/lib/pq" // the "postgres" driver

	"github.com/revenant-go/revenant"
	"github.com/revenant-go/revenant/inspect"
	"github.com/revenant-go/revenant/sqlite"
)

// Connecting. The URL may hold a password: it is never printed, and
// errors that could quote it are scrubbed.

// The backends a URL can name.
const (
	backendPostgres = "postgres"
	backendSQLite   = "sqlite"
)

// AdminNodeName is the name of the CLI's admin client (never started: it
// registers no node). Requeues it makes are recorded as by this name
// unless --by says otherwise.
const AdminNodeName = "revenant-cli"

// target is a parsed database URL.
type target struct {
	backend string
	// dsn is the Postgres URL; path the SQLite file.
	dsn, path string
}

const urlForms = "postgres://user@host:5432/db?sslmode=disable, sqlite:PATH, or a file path ending in .db, .sqlite or .sqlite3"

// parseDatabaseURL reads --database-url (or DATABASE_URL). Its errors
// never quote the URL.
func parseDatabaseURL(raw string) (target, error) {
	raw = strings.TrimSpace(raw)
	lower := strings.ToLower(raw)
	var path string
	switch {
	case raw == "":
		return target{}, usagef("no database: pass --database-url or set DATABASE_URL (%s)", urlForms)
	case strings.HasPrefix(lower, "postgres://"), strings.HasPrefix(lower, "postgresql://"):
		if _, err := url.Parse(raw); err != nil {
			return target{}, usagef("the database URL is not a valid postgres:// URL (it is not shown, as it may hold a password); check its syntax and percent-encode special characters in the password")
		}
		return target{backend: backendPostgres, dsn: raw}, nil
	case strings.HasPrefix(lower, "sqlite://"):
		path = raw[len("sqlite://"):]
	case strings.HasPrefix(lower, "sqlite:"):
		path = raw[len("sqlite:"):]
	default:
		switch strings.ToLower(filepath.Ext(raw)) {
		case ".db", ".sqlite", ".sqlite3":
			path = raw
		default:
			return target{}, usagef("the database URL is neither Postgres nor SQLite (it is not shown, as it may hold a password); use %s", urlForms)
		}
	}
	if path == "" {
		return target{}, usagef("the SQLite URL names no file: use sqlite:PATH, e.g. sqlite:./app.db")
	}
	return target{backend: backendSQLite, path: path}, nil
}

// target is the database --database-url (or DATABASE_URL) names.
func (a *app) target() (target, error) {
	raw := a.databaseURL
	if raw == "" {
		raw = os.Getenv("DATABASE_URL")
	}
	return parseDatabaseURL(raw)
}

// missingSQLite is the path of a SQLite database that does not exist
// yet, or "".
func (a *app) missingSQLite() string {
	t, err := a.target()
	if err != nil || t.backend != backendSQLite {
		return ""
	}
	if _, err := os.Stat(t.path); errors.Is(err, os.ErrNotExist) {
		return t.path
	}
	return ""
}

// open connects to the database once per invocation. With create, a
// missing SQLite file is created (migrate up); otherwise it is an error,
// so that a mistyped path does not leave an empty database behind.
func (a *app) open(ctx context.Context, create bool) (*sqlx.DB, error) {
	if a.db != nil {
		return a.db, nil
	}
	t, err := a.target()
	if err != nil {
		return nil, err
	}
	switch t.backend {
	case backendPostgres:
		db, err := sqlx.Open("postgres", t.dsn)
		if err != nil {
			return nil, scrub(fmt.Errorf("opening Postgres: %w", err), t.dsn)
		}
		db.SetMaxOpenConns(4)
		if err := db.PingContext(ctx); err != nil {
			_ = db.Close()
			return nil, scrub(fmt.Errorf("connecting to Postgres: %w", err), t.dsn)
		}
		a.db = db
	case backendSQLite:
		if !create {
			if _, err := os.Stat(t.path); errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("no SQLite database at %s: check the path (or create one with 'revenant migrate up')", t.path)
			}
		}
		db, err := sqlite.Open(ctx, t.path, nil)
		if err != nil {
			return nil, fmt.Errorf("opening SQLite database %s: %w", t.path, err)
		}
		a.db = db
	}
	return a.db, nil
}

// close closes the database the invocation opened.
func (a *app) close() error {
	if a.db == nil {
		return nil
	}
	err := a.db.Close()
	a.db = nil
	return err
}

// admin is the CLI's admin handle: an unstarted client in --stack and
// --env, which registers no node and claims nothing.
func (a *app) admin(ctx context.Context) (*revenant.Client, error) {
	if a.client != nil {
		return a.client, nil
	}
	db, err := a.open(ctx, false)
	if err != nil {
		return nil, err
	}
	c, err := revenant.New(db, &revenant.Config{Name: AdminNodeName, SkipMigrate: true, Stack: a.stack, Env: a.env, Logger: a.logger})
	if err != nil {
		return nil, err
	}
	a.client = c
	return c, nil
}

// inspector reads across every scope.
func (a *app) inspector(ctx context.Context) (*inspect.Inspector, error) {
	c, err := a.admin(ctx)
	if err != nil {
		return nil, err
	}
	return c.Inspect(), nil
}

// scrubbedError is an error whose message had secrets removed; it still
// unwraps to the original for errors.Is.
type scrubbedError struct {
	msg string
	err error
}

func (e *scrubbedError) Error() string { return e.msg }
func (e *scrubbedError) Unwrap() error { return e.err }

// scrub removes the DSN, and its password in every spelling, from err's
// message.
func scrub(err error, dsn string) error {
	if err == nil {
		return nil
	}
	secrets := []string{dsn}
	if u, perr := url.Parse(dsn); perr == nil && u.User != nil {
		if p, ok := u.User.Password(); ok && p != "" {
			secrets = append(secrets, p, url.QueryEscape(p), url.PathEscape(p))
		}
	}
	msg := err.Error()
	for _, s := range secrets {
		if s != "" {
			msg = strings.ReplaceAll(msg, s, "xxxxx")
		}
	}
	return &scrubbedError{msg: msg, err: err}
}
