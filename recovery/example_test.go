package recovery_test

import (
	"context"
	"fmt"
	"log"

	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/internal/testdb"
	"github.com/revenant-go/revenant/recovery"
)

// A node died owning two episodes. A dry run says what would happen and
// why; the sweep then restarts one and fails the other, by policy.
func Example() {
	schema, cleanup, err := testdb.Open(nil) // your app: its own *sqlx.DB, migrated
	if err != nil {
		log.Fatal(err)
	}
	defer func() { _ = cleanup() }()
	ctx := context.Background()
	db := schema.DB

	// A node whose advisory lock is gone: its process died.
	_, _ = db.Exec(`INSERT INTO revenant_nodes (node_id, lock_key, expires_at) VALUES ('web-1', 42, now() + interval '1 hour')`)
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
	// plan: mailer owner_lock_released restart from registry
	// plan: billing owner_lock_released fail from registry
	// restarted: 1 failed: 1 dead nodes: [web-1]
}
