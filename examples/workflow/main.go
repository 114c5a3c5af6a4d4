// Command workflow shows a fan-out/fan-in workflow surviving a crash.
//
//	download ──┬── resize ────┬── publish
//	           ├── watermark ─┤
//	           └── caption ───┘
//
// Run 1 starts the workflow for subject "photo-123"; the process crashes on
// purpose (os.Exit(3), so the run exits non-zero) inside "watermark". Run 2
// starts a node that recovers the crashed step, and the workflow completes:
// across both runs each step runs once, completed steps are never run
// again. Run 3 finds the instance for the subject already done.
//
//	go run ./examples/workflow          # run 1: crashes in watermark (exit status 3)
//	go run ./examples/workflow          # run 2: recovers and completes
//	go run ./examples/workflow          # run 3: already done
//	go run ./examples/workflow -reset   # start over
//
// With nothing installed it uses a SQLite file, revenant-workflow.db in the
// current directory. There a crashed node is seen as dead when its
// heartbeat TTL (2s here) lapses, so run 2 recovers the step a moment after
// start-up. With DATABASE_URL set it uses Postgres, where the crashed
// node's advisory lock vanished with its process and run 2's startup sweep
// recovers the step at once:
//
//	export DATABASE_URL=postgres://postgres@127.0.0.1:5432/test?sslmode=disable
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/jmoiron/sqlx"
	_ "github.com/lib/pq"

	"github.com/revenant-go/revenant"
	"github.com/revenant-go/revenant/bus"
	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/journal"
	"github.com/revenant-go/revenant/migrations"
	"github.com/revenant-go/revenant/recovery"
	"github.com/revenant-go/revenant/runner"
	"github.com/revenant-go/revenant/sqlite"
	"github.com/revenant-go/revenant/workflow"
)

const subject = "photo-123"

var photo = workflow.Definition{ID: "photo", Steps: []workflow.Step{
	{ID: "download", Actor: "media"},
	{ID: "resize", Actor: "media", DependsOn: []string{"download"}},
	{ID: "watermark", Actor: "media", DependsOn: []string{"download"}},
	{ID: "caption", Actor: "media", DependsOn: []string{"download"}},
	{ID: "publish", Actor: "media", DependsOn: []string{"resize", "watermark", "caption"}},
}}

func main() {
	reset := flag.Bool("reset", false, "forget the demo instance and start over")
	file := flag.String("sqlite", "revenant-workflow.db", "SQLite file used when DATABASE_URL is unset")
	flag.Parse()
	if err := run(*reset, *file); err != nil {
		fmt.Fprintln(os.Stderr, "workflow:", err)
		os.Exit(1)
	}
}

func run(reset bool, file string) error {
	ctx := context.Background()
	dsn := os.Getenv("DATABASE_URL")
	if reset {
		if err := resetDemo(ctx, dsn, file); err != nil {
			return err
		}
		fmt.Println("reset: the next run starts a new instance")
		return nil
	}
	cfg := &revenant.Config{Name: "workflow-demo", PollInterval: 100 * time.Millisecond}
	var db *sqlx.DB
	var err error
	if dsn == "" {
		fmt.Printf("using SQLite file %s (set DATABASE_URL to use Postgres)\n", file)
		db, err = sqlite.Open(ctx, file, nil)
		// No advisory locks on SQLite: a short TTL finds a crash sooner.
		cfg.HeartbeatInterval, cfg.NodeTTL = 500*time.Millisecond, 2*time.Second
	} else {
		fmt.Println("using Postgres from DATABASE_URL")
		db, err = sqlx.Open("postgres", dsn)
		cfg.ListenDSN = dsn // wake-ups by LISTEN/NOTIFY instead of polling
	}
	if err != nil {
		return err
	}
	defer func() { _ = db.Close() }()

	client, err := revenant.New(db, cfg)
	if err != nil {
		return err
	}
	// Steps wait until main has said which instance it is working on, only
	// so that the output reads in order.
	ready := make(chan struct{})
	start := sync.OnceFunc(func() { close(ready) })
	defer start()
	err = client.Register(runner.Actor{
		ID: "media", Recovery: recovery.Restart, MaxConcurrent: 1, // one step at a time, for a readable demo
		Run: func(ctx context.Context, ep *episodes.Episode, j *journal.Journal) (any, error) {
			select {
			case <-ready:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			return journal.Step(ctx, j, "work", func(ctx context.Context) (string, error) {
				// Attempts counts claims of this step's episode: 2 after a
				// crash restart.
				if ep.WorkflowStepID == "watermark" && ep.Attempts == 1 {
					fmt.Println("  watermark: the process crashes now, on purpose (os.Exit(3)); run the demo again to see the recovery")
					os.Exit(3)
				}
				fmt.Printf("  running %s (episode claim %d)\n", ep.WorkflowStepID, ep.Attempts)
				return ep.WorkflowStepID + " ok", nil
			})
		},
	})
	if err != nil {
		return err
	}
	if err := client.RegisterWorkflow(photo); err != nil {
		return err
	}
	// Subscribed before Start, so the startup sweep's events arrive too.
	client.Subscribe(bus.EpisodeRecovered, func(_ context.Context, ev bus.Event) error {
		fmt.Printf("recovered: step %s went back to pending (its node died), to resume from its journal\n", ev.WorkflowStepID)
		return nil
	})
	// Migrate, sweep the orphans of dead nodes, reconcile workflows, start
	// the Sweeper and claim work.
	if err := client.Start(ctx); err != nil {
		return err
	}
	defer func() { _ = client.Stop(context.Background()) }()
	if up := client.Startup(); up.Sweep != nil && up.Reconcile != nil { // nil if they failed: the Sweeper retries them
		fmt.Printf("startup: sweep restarted %d; reconcile replayed %d\n", up.Sweep.Restarted, up.Reconcile.Replayed)
	}

	wf := client.Workflows()
	id, err := wf.FindBySubject(ctx, photo.ID, subject)
	started := false
	switch {
	case errors.Is(err, workflow.ErrNotFound):
		id, err = client.StartWorkflow(ctx, photo.ID, map[string]string{"photo": subject}, &workflow.StartOptions{Subject: subject})
		if errors.Is(err, workflow.ErrDuplicateInFlight) { // another process started it just now
			id, err = wf.FindBySubject(ctx, photo.ID, subject)
		}
		if err != nil {
			return err
		}
		fmt.Println("run 1: started instance", id)
		started = true
	case err != nil:
		return err
	}
	inst, err := wf.Get(ctx, id)
	if err != nil {
		return err
	}
	switch inst.Status {
	case workflow.StatusRunning, workflow.StatusBlocked:
		if started {
			break
		}
		fmt.Printf("resuming instance %s (%s)\n", id, inst.Status)
		if dsn == "" {
			fmt.Printf("if its last process crashed, SQLite has no advisory locks: its node counts as alive until its heartbeat TTL (%s) lapses\n", cfg.NodeTTL)
		}
	default:
		fmt.Printf("the instance for %s is already %s; run with -reset to start over\n", subject, inst.Status)
		return printSteps(ctx, client, inst)
	}
	start()
	deadline := time.Now().Add(time.Minute)
	for inst.Status == workflow.StatusRunning {
		if time.Now().After(deadline) {
			return fmt.Errorf("instance %s did not finish within a minute", id)
		}
		time.Sleep(100 * time.Millisecond)
		if inst, err = wf.Get(ctx, id); err != nil {
			return err
		}
	}
	return printSteps(ctx, client, inst)
}

// printSteps prints each step's outcome with two different counts: the
// step's try (a retry after a failure is a new try, run as a new episode)
// and its episode's claims (a crash restart is a new claim of the same
// episode, which resumes from its journal).
func printSteps(ctx context.Context, client *revenant.Client, inst *workflow.Instance) error {
	fmt.Printf("instance %s: %s\n", inst.ID, inst.Status)
	for _, s := range inst.Steps {
		ep, err := client.Episodes().Get(ctx, s.EpisodeID)
		if err != nil {
			return err
		}
		note := ""
		if ep.Attempts > 1 {
			note = " (restarted after a crash)"
		}
		fmt.Printf("  %-9s %s: step try %d, episode claims %d%s\n", s.ID, s.Status, s.Attempts, ep.Attempts, note)
	}
	return nil
}

// resetDemo forgets the demo instance. On SQLite it deletes the file; on
// Postgres it cancels the instance if it is still in flight and frees its
// subject.
func resetDemo(ctx context.Context, dsn, file string) error {
	if dsn == "" {
		for _, suffix := range []string{"", "-wal", "-shm"} {
			if err := os.Remove(file + suffix); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
		return nil
	}
	db, err := sqlx.Open("postgres", dsn)
	if err != nil {
		return err
	}
	defer func() { _ = db.Close() }()
	if _, err := migrations.Migrate(ctx, db); err != nil {
		return err
	}
	client, err := revenant.New(db, nil) // not started: used for its API only
	if err != nil {
		return err
	}
	if err := client.RegisterWorkflow(photo); err != nil {
		return err
	}
	id, err := client.Workflows().FindBySubject(ctx, photo.ID, subject)
	if errors.Is(err, workflow.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := client.Workflows().Cancel(ctx, id, "demo reset"); err != nil && !errors.Is(err, workflow.ErrIllegalTransition) {
		return err
	}
	// A finished instance keeps its subject; revenant has no call to
	// forget one, so the demo clears it by hand.
	_, err = db.ExecContext(ctx, `UPDATE revenant_workflow_instances SET subject = NULL WHERE id = $1`, id)
	return err
}
