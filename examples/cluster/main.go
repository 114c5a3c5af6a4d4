// Command cluster is a revenant worker for multi-node demos and crash
// tests. Start several, kill some (kill -9), and watch the survivors
// recover their episodes:
//
//	export DATABASE_URL=postgres://postgres@127.0.0.1:5432/test?sslmode=disable
//	go run ./examples/cluster -name a -enqueue 200 &
//	go run ./examples/cluster -name b &
//	go run ./examples/cluster -name c -exit-when-done
//
// Without DATABASE_URL the workers share one SQLite file (-sqlite, default
// revenant-cluster.db): processes on one host, whose crashes are seen when
// their heartbeat TTL lapses (try -heartbeat 500ms -ttl 2s).
//
// Each episode runs -steps transactional steps; each step writes a row to
// cluster_effects under a unique (episode, step) key, so a repeated side
// effect would fail loudly. On exit it prints a one-line summary.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/revenant-go/revenant/internal/clusterdemo"
)

func main() {
	var o clusterdemo.Options
	flag.StringVar(&o.Name, "name", "worker", "node name (the node id adds a random suffix)")
	flag.IntVar(&o.Concurrency, "concurrency", 8, "episodes this node runs at once")
	flag.IntVar(&o.Enqueue, "enqueue", 0, "episodes to enqueue at start")
	flag.IntVar(&o.Steps, "steps", 5, "journaled steps per episode")
	flag.DurationVar(&o.StepSleep, "step-sleep", 20*time.Millisecond, "work time inside each step")
	flag.IntVar(&o.MaxAttempts, "max-attempts", 50, "claims allowed per episode before it is dead-lettered")
	flag.DurationVar(&o.HeartbeatInterval, "heartbeat", 0, "heartbeat interval (0: library default)")
	flag.DurationVar(&o.NodeTTL, "ttl", 0, "node TTL (0: library default)")
	flag.BoolVar(&o.ExitWhenDone, "exit-when-done", false, "exit once no episode is pending or running")
	file := flag.String("sqlite", "revenant-cluster.db", "SQLite file shared by the workers when DATABASE_URL is unset")
	verbose := flag.Bool("v", false, "log to stderr")
	flag.Parse()
	o.DSN = os.Getenv("DATABASE_URL")
	if o.DSN == "" {
		o.DSN, o.SQLite = *file, true
	}
	if *verbose {
		o.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	sum, err := clusterdemo.Run(ctx, o)
	fmt.Println(sum)
	if err != nil {
		fmt.Fprintln(os.Stderr, "cluster:", err)
		os.Exit(1)
	}
}
