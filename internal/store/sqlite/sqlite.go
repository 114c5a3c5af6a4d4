// Package sqlite is revenant's store on SQLite (modernc.org/sqlite, pure
// Go). Every statement revenant runs on SQLite is here. It does not import
// the driver: the application opens the file (package revenant/sqlite
// does it with the right settings).
//
// SQLite has no row locks, advisory locks or NOTIFY: writers are
// serialised on the file, liveness is the heartbeat TTL, and nodes poll.
package sqlite

import (
	"github.com/revenant-go/revenant/internal/dialect"
	"github.com/revenant-go/revenant/internal/store"
)

// now is the database clock (see dialect.SQLiteNow).
const now = dialect.SQLiteNow

// Store is the SQLite store. It holds no state: any number of handles
// share one.
type Store struct{}

var _ store.Store = Store{}

// Name implements store.Store.
func (Store) Name() string { return "sqlite" }

// Capabilities implements store.Store.
func (Store) Capabilities() store.Capabilities { return store.Capabilities{} }
