package sqlite

import (
	"context"
	"database/sql/driver"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"time"

	msqlite "modernc.org/sqlite"
)

// SQLite admits one writer at a time; a writer that finds the file locked
// polls (the busy handler sleeps and retries). Under many concurrent
// writers in one process that polling is unfair: a writer can lose the
// race for longer than busy_timeout and fail with "database is locked"
// while the file was never idle. So the handles Open returns queue their
// own process's writers first, in FIFO order, on a gate per database file:
// a transaction holds the gate from BEGIN to COMMIT/ROLLBACK, a write
// statement outside a transaction while it runs. The busy handler is left
// to arbitrate between processes only. Reads (SELECT, PRAGMA, EXPLAIN)
// outside a transaction never wait for the gate: WAL readers do not block
// writers. Prepared statements are gated the same way. The wrapper also
// keeps a per-connection cache of prepared statements (see stmts).

var (
	gatesMu sync.Mutex
	gates   = map[string]chan struct{}{}
)

func gateFor(path string) chan struct{} {
	gatesMu.Lock()
	defer gatesMu.Unlock()
	g, ok := gates[path]
	if !ok {
		g = make(chan struct{}, 1)
		gates[path] = g
	}
	return g
}

// LockedError is returned when the gate stayed taken for longer than the
// busy timeout. It reads as SQLITE_BUSY, so revenant.IsRetryable is true.
type LockedError struct {
	Path string
	Wait time.Duration
}

func (e *LockedError) Error() string {
	return fmt.Sprintf("database is locked (5) (SQLITE_BUSY): another writer in this process held %s for over %s", e.Path, e.Wait)
}

// Code is SQLITE_BUSY.
func (e *LockedError) Code() int { return 5 }

type connector struct {
	dsn, path string
	wait      time.Duration
	drv       gatedDriver
}

func (c *connector) Connect(context.Context) (driver.Conn, error) {
	dc, err := (&msqlite.Driver{}).Open(c.dsn)
	if err != nil {
		return nil, err
	}
	return &gatedConn{inner: dc, gate: gateFor(c.path), path: c.path, wait: c.wait}, nil
}

func (c *connector) Driver() driver.Driver { return c.drv }

// gatedDriver is what db.Driver() reports; revenant reads the backend from
// its type name.
type gatedDriver struct{}

func (d gatedDriver) Open(name string) (driver.Conn, error) { return (&msqlite.Driver{}).Open(name) }

type gatedConn struct {
	inner driver.Conn
	gate  chan struct{}
	path  string
	wait  time.Duration
	held  bool // this connection holds the gate (a transaction is open)
	// stmts caches prepared statements by query text. Preparing is a large
	// part of a small statement's cost on SQLite (a third of a journal
	// write); Postgres keeps plans server-side (revenant's hot path is a
	// PL/pgSQL function) or in the driver (pgx).
	stmts map[string]*cachedStmt
}

// stmtCacheSize caps the statements cached per connection; past it, new
// queries are prepared per call as before.
const stmtCacheSize = 128

type cachedStmt struct {
	st   driver.Stmt
	busy bool // its rows are open: a second use must prepare afresh
}

// cached returns the connection's prepared statement for query, preparing
// it on first use, or nil when the query is not cached (several statements
// in one string, cache full, statement in use, or a prepare error, which
// the unprepared path then reports as usual).
func (c *gatedConn) cached(ctx context.Context, query string) *cachedStmt {
	if cs, ok := c.stmts[query]; ok {
		if cs.busy {
			return nil
		}
		return cs
	}
	if len(c.stmts) >= stmtCacheSize || strings.Contains(query, ";") {
		return nil
	}
	st, err := c.inner.(driver.ConnPrepareContext).PrepareContext(ctx, query)
	if err != nil {
		return nil
	}
	if c.stmts == nil {
		c.stmts = map[string]*cachedStmt{}
	}
	cs := &cachedStmt{st: st}
	c.stmts[query] = cs
	return cs
}

func (c *gatedConn) exec(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	if cs := c.cached(ctx, query); cs != nil {
		cs.busy = true
		defer func() { cs.busy = false }()
		return cs.st.(driver.StmtExecContext).ExecContext(ctx, args)
	}
	return c.inner.(driver.ExecerContext).ExecContext(ctx, query, args)
}

// query runs query; done is called once its rows are closed (or it failed).
func (c *gatedConn) query(ctx context.Context, query string, args []driver.NamedValue, done func()) (driver.Rows, error) {
	var rows driver.Rows
	var err error
	if cs := c.cached(ctx, query); cs != nil {
		cs.busy = true
		rows, err = cs.st.(driver.StmtQueryContext).QueryContext(ctx, args)
		if err != nil {
			cs.busy = false
		} else {
			prev := done
			done = func() {
				cs.busy = false
				if prev != nil {
					prev()
				}
			}
		}
	} else {
		rows, err = c.inner.(driver.QueryerContext).QueryContext(ctx, query, args)
	}
	if err != nil {
		if done != nil {
			done()
		}
		return nil, err
	}
	if done == nil {
		return rows, nil
	}
	return &gatedRows{Rows: rows, done: done}, nil
}

func (c *gatedConn) acquire(ctx context.Context) error {
	select {
	case c.gate <- struct{}{}:
		return nil
	default:
	}
	t := time.NewTimer(c.wait)
	defer t.Stop()
	select {
	case c.gate <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return &LockedError{Path: c.path, Wait: c.wait}
	}
}

func (c *gatedConn) release() { <-c.gate }

// writes reports whether a statement outside a transaction must take the
// gate: anything but a plain read.
func writes(query string) bool {
	q := strings.TrimLeft(query, " \t\r\n(")
	for strings.HasPrefix(q, "--") {
		if i := strings.IndexByte(q, '\n'); i >= 0 {
			q = strings.TrimLeft(q[i+1:], " \t\r\n(")
		} else {
			return false
		}
	}
	if len(q) > 8 {
		q = q[:8]
	}
	q = strings.ToUpper(q)
	return !strings.HasPrefix(q, "SELECT") && !strings.HasPrefix(q, "PRAGMA") && !strings.HasPrefix(q, "EXPLAIN") && !strings.HasPrefix(q, "VALUES")
}

func (c *gatedConn) Prepare(query string) (driver.Stmt, error) {
	return c.PrepareContext(context.Background(), query)
}

func (c *gatedConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	st, err := c.inner.(driver.ConnPrepareContext).PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	return &gatedStmt{inner: st, c: c, write: writes(query)}, nil
}

type gatedStmt struct {
	inner driver.Stmt
	c     *gatedConn
	write bool
}

func (s *gatedStmt) Close() error  { return s.inner.Close() }
func (s *gatedStmt) NumInput() int { return s.inner.NumInput() }

func (s *gatedStmt) Exec(args []driver.Value) (driver.Result, error) {
	return nil, fmt.Errorf("sqlite: Stmt.Exec without context is not supported; use ExecContext")
}

func (s *gatedStmt) Query(args []driver.Value) (driver.Rows, error) {
	return nil, fmt.Errorf("sqlite: Stmt.Query without context is not supported; use QueryContext")
}

func (s *gatedStmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	ex := s.inner.(driver.StmtExecContext)
	if s.c.held || !s.write {
		return ex.ExecContext(ctx, args)
	}
	if err := s.c.acquire(ctx); err != nil {
		return nil, err
	}
	defer s.c.release()
	return ex.ExecContext(ctx, args)
}

func (s *gatedStmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	q := s.inner.(driver.StmtQueryContext)
	if s.c.held || !s.write {
		return q.QueryContext(ctx, args)
	}
	if err := s.c.acquire(ctx); err != nil {
		return nil, err
	}
	rows, err := q.QueryContext(ctx, args)
	if err != nil {
		s.c.release()
		return nil, err
	}
	return &gatedRows{Rows: rows, done: s.c.release}, nil
}

func (c *gatedConn) Close() error {
	if c.held {
		c.held = false
		c.release()
	}
	for _, cs := range c.stmts {
		_ = cs.st.Close()
	}
	c.stmts = nil
	return c.inner.Close()
}

func (c *gatedConn) Begin() (driver.Tx, error) {
	return c.BeginTx(context.Background(), driver.TxOptions{})
}

func (c *gatedConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	if err := c.acquire(ctx); err != nil {
		return nil, err
	}
	tx, err := c.inner.(driver.ConnBeginTx).BeginTx(ctx, opts)
	if err != nil {
		c.release()
		return nil, err
	}
	c.held = true
	return &gatedTx{inner: tx, c: c}, nil
}

type gatedTx struct {
	inner driver.Tx
	c     *gatedConn
}

func (t *gatedTx) done() {
	if t.c.held {
		t.c.held = false
		t.c.release()
	}
}

func (t *gatedTx) Commit() error {
	defer t.done()
	return t.inner.Commit()
}

func (t *gatedTx) Rollback() error {
	defer t.done()
	return t.inner.Rollback()
}

func (c *gatedConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	if c.held || !writes(query) {
		return c.exec(ctx, query, args)
	}
	if err := c.acquire(ctx); err != nil {
		return nil, err
	}
	defer c.release()
	return c.exec(ctx, query, args)
}

func (c *gatedConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	if c.held || !writes(query) {
		return c.query(ctx, query, args, nil)
	}
	// A write with RETURNING holds SQLite's lock until its rows are closed.
	if err := c.acquire(ctx); err != nil {
		return nil, err
	}
	return c.query(ctx, query, args, c.release)
}

func (c *gatedConn) Ping(ctx context.Context) error {
	if p, ok := c.inner.(driver.Pinger); ok {
		return p.Ping(ctx)
	}
	return nil
}

func (c *gatedConn) ResetSession(ctx context.Context) error {
	if r, ok := c.inner.(driver.SessionResetter); ok {
		return r.ResetSession(ctx)
	}
	return nil
}

func (c *gatedConn) IsValid() bool {
	if v, ok := c.inner.(driver.Validator); ok {
		return v.IsValid()
	}
	return true
}

// gatedRows runs done once when closed: it releases the gate and marks a
// cached statement free.
type gatedRows struct {
	driver.Rows
	done   func()
	closed bool
}

func (r *gatedRows) Close() error {
	err := r.Rows.Close()
	if !r.closed {
		r.closed = true
		r.done()
	}
	return err
}

func (r *gatedRows) ColumnTypeDatabaseTypeName(i int) string {
	if x, ok := r.Rows.(driver.RowsColumnTypeDatabaseTypeName); ok {
		return x.ColumnTypeDatabaseTypeName(i)
	}
	return ""
}

func (r *gatedRows) ColumnTypeScanType(i int) reflect.Type {
	if x, ok := r.Rows.(driver.RowsColumnTypeScanType); ok {
		return x.ColumnTypeScanType(i)
	}
	return reflect.TypeFor[any]()
}
