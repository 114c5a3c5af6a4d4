package workflow_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/revenant-go/revenant/bus"
	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/journal"
	"github.com/revenant-go/revenant/migrations"
	"github.com/revenant-go/revenant/runner"
	"github.com/revenant-go/revenant/sqlite"
	"github.com/revenant-go/revenant/workflow"
)

// A fan-out/fan-in workflow on one node with the in-process bus (use the
// Postgres bus across nodes).
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
	b := bus.NewInProcess(nil)

	r, _ := runner.New(db, &runner.Config{Name: "example", Bus: b, PollInterval: 50 * time.Millisecond})
	_ = r.Register(runner.Actor{ID: "shout", Run: func(ctx context.Context, ep *episodes.Episode, j *journal.Journal) (any, error) {
		return journal.Step(ctx, j, "shout", func(context.Context) (string, error) { return ep.WorkflowStepID + "!", nil })
	}})
	eng, _ := workflow.NewEngine(db, &workflow.Config{Bus: b})
	_ = eng.Register(workflow.Definition{ID: "greet", Steps: []workflow.Step{
		{ID: "hello", Actor: "shout"},
		{ID: "en", Actor: "shout", DependsOn: []string{"hello"}},
		{ID: "fr", Actor: "shout", DependsOn: []string{"hello"}},
		{ID: "bye", Actor: "shout", DependsOn: []string{"en", "fr"}},
	}})
	_ = eng.Start(ctx)
	defer func() { _ = eng.Stop(context.Background()) }()
	_ = r.Start(ctx)
	defer func() { _ = r.StopAndCancel(ctx) }()

	id, _ := eng.StartInstance(ctx, "greet", map[string]string{"to": "world"}, nil)
	for {
		inst, _ := eng.Get(ctx, id)
		if inst.Status != workflow.StatusRunning {
			fmt.Println("instance:", inst.Status)
			for _, s := range inst.Steps {
				fmt.Println(s.ID, s.Status, string(s.Result))
			}
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Output:
	// instance: done
	// hello done "hello!"
	// en done "en!"
	// fr done "fr!"
	// bye done "bye!"
}
