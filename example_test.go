package revenant_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"

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

// openDB opens a SQLite file in a temporary directory: nothing to
// install. Use sqlx.Open("postgres", dsn) (or "pgx") for Postgres.
func openDB() (db *sqlx.DB, cleanup func()) {
	dir, err := os.MkdirTemp("", "revenant-example-*")
	if err != nil {
		log.Fatal(err)
	}
	db, err = sqlite.Open(context.Background(), filepath.Join(dir, "app.db"), nil)
	if err != nil {
		log.Fatal(err)
	}
	return db, func() { _ = db.Close(); _ = os.RemoveAll(dir) }
}

// One client per process: register actors, Start (which migrates, sweeps
// the orphans of dead nodes, reconciles workflows and starts the Sweeper),
// enqueue work, Stop.
func ExampleNew() {
	db, cleanup := openDB()
	defer cleanup()
	ctx := context.Background()

	client, err := revenant.New(db, &revenant.Config{Name: "billing-1", Stack: "shop", Env: "prod"})
	if err != nil {
		log.Fatal(err)
	}
	done := make(chan string, 1)
	err = client.Register(runner.Actor{ID: "invoicer", Recovery: recovery.Restart,
		Run: func(ctx context.Context, ep *episodes.Episode, j *journal.Journal) (any, error) {
			total, err := journal.Step(ctx, j, "total", func(context.Context) (int, error) { return 42, nil })
			done <- fmt.Sprintf("invoiced %d", total)
			return total, err
		}})
	if err != nil {
		log.Fatal(err)
	}
	if err := client.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer func() { _ = client.Stop(ctx) }()

	if _, err := client.Enqueue(ctx, episodes.CreateParams{ActorID: "invoicer", DedupeKey: "invoice-42"}); err != nil {
		log.Fatal(err)
	}
	fmt.Println(<-done)
	// Output: invoiced 42
}

// An actor whose code runs elsewhere (another service, a script) keeps
// its recovery policy in the database, so that any node's sweep knows what
// to do with its orphans.
func ExampleClient_Actors() {
	db, cleanup := openDB()
	defer cleanup()
	ctx := context.Background()
	client, err := revenant.New(db, nil)
	if err != nil {
		log.Fatal(err)
	}
	if err := client.Start(ctx); err != nil { // migrates
		log.Fatal(err)
	}
	defer func() { _ = client.Stop(ctx) }()

	err = client.Actors().Define(ctx, actors.Definition{ID: "report-builder", Recovery: recovery.Restart,
		ExpectationRecovery: map[string]recovery.Policy{"send-email": recovery.Fail}})
	if err != nil {
		log.Fatal(err)
	}
	def, err := client.Actors().Get(ctx, "report-builder")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(def.ID, def.Recovery, def.ExpectationRecovery["send-email"])
	res, err := client.Enqueue(ctx, episodes.CreateParams{ActorID: "report-builder"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("unknown actor:", res.UnknownActor)
	// Output:
	// report-builder restart fail
	// unknown actor: false
}

// A workflow whose step retries with backoff; each retry runs as a new
// episode, whose StepAttempt says which try it is.
func ExampleClient_RegisterWorkflow() {
	db, cleanup := openDB()
	defer cleanup()
	ctx := context.Background()
	client, err := revenant.New(db, &revenant.Config{PollInterval: 50 * time.Millisecond}) // SQLite polls
	if err != nil {
		log.Fatal(err)
	}
	err = client.Register(runner.Actor{ID: "charge", Recovery: recovery.Restart,
		Run: func(ctx context.Context, ep *episodes.Episode, j *journal.Journal) (any, error) {
			fmt.Println("charge: try", ep.StepAttempt())
			if ep.StepAttempt() == 1 {
				return nil, errors.New("payment provider timed out")
			}
			return "charged", nil
		}})
	if err != nil {
		log.Fatal(err)
	}
	err = client.RegisterWorkflow(workflow.Definition{ID: "checkout", Steps: []workflow.Step{
		{ID: "charge", Actor: "charge", OnFailure: workflow.Retry(3, 100*time.Millisecond)},
	}})
	if err != nil {
		log.Fatal(err)
	}
	finished := make(chan string, 1)
	client.Subscribe(bus.WorkflowCompleted, func(_ context.Context, ev bus.Event) error {
		finished <- ev.Type
		return nil
	})
	if err := client.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer func() { _ = client.Stop(ctx) }()
	if _, err := client.StartWorkflow(ctx, "checkout", map[string]int{"order": 7}, &workflow.StartOptions{Subject: "order-7"}); err != nil {
		log.Fatal(err)
	}
	fmt.Println(<-finished)
	// Output:
	// charge: try 1
	// charge: try 2
	// workflow.completed
}

// Subscribe before Start to see every event of the node's life, including
// what the startup sweep recovers.
func ExampleClient_Subscribe() {
	db, cleanup := openDB()
	defer cleanup()
	ctx := context.Background()
	client, err := revenant.New(db, &revenant.Config{PollInterval: 50 * time.Millisecond})
	if err != nil {
		log.Fatal(err)
	}
	err = client.Register(runner.Actor{ID: "mailer", Run: func(context.Context, *episodes.Episode, *journal.Journal) (any, error) {
		return "sent", nil
	}})
	if err != nil {
		log.Fatal(err)
	}
	completed := make(chan bus.Event, 1)
	client.Subscribe(bus.EpisodeCompleted, func(_ context.Context, ev bus.Event) error {
		completed <- ev // delivery is at least once: dedupe by ev.ID
		return nil
	})
	if err := client.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer func() { _ = client.Stop(ctx) }()
	if _, err := client.Enqueue(ctx, episodes.CreateParams{ActorID: "mailer"}); err != nil {
		log.Fatal(err)
	}
	ev := <-completed
	fmt.Println(ev.Type, ev.ActorID, ev.Status)
	// Output: episode.completed mailer done
}

// A dry run says what the next sweep would do with each orphan, and why:
// the dead node that owned it, the rule that found it, the policy and
// where the policy came from. Any process gets the same answer, with or
// without the actors registered; an operator tool need not Start its
// client (a started one's Sweeper would act on the orphan first).
func ExampleClient_Sweep() {
	db, cleanup := openDB()
	defer cleanup()
	ctx := context.Background()
	invoicer := runner.Actor{ID: "invoicer", Recovery: recovery.Restart,
		Run: func(context.Context, *episodes.Episode, *journal.Journal) (any, error) { return nil, nil }}

	// A node that ran invoicer and is gone (it stopped here; a crash is
	// found through its lock or its TTL).
	old, err := revenant.New(db, &revenant.Config{Name: "old-node"})
	if err != nil {
		log.Fatal(err)
	}
	if err := old.Register(invoicer); err != nil {
		log.Fatal(err)
	}
	if err := old.Start(ctx); err != nil {
		log.Fatal(err)
	}
	if err := old.Stop(ctx); err != nil {
		log.Fatal(err)
	}
	// An episode it left running.
	eps, err := episodes.New(db, nil)
	if err != nil {
		log.Fatal(err)
	}
	created, err := eps.Create(ctx, episodes.CreateParams{ActorID: "invoicer"})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := eps.Claim(ctx, created.Episode.ID, old.NodeID()); err != nil {
		log.Fatal(err)
	}

	// An operator's process, with no actors registered.
	operator, err := revenant.New(db, nil)
	if err != nil {
		log.Fatal(err)
	}
	res, err := operator.Sweep(ctx, true)
	if err != nil {
		log.Fatal(err)
	}
	for _, p := range res.Plans {
		fmt.Println(p.ActorID, "owned by old-node:", strings.HasPrefix(p.PreviousOwner, "old-node-"),
			"found by", p.Reason, "->", p.Action, "by policy", p.Policy, "from", p.PolicySource)
	}
	// Output: invoicer owned by old-node: true found by owner_stopped -> restart by policy restart from owner
}
