package sqlite_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/journal"
	"github.com/revenant-go/revenant/migrations"
	"github.com/revenant-go/revenant/sqlite"
)

// Revenant on a SQLite file, nothing installed: migrate, create and claim
// an episode, record a step, and see it replayed after a "restart".
func Example() {
	dir, _ := os.MkdirTemp("", "revenant-example-*")
	defer os.RemoveAll(dir)
	ctx := context.Background()

	db, err := sqlite.Open(ctx, filepath.Join(dir, "app.db"), nil)
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	res, err := migrations.Migrate(ctx, db)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("schema version", res.Version)

	store, _ := episodes.New(db, nil)
	created, _ := store.Create(ctx, episodes.CreateParams{ActorID: "mailer", DedupeKey: "welcome-ann"})
	ep, _ := store.Claim(ctx, created.Episode.ID, "node-a")

	j, _ := journal.Open(ctx, db, ep.ID, ep.ClaimToken, nil)
	out, _ := journal.Step(ctx, j, "send", func(context.Context) (string, error) { return "sent", nil })
	fmt.Println("step ran:", out)

	// A restart reads the journal back: the step is not run again.
	j2, _ := journal.Open(ctx, db, ep.ID, ep.ClaimToken, nil)
	out, _ = journal.Step(ctx, j2, "send", func(context.Context) (string, error) { return "sent twice", nil })
	fmt.Println("after restart:", out)

	done, _ := store.Complete(ctx, ep.ID, ep.ClaimToken, map[string]string{"status": out})
	fmt.Println(done.Status, string(done.Result))
	// Output:
	// schema version 10
	// step ran: sent
	// after restart: sent
	// done {"status":"sent"}
}
