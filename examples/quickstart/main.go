// Command quickstart shows revenant's crash recovery in two runs.
//
// Run 1 starts an episode of three journaled steps; the process crashes
// (os.Exit) inside step 2. Run 2 sweeps at startup, finds the orphan (its
// node's advisory lock vanished with the process), restarts it, and the
// episode completes without running step 1 again.
//
//	export DATABASE_URL=postgres://postgres@127.0.0.1:5432/test?sslmode=disable
//	go run ./examples/quickstart   # run 1: crashes in step 2
//	go run ./examples/quickstart   # run 2: recovers and completes
//	go run ./examples/quickstart -reset   # start over
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

	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/journal"
	"github.com/revenant-go/revenant/migrations"
	"github.com/revenant-go/revenant/recovery"
	"github.com/revenant-go/revenant/runner"
)

const dedupeKey = "quickstart-demo"

func main() {
	reset := flag.Bool("reset", false, "archive the demo episode and start over")
	flag.Parse()
	if err := run(*reset); err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
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
		_, err := db.ExecContext(ctx, `UPDATE revenant_episodes SET status = CASE WHEN status IN ('done', 'failed', 'canceled') THEN status ELSE 'canceled' END,
			finished_at = coalesce(finished_at, now()), archived_at = now() WHERE dedupe_key = $1 AND archived_at IS NULL`, dedupeKey)
		fmt.Println("reset: the next run starts a new episode")
		return err
	}

	r, err := runner.New(db, &runner.Config{Name: "quickstart", ListenDSN: dsn, HeartbeatInterval: time.Second, NodeTTL: 5 * time.Second})
	if err != nil {
		return err
	}
	done := make(chan *episodes.Episode, 1)
	err = r.Register(runner.Actor{
		ID:       "order-fulfilment",
		Recovery: recovery.Restart, // orphans of this actor are restarted, not failed
		Run: func(ctx context.Context, ep *episodes.Episode, j *journal.Journal) (any, error) {
			fmt.Printf("episode %s, attempt %d\n", ep.ID, ep.Attempts)
			ran := false
			order, err := journal.Step(ctx, j, "reserve-stock", func(ctx context.Context) (string, error) {
				ran = true
				fmt.Println("  step 1 reserve-stock: running")
				return "order-42: 3 items reserved", nil
			})
			if err != nil {
				return nil, err
			}
			if ran {
				fmt.Println("  step 1 reserve-stock: done:", order)
			} else {
				fmt.Println("  step 1 reserve-stock: not run again; recorded output:", order)
			}
			charge, err := journal.Step(ctx, j, "charge-card", func(ctx context.Context) (string, error) {
				fmt.Println("  step 2 charge-card: running")
				if ep.Attempts == 1 {
					fmt.Println("  step 2 charge-card: the process crashes now (os.Exit)")
					os.Exit(3)
				}
				info, _ := journal.Info(ctx)
				return "charged with idempotency key " + info.IdempotencyKey, nil
			})
			if err != nil {
				return nil, err
			}
			fmt.Println("  step 2 charge-card: done:", charge)
			label, err := journal.Step(ctx, j, "ship", func(ctx context.Context) (string, error) {
				fmt.Println("  step 3 ship: running")
				return "label ZX-1", nil
			})
			if err != nil {
				return nil, err
			}
			fmt.Println("  step 3 ship: done:", label)
			return map[string]string{"order": order, "charge": charge, "label": label}, nil
		},
	})
	if err != nil {
		return err
	}

	// App startup: sweep for orphans of dead nodes, then start the runner.
	res, err := recovery.Sweep(ctx, db, &recovery.Options{Node: r})
	if err != nil {
		return err
	}
	fmt.Printf("startup sweep: restarted=%d failed=%d skipped=%d\n", res.Restarted, res.Failed, res.Skipped)
	if err := r.Start(ctx); err != nil {
		return err
	}
	defer func() { _ = r.Stop(context.Background()) }()

	created, err := r.Enqueue(ctx, episodes.CreateParams{ActorID: "order-fulfilment", DedupeKey: dedupeKey, MaxAttempts: 5})
	if err != nil {
		return err
	}
	ep := created.Episode
	switch {
	case !created.Duplicate:
		fmt.Println("run 1: started a new episode")
	case ep.Status == episodes.StatusDone:
		fmt.Printf("the demo episode is already done (result %s); run with -reset to start over\n", ep.Result)
		return nil
	default:
		fmt.Printf("found the demo episode %s (status %s)\n", ep.ID, ep.Status)
	}
	go func() {
		for {
			got, err := r.Store().Get(ctx, ep.ID)
			if err == nil && got.Status.Terminal() {
				done <- got
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	select {
	case got := <-done:
		fmt.Printf("episode %s: %s after %d attempts; result %s\n", got.ID, got.Status, got.Attempts, got.Result)
	case <-time.After(30 * time.Second):
		return errors.New("the episode did not finish within 30s")
	}
	return nil
}
