package recovery_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/migrations"
	"github.com/revenant-go/revenant/recovery"
	"github.com/revenant-go/revenant/sqlite"
)

// A node died owning two episodes. A dry run says what would happen and
// why; the sweep then restarts one and fails the other, by policy.
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

	// A node whose heartbeat stopped long ago: its process died.
	_, _ = db.Exec(`INSERT INTO revenant_nodes (node_id, name, expires_at) VALUES ('web-1', 'web', '2000-01-01 00:00:00.000')`)
	store, _ := episodes.New(db, nil)
	for _, actor := range []string{"mailer", "billing"} {
		res, _ := store.Create(ctx, episodes.CreateParams{ActorID: actor})
		_, _ = store.Claim(ctx, res.Episode.ID, "web-1")
	}
	policies := recovery.Options{Registry: registry{"mailer": recovery.Restart, "billing": recovery.Fail}}

	plan := policies
	plan.DryRun = true
	res, _ := recovery.Sweep(ctx, db, &plan)
	for _, p := range res.Plans {
		fmt.Println("plan:", p.ActorID, p.Reason, p.Action, "from", p.PolicySource)
	}
	res, _ = recovery.Sweep(ctx, db, &policies)
	fmt.Println("restarted:", res.Restarted, "failed:", res.Failed, "dead nodes:", res.DeadNodes)
	// Output:
	// plan: mailer owner_ttl_expired restart from registry
	// plan: billing owner_ttl_expired fail from registry
	// restarted: 1 failed: 1 dead nodes: [web-1]
}
