package migrations_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/revenant-go/revenant/migrations"
	"github.com/revenant-go/revenant/sqlite"
)

// Call Migrate at boot on every node; a second call has nothing to do.
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

	res, err := migrations.Migrate(ctx, db)
	if err != nil {
		log.Fatal(err)
	}
	for _, a := range res.Applied {
		fmt.Println("applied", a.Version, a.Name)
	}
	res, _ = migrations.Migrate(ctx, db)
	fmt.Println("second run applied", len(res.Applied), "at version", res.Version)
	// Output:
	// applied 1 core
	// applied 2 nodes_actors
	// applied 3 workflows_events
	// applied 4 scoped_dedupe
	// applied 5 actor_policies
	// applied 6 retries_schedules_breakers
	// applied 7 operators
	// applied 8 step_fence_lock
	// applied 9 running_pairs_idx
	// applied 10 step_fence_by_id
	// second run applied 0 at version 10
}

// Teams that run goose (or golang-migrate, or atlas) export the SQL instead.
func ExampleAll() {
	for _, m := range migrations.All() {
		fmt.Println(migrations.GooseFileName(m), migrations.GolangMigrateFileName(m))
	}
	// Output:
	// 00001_revenant_core.sql 000001_revenant_core.up.sql
	// 00002_revenant_nodes_actors.sql 000002_revenant_nodes_actors.up.sql
	// 00003_revenant_workflows_events.sql 000003_revenant_workflows_events.up.sql
	// 00004_revenant_scoped_dedupe.sql 000004_revenant_scoped_dedupe.up.sql
	// 00005_revenant_actor_policies.sql 000005_revenant_actor_policies.up.sql
	// 00006_revenant_retries_schedules_breakers.sql 000006_revenant_retries_schedules_breakers.up.sql
	// 00007_revenant_operators.sql 000007_revenant_operators.up.sql
	// 00008_revenant_step_fence_lock.sql 000008_revenant_step_fence_lock.up.sql
	// 00009_revenant_running_pairs_idx.sql 000009_revenant_running_pairs_idx.up.sql
	// 00010_revenant_step_fence_by_id.sql 000010_revenant_step_fence_by_id.up.sql
}
