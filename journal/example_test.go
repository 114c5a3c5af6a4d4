package journal_test

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

// A run crashes after its first step; the restarted run gets the recorded
// output back and only runs the step that had not completed.
func Example() {
	ctx := context.Background()
	// Your app opens its own database; here, a SQLite file (nothing to
	// install), migrated at boot.
	dir, err := os.MkdirTemp("", "revenant-example")
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

	store, _ := episodes.New(db, nil)
	created, _ := store.Create(ctx, episodes.CreateParams{ActorID: "greeter", Input: "Ada"})

	run := func(node string, crash bool) {
		ep, err := store.Claim(ctx, created.Episode.ID, node)
		if err != nil {
			log.Fatal(err)
		}
		j, err := journal.Open(ctx, db, ep.ID, ep.ClaimToken, nil)
		if err != nil {
			log.Fatal(err)
		}
		name, _ := journal.Step(ctx, j, "lookup", func(ctx context.Context) (string, error) {
			fmt.Println(node, "runs lookup")
			return "Ada Lovelace", nil
		})
		if crash {
			fmt.Println(node, "crashes")
			// What recovery does for a restart policy: back to pending.
			_, _ = db.Exec(`UPDATE revenant_episodes SET status = 'pending' WHERE id = $1`, ep.ID)
			return
		}
		greeting, _ := journal.Step(ctx, j, "greet", func(ctx context.Context) (string, error) {
			fmt.Println(node, "runs greet")
			return "Hello, " + name, nil
		})
		done, _ := store.Complete(ctx, ep.ID, ep.ClaimToken, greeting)
		fmt.Println(done.Status, string(done.Result), "attempts:", done.Attempts)
	}
	run("node-a", true)
	run("node-b", false)
	// Output:
	// node-a runs lookup
	// node-a crashes
	// node-b runs greet
	// done "Hello, Ada Lovelace" attempts: 2
}
