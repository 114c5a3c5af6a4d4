// Command workflow shows a fan-out/fan-in workflow surviving a crash.
//
//	download ──┬── resize ────┬── publish
//	           ├── watermark ─┤
//	           └── caption ───┘
//
// Run 1 starts the workflow; the process crashes (os.Exit) inside
// "watermark". Run 2 calls recovery.Sweep and recovery.ReconcileWorkflows at
// startup, and the workflow completes. Across both runs each step prints
// once: completed steps are never run again.
//
//	export DATABASE_URL=postgres://postgres@127.0.0.1:5432/test?sslmode=disable
//	go run ./examples/workflow   # run 1: crashes in watermark
//	go run ./examples/workflow   # run 2: recovers and completes
//	go run ./examples/workflow -reset
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/jmoiron/sqlx"
	_ "github.com/lib/pq"

	"github.com/revenant-go/revenant/bus"
	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/journal"
	"github.com/revenant-go/revenant/migrations"
	"github.com/revenant-go/revenant/recovery"
	"github.com/revenant-go/revenant/runner"
	"github.com/revenant-go/revenant/workflow"
)

const subject = "photo-123"

func main() {
	reset := flag.Bool("reset", false, "forget the demo instance and start over")
	flag.Parse()
	if err := run(*reset); err != nil {
		fmt.Fprintln(os.Stderr, "workflow:", err)
		os.Exit(1)
	}
}

func run(reset bool) error {
	dsn := os.Getenv("DATABASE_URL")
	if dsn == "" {
		return errors.New("set DATABASE_URL, e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable")
	}
	ctx := context.Background()
	db, err := sqlx.Open("postgres", dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := migrations.Migrate(ctx, db); err != nil {
		return err
	}
	if reset {
		_, err := db.ExecContext(ctx, `UPDATE revenant_workflow_instances SET subject = NULL WHERE subject = $1`, subject)
		fmt.Println("reset: the next run starts a new instance")
		return err
	}

	b, err := bus.NewOutbox(db, &bus.OutboxConfig{ListenDSN: dsn})
	if err != nil {
		return err
	}
	r, err := runner.New(db, &runner.Config{Name: "workflow-demo", Bus: b, ListenDSN: dsn})
	if err != nil {
		return err
	}
	err = r.Register(runner.Actor{
		ID: "media", Recovery: recovery.Restart, MaxConcurrent: 1, // one step at a time, for a readable demo
		Run: func(ctx context.Context, ep *episodes.Episode, j *journal.Journal) (any, error) {
			return journal.Step(ctx, j, "work", func(ctx context.Context) (string, error) {
				if ep.WorkflowStepID == "watermark" && ep.Attempts == 1 {
					fmt.Println("  watermark: the process crashes now (os.Exit)")
					os.Exit(3)
				}
				fmt.Println("  running", ep.WorkflowStepID)
				return ep.WorkflowStepID + " ok", nil
			})
		},
	})
	if err != nil {
		return err
	}
	eng, err := workflow.NewEngine(db, &workflow.Config{Bus: b})
	if err != nil {
		return err
	}
	err = eng.Register(workflow.Definition{ID: "photo", Steps: []workflow.Step{
		{ID: "download", Actor: "media"},
		{ID: "resize", Actor: "media", DependsOn: []string{"download"}},
		{ID: "watermark", Actor: "media", DependsOn: []string{"download"}},
		{ID: "caption", Actor: "media", DependsOn: []string{"download"}},
		{ID: "publish", Actor: "media", DependsOn: []string{"resize", "watermark", "caption"}},
	}})
	if err != nil {
		return err
	}

	// App startup, in the order that matters: sweep orphans, register
	// workflows (above), reconcile what the last process left half-done.
	sw, err := recovery.Sweep(ctx, db, &recovery.Options{Node: r, Bus: b})
	if err != nil {
		return err
	}
	rec, err := recovery.ReconcileWorkflows(ctx, db, &recovery.ReconcileOptions{Engine: eng, Node: r})
	if err != nil {
		return err
	}
	fmt.Printf("startup: sweep restarted=%d; reconcile replayed=%d skipped=%d\n", sw.Restarted, rec.Replayed, rec.Skipped)
	if err := b.Start(ctx); err != nil {
		return err
	}
	defer func() { _ = b.Stop(context.Background()) }()
	if err := eng.Start(ctx); err != nil {
		return err
	}
	defer func() { _ = eng.Stop(context.Background()) }()
	if err := r.Start(ctx); err != nil {
		return err
	}
	defer func() { _ = r.Stop(context.Background()) }()
	// The Sweeper recovers what the startup sweep could not see yet (a
	// process that died a moment ago may still hold its lock for a while)
	// and nodes that die later; it also reconciles workflows.
	sweeper, err := recovery.NewSweeper(db, &recovery.SweeperConfig{Workflows: eng, Options: recovery.Options{Node: r, Bus: b,
		OnEvent: func(_ context.Context, ev recovery.Event) { fmt.Printf("sweeper: %s %s\n", ev.Type, ev.WorkflowStepID) }}})
	if err != nil {
		return err
	}
	if err := sweeper.Start(ctx); err != nil {
		return err
	}
	defer func() { _ = sweeper.Stop(context.Background()) }()

	id, err := eng.StartInstance(ctx, "photo", map[string]string{"photo": subject}, &workflow.StartOptions{Subject: subject})
	switch {
	case err == nil:
		fmt.Println("run 1: started instance", id)
	case errors.Is(err, workflow.ErrDuplicateInFlight):
		id, err = eng.FindBySubject(ctx, "photo", subject)
		if err != nil {
			return err
		}
		fmt.Println("resuming instance", id)
	default:
		return err
	}
	if inst, err := eng.Get(ctx, id); err == nil && inst.Status == workflow.StatusDone {
		fmt.Println("the demo instance is already done; run with -reset to start over")
		return nil
	}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		inst, err := eng.Get(ctx, id)
		if err != nil {
			return err
		}
		if inst.Status != workflow.StatusRunning {
			fmt.Printf("instance %s: %s\n", id, inst.Status)
			for _, s := range inst.Steps {
				fmt.Printf("  %-9s %s, attempts %d\n", s.ID, s.Status, s.Attempts)
			}
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("instance %s did not finish in time", id)
}
