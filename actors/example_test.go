package actors_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/revenant-go/revenant/actors"
	"github.com/revenant-go/revenant/migrations"
	"github.com/revenant-go/revenant/recovery"
	"github.com/revenant-go/revenant/sqlite"
)

// A definition states the recovery policy of an actor whose code the
// sweeping node does not register: here "importer" is restarted, except
// its "charge-card" episodes, which are failed.
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

	defs, err := actors.New(db, nil)
	if err != nil {
		log.Fatal(err)
	}
	err = defs.Define(ctx, actors.Definition{
		ID:                  "importer",
		Recovery:            recovery.Restart,
		ExpectationRecovery: map[string]recovery.Policy{"charge-card": recovery.Fail},
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := defs.Define(ctx, actors.Definition{ID: "exporter", Recovery: recovery.Fail}); err != nil {
		log.Fatal(err)
	}

	def, err := defs.Get(ctx, "importer")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(def.ID, def.Recovery, def.ExpectationRecovery, "disabled:", def.Disabled)

	list, err := defs.List(ctx)
	if err != nil {
		log.Fatal(err)
	}
	for _, d := range list {
		fmt.Println("listed:", d.ID, d.Recovery)
	}

	// Disabled definitions are kept, but sweeps ignore them.
	if err := defs.Disable(ctx, "importer"); err != nil {
		log.Fatal(err)
	}
	def, _ = defs.Get(ctx, "importer")
	fmt.Println("disabled:", def.Disabled)

	err = defs.Define(ctx, actors.Definition{ID: "mailer"})
	fmt.Println("no policy refused:", errors.Is(err, actors.ErrInvalidInput))
	_, err = defs.Get(ctx, "ghost")
	fmt.Println("unknown actor:", errors.Is(err, actors.ErrNotFound))
	// Output:
	// importer restart map[charge-card:fail] disabled: false
	// listed: exporter fail
	// listed: importer restart
	// disabled: true
	// no policy refused: true
	// unknown actor: true
}
