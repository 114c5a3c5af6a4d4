// Command quickstart shows revenant's crash recovery in two runs.
//
// Run 1 starts an episode of three journaled steps; the process crashes
// (os.Exit) inside step 2. Run 2 finds the orphan, restarts it, and the
// episode completes without running step 1 again.
//
// With nothing installed it uses a SQLite file (revenant-quickstart.db in
// the current directory). There a dead node is found when its heartbeat
// TTL (2s here) lapses, so run 2's sweeper restarts the episode a moment
// after start-up:
//
//	go run ./examples/quickstart   # run 1: crashes in step 2
//	go run ./examples/quickstart   # run 2: recovers and completes
//	go run ./examples/quickstart -reset   # start over
//
// With DATABASE_URL it uses Postgres, where the crashed node's advisory
// lock vanished with its process, so run 2's startup sweep restarts the
// episode at once:
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

	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/journal"
	"github.com/revenant-go/revenant/migrations"
	"github.com/revenant-go/revenant/recovery"
	"github.com/revenant-go/revenant/runner"
	"github.com/revenant-go/revenant/sqlite"
)

const dedupeKey = "quickstart-demo"

func main() {
	reset := flag.Bool("reset", false, "archive the demo episode and start over")
	file := flag.String("sqlite", "revenant-quickstart.db", "SQLite file used when DATABASE_URL is unset")
	flag.Parse()
	if err := run(*reset, *file); err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

func run(reset bool, file string) error {
	ctx := context.Background()
	dsn := os.Getenv("DATABASE_URL")
	var db *sqlx.DB
	var err error
	cfg := &runner.Config{Name: "quickstart", HeartbeatInterval: time.Second, NodeTTL: 5 * time.Second}
	if dsn == "" {
		if reset {
			for _, suffix := range []string{"", "-wal", "-shm"} {
				_ = os.Remove(file + suffix)
			}
			fmt.Println("reset: the next run starts a new episode")
			return nil
		}
		fmt.Printf("using SQLite file %s (set DATABASE_URL to use Postgres)\n", file)
		db, err = sqlite.Open(ctx, file, nil)
		// No advisory locks on SQLite: a short TTL finds the crash sooner.
		cfg.HeartbeatInterval, cfg.NodeTTL = 500*time.Millisecond, 2*time.Second
	} else {
		db, err = sqlx.Open("postgres", dsn)
		cfg.ListenDSN = dsn
	}
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

	r, err := runner.New(db, cfg)
	if err != nil {
		return err
	}
	done := make(chan *episodes.Episode, 1)
	// The runner claims the episode the moment it is enqueued; the actor
	// waits until main has said what it enqueued, so the output reads in
	// order (and run 1's crash never comes before that line).
	announced := make(chan struct{})
	announce := sync.OnceFunc(func() { close(announced) })
	defer announce()
	err = r.Register(runner.Actor{
		ID:       "order-fulfilment",
		Recovery: recovery.Restart, // orphans of this actor are restarted, not failed
		Run: func(ctx context.Context, ep *episodes.Episode, j *journal.Journal) (any, error) {
			select {
			case <-announced:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
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
	// While the app runs, a Sweeper recovers the work of nodes that die
	// later, or whose death is only seen when their heartbeat TTL lapses.
	sw, err := recovery.NewSweeper(db, &recovery.SweeperConfig{Options: recovery.Options{
		Node: r,
		OnEvent: func(_ context.Context, ev recovery.Event) {
			fmt.Printf("sweeper: %s episode %s (%s)\n", ev.Type, ev.EpisodeID, ev.Reason)
		},
	}})
	if err != nil {
		return err
	}
	if err := sw.Start(ctx); err != nil {
		return err
	}
	defer func() { _ = sw.Stop(context.Background()) }()

	created, err := r.Enqueue(ctx, episodes.CreateParams{ActorID: "order-fulfilment", DedupeKey: dedupeKey, MaxAttempts: 5})
	if err != nil {
		return err
	}
	ep := created.Episode
	switch {
	case !created.Duplicate:
		fmt.Println("run 1: started a new episode")
	case ep.Status == episodes.StatusDone && res.Restarted > 0:
		// Restarted by this run's sweep and finished by the runner before
		// the enqueue above even looked.
		fmt.Printf("episode %s: %s after %d attempts; result %s\n", ep.ID, ep.Status, ep.Attempts, ep.Result)
		return nil
	case ep.Status == episodes.StatusDone:
		fmt.Printf("the demo episode is already done (result %s); run with -reset to start over\n", ep.Result)
		return nil
	default:
		fmt.Printf("found the demo episode %s (status %s)\n", ep.ID, ep.Status)
		if ep.Status == episodes.StatusRunning && dsn == "" {
			fmt.Printf("its node crashed; SQLite has no advisory locks, so the node counts as alive until its heartbeat TTL (%s) lapses\n", cfg.NodeTTL)
		}
	}
	announce()
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
