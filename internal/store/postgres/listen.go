package postgres

import (
	"context"

	"github.com/revenant-go/revenant/internal/store"
	"github.com/revenant-go/revenant/internal/store/postgres/listen"
)

// CheckListenDSN implements store.Store.
func (Store) CheckListenDSN(field, dsn string) error { return listen.CheckDSN(field, dsn) }

// Listen implements store.Store with lib/pq's reconnecting listener,
// whatever driver the pool uses: one connection per DSN and process,
// shared by the node's runner and bus.
func (Store) Listen(ctx context.Context, c store.ListenConfig) store.Listener {
	return listen.Join(ctx, listen.Config{DSN: c.DSN, Channels: c.Channels, Owner: c.Owner, Logger: c.Logger})
}
