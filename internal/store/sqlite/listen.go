package sqlite

import (
	"context"
	"fmt"

	"github.com/revenant-go/revenant/internal/dbx"
	"github.com/revenant-go/revenant/internal/store"
)

// CheckListenDSN implements store.Store: SQLite has no LISTEN/NOTIFY.
func (Store) CheckListenDSN(field, _ string) error {
	return fmt.Errorf("%w: %s is set but the database is SQLite, which has no LISTEN/NOTIFY; leave it empty (nodes poll)", dbx.ErrInvalidInput, field)
}

// Listen implements store.Store: nothing ever arrives; nodes poll.
func (Store) Listen(context.Context, store.ListenConfig) store.Listener { return deaf{} }

type deaf struct{}

func (deaf) Notifications() <-chan *store.Notification { return nil }
func (deaf) Listening() bool                           { return false }
func (deaf) Close()                                    {}
