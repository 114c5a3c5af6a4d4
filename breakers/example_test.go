package breakers_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/revenant-go/revenant/breakers"
	"github.com/revenant-go/revenant/migrations"
	"github.com/revenant-go/revenant/sqlite"
)

// An operator opens an actor's breaker during a dependency's maintenance:
// no node claims its episodes until the breaker is closed again. (Actors
// open and close their own breakers when they set runner.Actor.Breaker.)
func Example() {
	ctx := context.Background()
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

	bs, err := breakers.New(db, nil)
	if err != nil {
		log.Fatal(err)
	}
	key := breakers.Key{ActorID: "payments", Env: "prod"}
	b, err := bs.Get(ctx, key)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(b.State)

	if b, err = bs.Open(ctx, key, "card network maintenance"); err != nil {
		log.Fatal(err)
	}
	fmt.Println(b.State, b.Manual, b.Reason)

	if b, err = bs.Close(ctx, key, "maintenance over"); err != nil {
		log.Fatal(err)
	}
	fmt.Println(b.State, b.Manual)
	// Output:
	// closed
	// open true card network maintenance
	// closed false
}
