package bus_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/revenant-go/revenant/bus"
	"github.com/revenant-go/revenant/migrations"
	"github.com/revenant-go/revenant/sqlite"
)

// The outbox bus delivers events to every node's subscribers, at least
// once; an event published in a transaction exists only if it commits.
func Example() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "revenant-bus-example-*")
	if err != nil {
		log.Fatal(err)
	}
	defer func() { _ = os.RemoveAll(dir) }()
	db, err := sqlite.Open(ctx, filepath.Join(dir, "app.db"), nil)
	if err != nil {
		log.Fatal(err)
	}
	defer func() { _ = db.Close() }()
	if _, err := migrations.Migrate(ctx, db); err != nil {
		log.Fatal(err)
	}

	b, err := bus.NewOutbox(db, &bus.OutboxConfig{PollInterval: 20 * time.Millisecond}) // SQLite polls
	if err != nil {
		log.Fatal(err)
	}
	got := make(chan bus.Event, 2)
	unsubscribe := b.Subscribe(bus.EpisodeCompleted, func(_ context.Context, ev bus.Event) error {
		got <- ev // dedupe by ev.ID: delivery is at least once
		return nil
	})
	defer unsubscribe()
	if err := b.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer func() { _ = b.Stop(ctx) }()

	tx := db.MustBeginTx(ctx, nil)
	if err := b.PublishTx(ctx, tx, bus.Event{Type: bus.EpisodeCompleted, ActorID: "invoicer", Status: "done"}); err != nil {
		log.Fatal(err)
	}
	if err := tx.Commit(); err != nil { // the event exists from here on
		log.Fatal(err)
	}
	ev := <-got
	fmt.Println(ev.Type, ev.ActorID, ev.Status)
	// Output: episode.completed invoicer done
}
