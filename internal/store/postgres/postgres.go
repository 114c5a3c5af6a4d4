// Package postgres is revenant's store on PostgreSQL (through lib/pq or
// pgx's stdlib driver). Every statement revenant runs on Postgres is here.
package postgres

import (
	"github.com/revenant-go/revenant/internal/store"
)

// Store is the PostgreSQL store. It holds no state: any number of handles
// share one.
type Store struct{}

var _ store.Store = Store{}

// Name implements store.Store.
func (Store) Name() string { return "postgres" }

// Capabilities implements store.Store.
func (Store) Capabilities() store.Capabilities {
	return store.Capabilities{AdvisoryLocks: true, Notify: true, RowLocks: true, StatementEvents: true}
}
