package episodes_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/migrations"
	"github.com/revenant-go/revenant/sqlite"
)

// Every transition is a compare-and-set: a second create with the same
// dedupe key returns the first episode, and a holder whose claim token is
// stale cannot write.
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

	store, err := episodes.New(db, &episodes.Config{Stack: "billing", Env: "prod"})
	if err != nil {
		log.Fatal(err)
	}
	first, _ := store.Create(ctx, episodes.CreateParams{ActorID: "invoicer", DedupeKey: "invoice-1001", Input: map[string]int{"cents": 4200}})
	again, _ := store.Create(ctx, episodes.CreateParams{ActorID: "invoicer", DedupeKey: "invoice-1001"})
	fmt.Println("duplicate:", again.Duplicate, "same episode:", again.Episode.ID == first.Episode.ID)

	a, _ := store.Claim(ctx, first.Episode.ID, "node-a")
	_, _ = store.Release(ctx, a.ID, a.ClaimToken) // node-a shuts down gracefully
	b, _ := store.Claim(ctx, first.Episode.ID, "node-b")
	fmt.Println("tokens:", a.ClaimToken, b.ClaimToken)

	_, err = store.Complete(ctx, a.ID, a.ClaimToken, "from a zombie")
	fmt.Println("stale token refused:", errors.Is(err, episodes.ErrLeaseLost))

	done, _ := store.Complete(ctx, b.ID, b.ClaimToken, "sent")
	fmt.Println(done.Status, string(done.Result), done.SourceStack, done.SourceEnv)

	_, err = store.Claim(ctx, done.ID, "node-c")
	fmt.Println("done -> running refused:", errors.Is(err, episodes.ErrIllegalTransition))
	// Output:
	// duplicate: true same episode: true
	// tokens: 1 2
	// stale token refused: true
	// done "sent" billing prod
	// done -> running refused: true
}
