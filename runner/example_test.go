package runner_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/journal"
	"github.com/revenant-go/revenant/migrations"
	"github.com/revenant-go/revenant/recovery"
	"github.com/revenant-go/revenant/runner"
	"github.com/revenant-go/revenant/sqlite"
)

// Wiring a node by hand (revenant.New does all of this): register actors
// with their recovery policies, sweep at app startup, start, enqueue.
func Example() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "revenant-runner-example-*")
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

	r, err := runner.New(db, &runner.Config{Name: "worker-1"})
	if err != nil {
		log.Fatal(err)
	}
	done := make(chan string, 1)
	err = r.Register(runner.Actor{ID: "greeter", Recovery: recovery.Restart,
		Run: func(ctx context.Context, ep *episodes.Episode, j *journal.Journal) (any, error) {
			msg, err := journal.Step(ctx, j, "greet", func(context.Context) (string, error) { return "hello", nil })
			done <- fmt.Sprintf("%s (claim %d)", msg, ep.Attempts)
			return msg, err
		}})
	if err != nil {
		log.Fatal(err)
	}
	res, err := recovery.Sweep(ctx, db, &recovery.Options{Node: r}) // app startup
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("startup sweep restarted", res.Restarted)
	if err := r.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer func() { _ = r.Stop(ctx) }() // drains: lets runs finish until ctx ends

	enq, err := r.Enqueue(ctx, episodes.CreateParams{ActorID: "greeter"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("unknown actor:", enq.UnknownActor)
	fmt.Println(<-done)
	// Output:
	// startup sweep restarted 0
	// unknown actor: false
	// hello (claim 1)
}
