// Command cluster runs one node of a revenant cluster. Start a few, each in
// its own terminal, crash some with kill -9, and watch the survivors
// recover the dead node's episodes and resume them from their journals:
//
//	go run ./examples/cluster -name a -enqueue 200   # terminal 1
//	go run ./examples/cluster -name b                # terminal 2
//	go run ./examples/cluster -name c                # terminal 3
//	kill -9 <pid>    # the pid is on the node's first line
//
// (Kill the pid the node prints: `go run` runs it as a child process, and
// killing `go run` leaves the node running.) Ctrl-C stops a node
// gracefully: it lets its running episodes finish for up to 10s, then hands
// the rest back to pending.
//
// Each episode runs -steps steps. A step works for -step-time outside any
// transaction (think of a call to another service), then commits its side
// effect, a row in cluster_effects under a unique (episode, step) key,
// together with its journal record, in one transaction: a side effect that
// happened twice would fail loudly. By default an episode takes about 3s.
//
// With DATABASE_URL set the nodes share that Postgres, where a node that
// dies is seen at once (its advisory lock vanishes with it) and survivors
// recover its episodes within about half a second. Without it they share
// one SQLite file (-sqlite, default revenant-cluster.db): nodes on one
// host, a dead one seen when its heartbeat TTL (2s here) lapses.
//
// The crash tests in package recovery run this program with the fast
// settings (-step-time 0, short -tx-hold) and kill it with real signals.
package main

import (
	"cmp"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jmoiron/sqlx"
	_ "github.com/lib/pq"

	"github.com/revenant-go/revenant"
	"github.com/revenant-go/revenant/bus"
	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/journal"
	"github.com/revenant-go/revenant/recovery"
	"github.com/revenant-go/revenant/runner"
	"github.com/revenant-go/revenant/sqlite"
)

const actorID = "cluster-work"

// options are the command-line flags.
type options struct {
	name, sqliteFile            string
	concurrency, enqueue        int
	maxConns                    int
	steps, maxAttempts          int
	stepTime, txHold            time.Duration
	heartbeat, ttl, poll, sweep time.Duration
	exitWhenDone, verbose       bool
	quietRecoveries             bool
}

// stats are this node's counts, printed on exit.
type stats struct{ ran, steps, resumed, recoveries atomic.Int64 }

func main() {
	var o options
	flag.StringVar(&o.name, "name", "node", "node name (the node id adds a random suffix)")
	flag.IntVar(&o.concurrency, "concurrency", 8, "episodes this node runs at once")
	flag.IntVar(&o.enqueue, "enqueue", 0, "episodes to enqueue at start")
	flag.IntVar(&o.maxConns, "max-conns", 0, "database connections in the pool (0: concurrency + 6)")
	flag.IntVar(&o.steps, "steps", 5, "journaled steps per episode")
	flag.DurationVar(&o.stepTime, "step-time", 600*time.Millisecond, "work time of each step, outside any transaction")
	flag.DurationVar(&o.txHold, "tx-hold", 0, "time each step holds its transaction open before writing (crash tests: kills land inside transactions)")
	flag.IntVar(&o.maxAttempts, "max-attempts", 50, "claims allowed per episode before it is dead-lettered")
	flag.DurationVar(&o.heartbeat, "heartbeat", 0, "heartbeat interval (0: 500ms on SQLite, the library default on Postgres)")
	flag.DurationVar(&o.ttl, "ttl", 0, "node TTL (0: 2s on SQLite, the library default on Postgres)")
	flag.DurationVar(&o.poll, "poll", 0, "poll interval (0: 200ms on SQLite, the library default on Postgres)")
	flag.DurationVar(&o.sweep, "sweep-interval", 0, "period of the Sweeper's full passes (0: the library default)")
	flag.BoolVar(&o.exitWhenDone, "exit-when-done", false, "exit once no episode is pending or running")
	flag.StringVar(&o.sqliteFile, "sqlite", "revenant-cluster.db", "SQLite file shared by the nodes when DATABASE_URL is unset")
	flag.BoolVar(&o.verbose, "v", false, "log revenant's log lines to stderr")
	flag.BoolVar(&o.quietRecoveries, "quiet-recoveries", false, "do not print the recoveries this node sees (each costs a read)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil && ctx.Err() == nil { // stopped while starting: not an error
		fmt.Fprintln(os.Stderr, "cluster:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) error {
	start := time.Now()
	cfg := &revenant.Config{Name: o.name, HeartbeatInterval: o.heartbeat, NodeTTL: o.ttl, PollInterval: o.poll, SweepInterval: o.sweep}
	if o.verbose {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	dsn := os.Getenv("DATABASE_URL")
	var db *sqlx.DB
	var err error
	where := "Postgres from DATABASE_URL"
	if dsn == "" {
		where = "SQLite file " + o.sqliteFile
		db, err = sqlite.Open(ctx, o.sqliteFile, &sqlite.Config{MaxOpenConns: poolSize(o)})
		// No advisory locks on SQLite: a dead node is seen when its TTL lapses.
		cfg.HeartbeatInterval = cmp.Or(cfg.HeartbeatInterval, 500*time.Millisecond)
		cfg.NodeTTL = cmp.Or(cfg.NodeTTL, 2*time.Second)
		cfg.PollInterval = cmp.Or(cfg.PollInterval, 200*time.Millisecond)
	} else {
		db, err = sqlx.Open("postgres", dsn)
		cfg.ListenDSN = dsn // wake-ups by LISTEN/NOTIFY instead of polling
	}
	if err != nil {
		return err
	}
	db.SetMaxOpenConns(poolSize(o)) // runs, heartbeats, the Sweeper and the bus
	defer func() { _ = db.Close() }()
	if err := createSchema(ctx, db, dsn == ""); err != nil {
		return err
	}

	client, err := revenant.New(db, cfg)
	if err != nil {
		return err
	}
	st := &stats{}
	err = client.Register(runner.Actor{ID: actorID, Recovery: recovery.Restart, MaxConcurrent: o.concurrency,
		MaxAttempts: o.maxAttempts, Run: work(o, st)})
	if err != nil {
		return err
	}
	// Every node sees every recovery, by whichever node's sweep it was.
	client.Subscribe(bus.EpisodeRecovered, func(ctx context.Context, ev bus.Event) error {
		if o.quietRecoveries {
			return nil
		}
		st.recoveries.Add(1)
		ep, err := client.Episodes().Get(ctx, ev.EpisodeID)
		if err != nil {
			return err
		}
		fmt.Printf("%s: saw %s recovered: it went back to pending (its node died)\n", client.NodeID(), label(ep))
		return nil
	})
	if err := client.Start(ctx); err != nil { // migrate, startup sweep, Sweeper, claim
		return err
	}
	fmt.Printf("node %s (pid %d) on %s: %d episodes at a time, %d steps of %s each; kill -9 %d crashes it, Ctrl-C stops it\n",
		client.NodeID(), os.Getpid(), where, o.concurrency, o.steps, o.stepTime, os.Getpid())
	if sw := client.Startup().Sweep; sw != nil && len(sw.DeadNodes) > 0 {
		fmt.Printf("startup sweep: %d dead nodes, %d episodes restarted\n", len(sw.DeadNodes), sw.Restarted)
	}
	for i := range o.enqueue {
		if _, err := client.Enqueue(ctx, episodes.CreateParams{ActorID: actorID, Input: i, MaxAttempts: o.maxAttempts}); err != nil {
			_ = client.StopAndCancel(context.Background())
			return err
		}
	}
	if o.enqueue > 0 {
		fmt.Printf("enqueued %d episodes\n", o.enqueue)
	}

	wait(ctx, client, o.exitWhenDone)
	stopCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = client.Stop(stopCtx)
	fmt.Printf("node=%s ran=%d steps=%d resumed=%d recoveries_seen=%d elapsed=%s\n", client.NodeID(),
		st.ran.Load(), st.steps.Load(), st.resumed.Load(), st.recoveries.Load(), time.Since(start).Round(time.Millisecond))
	return err
}

// poolSize is the pool's bound: one connection per run plus the node's
// own, unless -max-conns says otherwise (runs that wait outside their
// transactions need far fewer).
func poolSize(o options) int {
	if o.maxConns > 0 {
		return o.maxConns
	}
	return o.concurrency + 6
}

// wait returns when ctx ends (Ctrl-C, SIGTERM) or, with exitWhenDone, when
// no episode of the demo is pending or running.
func wait(ctx context.Context, client *revenant.Client, exitWhenDone bool) {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			fmt.Println("stopping: running episodes may finish for up to 10s, the rest go back to pending")
			return
		case <-tick.C:
			if !exitWhenDone {
				continue
			}
			res, err := client.Episodes().List(ctx, episodes.ListParams{ActorID: actorID,
				Statuses: []episodes.Status{episodes.StatusPending, episodes.StatusRunning}, Limit: 1})
			if err == nil && len(res.Episodes) == 0 {
				fmt.Println("no episode is pending or running: stopping")
				return
			}
		}
	}
}

// work is the actor: o.steps steps, each committing a side effect with its
// journal record. Steps recorded by an earlier claim are not run again.
func work(o options, st *stats) runner.RunFunc {
	return func(ctx context.Context, ep *episodes.Episode, j *journal.Journal) (any, error) {
		began := time.Now()
		if done := j.Recorded(); done > 0 {
			st.resumed.Add(1)
			fmt.Printf("%s: %s resumed (claim %d): its journal already has %d of %d steps\n", ep.OwnerNode, label(ep), ep.Attempts, done, o.steps)
		} else {
			fmt.Printf("%s: %s started (claim %d)\n", ep.OwnerNode, label(ep), ep.Attempts)
		}
		for i := range o.steps {
			if i >= j.Recorded() { // not recorded yet: do the step's work
				if err := sleep(ctx, o.stepTime); err != nil {
					return nil, err
				}
			}
			ran := false
			_, err := journal.StepTx(ctx, j, fmt.Sprintf("step-%d", i), func(ctx context.Context, tx *sqlx.Tx) (int, error) {
				if err := sleep(ctx, o.txHold); err != nil {
					return 0, err
				}
				ran = true
				_, err := tx.ExecContext(ctx, `INSERT INTO cluster_effects (episode_id, step, claim_token, node_id) VALUES ($1, $2, $3, $4)`,
					ep.ID, i, j.ClaimToken(), ep.OwnerNode)
				return i, err
			})
			if err != nil {
				return nil, err
			}
			if ran {
				st.steps.Add(1)
			}
		}
		st.ran.Add(1)
		fmt.Printf("%s: %s done in %s (claim %d)\n", ep.OwnerNode, label(ep), time.Since(began).Round(100*time.Millisecond), ep.Attempts)
		return map[string]any{"steps": o.steps}, nil
	}
}

// label names an episode by its input, the number it was enqueued with.
func label(ep *episodes.Episode) string {
	var n int
	if err := json.Unmarshal(ep.Input, &n); err != nil {
		return "episode " + ep.ID.String()
	}
	return fmt.Sprintf("#%d", n)
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	select {
	case <-time.After(d):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// schema is the side-effect table, on Postgres and on SQLite.
const (
	schema = `CREATE TABLE IF NOT EXISTS cluster_effects (
	episode_id  uuid        NOT NULL,
	step        integer     NOT NULL,
	claim_token bigint      NOT NULL,
	node_id     text        NOT NULL,
	written_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
	UNIQUE (episode_id, step)
)`
	sqliteSchema = `CREATE TABLE IF NOT EXISTS cluster_effects (
	episode_id  text      NOT NULL,
	step        integer   NOT NULL,
	claim_token integer   NOT NULL,
	node_id     text      NOT NULL,
	written_at  timestamp NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
	UNIQUE (episode_id, step)
)`
)

// createSchema creates the side-effect table. On Postgres, concurrent
// CREATE TABLE IF NOT EXISTS can collide, so nodes take turns.
func createSchema(ctx context.Context, db *sqlx.DB, onSQLite bool) error {
	if onSQLite {
		_, err := db.ExecContext(ctx, sqliteSchema)
		return err
	}
	tx, err := db.BeginTxx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(hashtext('revenant_cluster_demo'))`); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, schema); err != nil {
		return err
	}
	return tx.Commit()
}
