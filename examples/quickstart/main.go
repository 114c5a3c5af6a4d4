// Command quickstart shows revenant's crash recovery in two runs.
//
// Run 1 starts an episode of three journaled steps; the process crashes on
// purpose (os.Exit(3), so the run exits non-zero) inside step 2. Run 2
// starts a node that finds the orphan, restarts it, and the episode
// completes without running step 1 again.
//
//	go run ./examples/quickstart          # run 1: crashes in step 2 (exit status 3)
//	go run ./examples/quickstart          # run 2: recovers and completes
//	go run ./examples/quickstart -reset   # start over
//
// With nothing installed it uses a SQLite file (revenant-quickstart.db in
// the current directory). There a dead node is found when its heartbeat
// TTL (2s here) lapses, so run 2's Sweeper restarts the episode a moment
// after start-up. With DATABASE_URL set it uses Postgres, where the crashed
// node's advisory lock vanished with its process, so run 2's startup sweep
// restarts the episode at once:
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
)

const (
	actorID   = "order-fulfilment"
	dedupeKey = "quickstart-demo"
)

func main() {
	reset := flag.Bool("reset", false, "forget the demo episode and start over")
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
	if reset {
		if err := resetDemo(ctx, dsn, file); err != nil {
			return err
		}
		fmt.Println("reset: the next run starts a new episode")
		return nil
	}
	cfg := &revenant.Config{Name: "quickstart", PollInterval: 100 * time.Millisecond}
	var db *sqlx.DB
	var err error
	if dsn == "" {
		fmt.Printf("using SQLite file %s (set DATABASE_URL to use Postgres)\n", file)
		db, err = sqlite.Open(ctx, file, nil)
		// No advisory locks on SQLite: a short TTL finds the crash sooner.
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
	// The node claims the episode the moment it is enqueued; the actor
	// waits until main has said what it enqueued, so the output reads in
	// order (and run 1's crash never comes before that line).
	announced := make(chan struct{})
	announce := sync.OnceFunc(func() { close(announced) })
	defer announce()
	err = client.Register(runner.Actor{
		ID:       actorID,
		Recovery: recovery.Restart, // orphans of this actor are restarted, not failed
		Run: func(ctx context.Context, ep *episodes.Episode, j *journal.Journal) (any, error) {
			select {
			case <-announced:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			// Attempts counts claims: 1 on the first run, 2 after a crash restart.
			fmt.Printf("episode %s, claim %d\n", ep.ID, ep.Attempts)
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
					fmt.Println("  step 2 charge-card: the process crashes now, on purpose (os.Exit(3): this run exits non-zero); run the demo again to see the recovery")
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
	// Lifecycle events arrive on the bus, in order, from every node;
	// subscribed before Start to see the startup sweep's too.
	ended := make(chan bus.Event, 8)
	client.Subscribe("", func(_ context.Context, ev bus.Event) error {
		switch {
		case ev.Type == bus.EpisodeRecovered:
			fmt.Printf("recovered: episode %s went back to pending (its node died; its actor's policy is Restart)\n", ev.EpisodeID)
		case ev.Terminal():
			select {
			case ended <- ev:
			default:
			}
		}
		return nil
	})
	// Start migrates, sweeps the orphans of dead nodes (restarting or
	// failing each by its actor's policy), starts the Sweeper for nodes
	// that die later, and begins claiming work.
	if err := client.Start(ctx); err != nil {
		return err
	}
	defer func() { _ = client.Stop(context.Background()) }()
	if sw := client.Startup().Sweep; sw != nil { // nil if it failed: the Sweeper retries it
		fmt.Printf("startup sweep: restarted=%d failed=%d skipped=%d\n", sw.Restarted, sw.Failed, sw.Skipped)
	}

	created, err := client.Enqueue(ctx, episodes.CreateParams{ActorID: actorID, DedupeKey: dedupeKey, MaxAttempts: 5})
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
		if ep.Status == episodes.StatusRunning && dsn == "" {
			fmt.Printf("its node crashed; SQLite has no advisory locks, so the node counts as alive until its heartbeat TTL (%s) lapses\n", cfg.NodeTTL)
		}
	}
	announce()
	// Wait for the episode's end on the bus (after its recovery, if any:
	// events arrive in order).
	timeout := time.After(30 * time.Second)
	for done := false; !done; {
		select {
		case ev := <-ended:
			done = ev.EpisodeID == ep.ID
		case <-timeout:
			return errors.New("the episode did not finish within 30s")
		}
	}
	if ep, err = client.Episodes().Get(ctx, ep.ID); err != nil {
		return err
	}
	fmt.Printf("episode %s: %s, claimed %d times (a crash restart is a new claim); result %s\n", ep.ID, ep.Status, ep.Attempts, ep.Result)
	return nil
}

// resetDemo forgets the demo episode. On SQLite it deletes the file; on
// Postgres it cancels the episode if it is unfinished and archives it,
// which frees its dedupe key.
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
	store, err := episodes.New(db, nil)
	if err != nil {
		return err
	}
	list, err := store.List(ctx, episodes.ListParams{ActorID: actorID})
	if err != nil {
		return err
	}
	for _, ep := range list.Episodes {
		if !ep.Status.Terminal() {
			if _, err := store.Cancel(ctx, ep.ID, "demo reset"); err != nil {
				return err
			}
		}
		if _, err := store.Archive(ctx, ep.ID); err != nil {
			return err
		}
	}
	return nil
}
