// Command orders is a small order service on revenant's client: two
// actors registered in code, a third whose recovery policy lives in the
// database (its code runs in another service), and one workflow. Its whole
// start-up, with migrations, the startup sweep, workflow reconciliation and
// the Sweeper running, is the 15 lines of startNode.
//
//	go run ./examples/orders            # SQLite file revenant-orders.db
//	DATABASE_URL=postgres://... go run ./examples/orders
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/jmoiron/sqlx"
	_ "github.com/lib/pq"

	"github.com/revenant-go/revenant"
	"github.com/revenant-go/revenant/actors"
	"github.com/revenant-go/revenant/bus"
	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/journal"
	"github.com/revenant-go/revenant/recovery"
	"github.com/revenant-go/revenant/runner"
	"github.com/revenant-go/revenant/sqlite"
	"github.com/revenant-go/revenant/workflow"
)

// Two actors of this service; "fraud-check" runs in another service.
var (
	reserve = runner.Actor{ID: "reserve-stock", Recovery: recovery.Restart, Run: step("reserved")}
	charge  = runner.Actor{ID: "charge-card", Recovery: recovery.Fail, Run: step("charged")}
	order   = workflow.Definition{ID: "order", Steps: []workflow.Step{
		{ID: "reserve", Actor: "reserve-stock"},
		{ID: "charge", Actor: "charge-card", DependsOn: []string{"reserve"}, OnFailure: workflow.Retry(3, time.Second)},
	}}
)

// startNode is the service's whole revenant start-up.
func startNode(ctx context.Context, db *sqlx.DB) (*revenant.Client, error) {
	client, err := revenant.New(db, &revenant.Config{Name: "orders", Stack: "shop", Env: "prod", PollInterval: 100 * time.Millisecond})
	if err != nil {
		return nil, err
	}
	for _, a := range []runner.Actor{reserve, charge} {
		if err := client.Register(a); err != nil {
			return nil, err
		}
	}
	if err := client.RegisterWorkflow(order); err != nil {
		return nil, err
	}
	return client, client.Start(ctx) // migrate, sweep, reconcile, Sweeper, claim
}

func step(result string) runner.RunFunc {
	return func(ctx context.Context, ep *episodes.Episode, j *journal.Journal) (any, error) {
		return journal.Step(ctx, j, result, func(context.Context) (string, error) { return result, nil })
	}
}

func main() {
	file := flag.String("sqlite", "revenant-orders.db", "SQLite file used when DATABASE_URL is unset")
	flag.Parse()
	if err := run(*file); err != nil {
		fmt.Fprintln(os.Stderr, "orders:", err)
		os.Exit(1)
	}
}

func run(file string) error {
	ctx := context.Background()
	db, err := open(ctx, file)
	if err != nil {
		return err
	}
	defer func() { _ = db.Close() }()
	client, err := startNode(ctx, db)
	if err != nil {
		return err
	}
	defer func() { _ = client.Stop(ctx) }()
	// The third actor's policy lives in the database, for every node's
	// sweeps to find.
	if err := client.Actors().Define(ctx, actors.Definition{ID: "fraud-check", Recovery: recovery.Restart}); err != nil {
		return err
	}
	done := make(chan bus.Event, 1)
	client.Subscribe(bus.WorkflowCompleted, func(_ context.Context, ev bus.Event) error { done <- ev; return nil })
	id, err := client.StartWorkflow(ctx, "order", map[string]int{"order": 1}, nil)
	if err != nil {
		return err
	}
	if _, err := client.Enqueue(ctx, episodes.CreateParams{ActorID: "fraud-check", DedupeKey: fmt.Sprint("fraud-", id)}); err != nil {
		return err
	}
	select {
	case <-done:
	case <-time.After(time.Minute):
		return fmt.Errorf("order %s did not complete within a minute", id)
	}
	in, err := client.Workflows().Get(ctx, id)
	if err != nil {
		return err
	}
	fmt.Printf("order workflow %s: reserve %s, charge %s\n", in.Status, in.Step("reserve").Status, in.Step("charge").Status)
	fmt.Printf("startup: migrated %d migrations; sweep restarted %d\n", len(client.Startup().Migrated), client.Startup().Sweep.Restarted)
	return nil
}

func open(ctx context.Context, file string) (*sqlx.DB, error) {
	if dsn := os.Getenv("DATABASE_URL"); dsn != "" {
		fmt.Println("using Postgres from DATABASE_URL")
		return sqlx.Open("postgres", dsn)
	}
	fmt.Println("using SQLite file", file)
	return sqlite.Open(ctx, file, nil)
}
