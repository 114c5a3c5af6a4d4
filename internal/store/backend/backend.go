// Package backend picks the store for a database handle.
package backend

import (
	"database/sql"
	"runtime"
	"sync"
	"weak"

	"github.com/jmoiron/sqlx"

	"github.com/revenant-go/revenant/internal/dialect"
	"github.com/revenant-go/revenant/internal/store"
	"github.com/revenant-go/revenant/internal/store/postgres"
	"github.com/revenant-go/revenant/internal/store/sqlite"
)

// byHandle remembers each handle's store, so the backend is detected once
// per handle rather than on every call (journal.Open runs per episode).
// Keys are weak: a handle the application drops is forgotten here too.
var byHandle sync.Map // weak.Pointer[sql.DB] → store.Store

// For returns the store for db's backend. A nil db gets the Postgres
// store; callers refuse nil handles before they get here.
func For(db *sqlx.DB) store.Store {
	if db == nil || db.DB == nil {
		return postgres.Store{}
	}
	key := weak.Make(db.DB)
	if s, ok := byHandle.Load(key); ok {
		return s.(store.Store)
	}
	s := Of(dialect.Of(db))
	if _, loaded := byHandle.LoadOrStore(key, s); !loaded {
		runtime.AddCleanup(db.DB, func(k weak.Pointer[sql.DB]) { byHandle.Delete(k) }, key)
	}
	return s
}

// ForDB is For for a plain *sql.DB.
func ForDB(db *sql.DB) store.Store {
	if db == nil {
		return postgres.Store{}
	}
	return For(sqlx.NewDb(db, ""))
}

// Of returns the store of dialect d.
func Of(d dialect.Dialect) store.Store {
	if d == dialect.SQLite {
		return sqlite.Store{}
	}
	return postgres.Store{}
}
