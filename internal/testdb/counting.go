package testdb

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"sync/atomic"
	"testing"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
)

// Counting opens a lib/pq pool on dsn that counts every statement sent to
// the server: queries, execs, BEGIN, COMMIT and ROLLBACK.
func Counting(t testing.TB, dsn string, maxConns int) (*sqlx.DB, *atomic.Int64) {
	t.Helper()
	db, n, _ := CountingTx(t, dsn, maxConns)
	return db, n
}

// CountingTx is Counting that also counts transactions: each BEGIN, and
// each statement sent outside one (autocommit).
func CountingTx(t testing.TB, dsn string, maxConns int) (db *sqlx.DB, statements, transactions *atomic.Int64) {
	t.Helper()
	connector, err := pq.NewConnector(dsn)
	if err != nil {
		t.Fatalf("testdb: %v", err)
	}
	n, tx := &atomic.Int64{}, &atomic.Int64{}
	db = sqlx.NewDb(sql.OpenDB(countingConnector{Connector: connector, n: n, tx: tx}), "postgres")
	db.SetMaxOpenConns(maxConns)
	db.SetMaxIdleConns(maxConns) // the default keeps 2: the rest would reconnect for every use
	t.Cleanup(func() { _ = db.Close() })
	return db, n, tx
}

type countingConnector struct {
	driver.Connector
	n, tx *atomic.Int64
}

func (c countingConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: conn, n: c.n, tx: c.tx}, nil
}

// countingConn is used by one goroutine at a time (database/sql's rule),
// so inTx needs no lock.
type countingConn struct {
	driver.Conn
	n, tx *atomic.Int64
	inTx  bool
}

func (c *countingConn) statement() {
	c.n.Add(1)
	if !c.inTx {
		c.tx.Add(1)
	}
}

func (c *countingConn) QueryContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Rows, error) {
	c.statement()
	return c.Conn.(driver.QueryerContext).QueryContext(ctx, q, args)
}

func (c *countingConn) ExecContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Result, error) {
	c.statement()
	return c.Conn.(driver.ExecerContext).ExecContext(ctx, q, args)
}

func (c *countingConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	c.n.Add(1)
	tx, err := c.Conn.(driver.ConnBeginTx).BeginTx(ctx, opts)
	if err != nil {
		return nil, err
	}
	c.tx.Add(1)
	c.inTx = true
	return countingTx{Tx: tx, n: c.n, c: c}, nil
}

func (c *countingConn) PrepareContext(ctx context.Context, q string) (driver.Stmt, error) {
	return c.Conn.(driver.ConnPrepareContext).PrepareContext(ctx, q)
}

type countingTx struct {
	driver.Tx
	n *atomic.Int64
	c *countingConn
}

func (t countingTx) Commit() error {
	t.n.Add(1)
	t.c.inTx = false
	return t.Tx.Commit()
}

func (t countingTx) Rollback() error {
	t.n.Add(1)
	t.c.inTx = false
	return t.Tx.Rollback()
}
