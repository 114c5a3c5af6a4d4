// Package clusterdemo is the worker behind examples/cluster and the
// cross-process crash tests: a node that runs "cluster-work" episodes of N
// transactional steps, each writing a side-effect row under a unique
// (episode, step) key, with a runner and a sweeper.
package clusterdemo

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/journal"
	"github.com/revenant-go/revenant/migrations"
	"github.com/revenant-go/revenant/recovery"
	"github.com/revenant-go/revenant/runner"
	"github.com/revenant-go/revenant/sqlite"
)

// ActorID is the demo's actor.
const ActorID = "cluster-work"

// Options configures one worker.
type Options struct {
	// DSN is a Postgres URL, or with SQLite set, the SQLite file's path.
	DSN         string
	SQLite      bool
	Name        string
	Concurrency int
	Enqueue     int           // episodes to enqueue at start
	Steps       int           // steps per episode
	StepSleep   time.Duration // inside each step's transaction
	MaxAttempts int
	// Runner and sweeper timing; zero values keep the library defaults.
	HeartbeatInterval, NodeTTL, PollInterval, SweepInterval time.Duration
	// ExitWhenDone stops the worker once no demo episode is pending or
	// running.
	ExitWhenDone bool
	Logger       *slog.Logger
}

// Summary is printed on exit.
type Summary struct {
	Node       string
	Ran, Steps int
	Restarted  int // by this node's sweeps
	Elapsed    time.Duration
}

func (s Summary) String() string {
	return fmt.Sprintf("node=%s ran=%d steps=%d restarted_by_sweeps=%d elapsed=%s", s.Node, s.Ran, s.Steps, s.Restarted, s.Elapsed.Round(time.Millisecond))
}

// Schema creates the demo's side-effect table.
const Schema = `CREATE TABLE IF NOT EXISTS cluster_effects (
	episode_id  uuid        NOT NULL,
	step        integer     NOT NULL,
	claim_token bigint      NOT NULL,
	node_id     text        NOT NULL,
	written_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
	UNIQUE (episode_id, step)
)`

// SQLiteSchema is Schema on SQLite.
const SQLiteSchema = `CREATE TABLE IF NOT EXISTS cluster_effects (
	episode_id  text      NOT NULL,
	step        integer   NOT NULL,
	claim_token integer   NOT NULL,
	node_id     text      NOT NULL,
	written_at  timestamp NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
	UNIQUE (episode_id, step)
)`

// Open opens the worker's database.
func Open(ctx context.Context, o Options) (*sqlx.DB, error) {
	if o.SQLite {
		return sqlite.Open(ctx, o.DSN, &sqlite.Config{MaxOpenConns: o.Concurrency + 6})
	}
	db, err := sqlx.Open("postgres", o.DSN)
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(o.Concurrency + 6)
	return db, nil
}

// Run runs a worker until ctx ends (or, with ExitWhenDone, the work is
// done), then stops it gracefully.
func Run(ctx context.Context, o Options) (Summary, error) {
	start := time.Now()
	// Stopped while starting (a signal arrived while the file or the
	// database was being opened, migrated, registered with): whatever
	// failed because of it, that is a clean stop, not an error.
	startErr := func(sum Summary, err error) (Summary, error) {
		if ctx.Err() != nil {
			return sum, nil
		}
		return sum, err
	}
	db, err := Open(ctx, o)
	if err != nil {
		return startErr(Summary{}, err)
	}
	defer db.Close()
	if _, err := migrations.Migrate(ctx, db); err != nil {
		return startErr(Summary{}, err)
	}
	if err := createSchema(ctx, db, o.SQLite); err != nil {
		return startErr(Summary{}, err)
	}
	if o.Steps == 0 {
		o.Steps = 5
	}
	listen := o.DSN
	if o.SQLite {
		listen = "" // SQLite: runners poll
	}
	r, err := runner.New(db, &runner.Config{
		Name: o.Name, ListenDSN: listen, Logger: o.Logger,
		HeartbeatInterval: o.HeartbeatInterval, NodeTTL: o.NodeTTL, PollInterval: o.PollInterval,
	})
	if err != nil {
		return Summary{}, err
	}
	sum := Summary{}
	ran := make(chan int, 1024)
	err = r.Register(runner.Actor{
		ID: ActorID, Recovery: recovery.Restart, MaxConcurrent: o.Concurrency, MaxAttempts: o.MaxAttempts,
		Run: func(ctx context.Context, ep *episodes.Episode, j *journal.Journal) (any, error) {
			steps := 0
			for i := range o.Steps {
				_, err := journal.StepTx(ctx, j, fmt.Sprintf("step-%d", i), func(ctx context.Context, tx *sqlx.Tx) (int, error) {
					if o.StepSleep > 0 {
						select {
						case <-time.After(o.StepSleep):
						case <-ctx.Done():
							return 0, ctx.Err()
						}
					}
					_, err := tx.ExecContext(ctx, `INSERT INTO cluster_effects (episode_id, step, claim_token, node_id) VALUES ($1, $2, $3, $4)`,
						ep.ID, i, j.ClaimToken(), ep.OwnerNode)
					steps++
					return i, err
				})
				if err != nil {
					return nil, err
				}
			}
			ran <- steps
			return map[string]any{"steps": o.Steps}, nil
		},
	})
	if err != nil {
		return sum, err
	}
	if err := r.Start(ctx); err != nil {
		return startErr(sum, err)
	}
	sum.Node = r.NodeID()
	stopRunner := func() {
		stopCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = r.Stop(stopCtx)
	}
	sweeper, err := recovery.NewSweeper(db, &recovery.SweeperConfig{
		Options:  recovery.Options{Node: r, Logger: o.Logger},
		Interval: o.SweepInterval,
	})
	if err != nil {
		stopRunner()
		return sum, err
	}
	if err := sweeper.Start(ctx); err != nil {
		stopRunner()
		return startErr(sum, err)
	}
	for i := range o.Enqueue {
		if _, err := r.Enqueue(ctx, episodes.CreateParams{ActorID: ActorID, Input: i, MaxAttempts: o.MaxAttempts}); err != nil {
			_ = sweeper.Stop(context.Background())
			stopRunner()
			return startErr(sum, err)
		}
	}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case n := <-ran:
			sum.Ran++
			sum.Steps += n
		case <-tick.C:
			if o.ExitWhenDone {
				var open int
				if err := db.GetContext(ctx, &open, `SELECT count(*) FROM revenant_episodes WHERE actor_id = $1 AND status IN ('pending', 'running')`, ActorID); err == nil && open == 0 {
					break loop
				}
			}
		}
	}
	_ = sweeper.Stop(context.Background())
	stopCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = r.Stop(stopCtx)
	for {
		select {
		case n := <-ran:
			sum.Ran++
			sum.Steps += n
			continue
		default:
		}
		break
	}
	st := sweeper.Stats()
	sum.Restarted = st.Restarted
	sum.Elapsed = time.Since(start)
	return sum, err
}

// createSchema creates the effects table; concurrent CREATE … IF NOT EXISTS
// can collide on Postgres, so workers serialise on an advisory lock.
func createSchema(ctx context.Context, db *sqlx.DB, sqlite bool) error {
	if sqlite {
		_, err := db.ExecContext(ctx, SQLiteSchema)
		return err
	}
	tx, err := db.BeginTxx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(hashtext('revenant_clusterdemo'))`); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, Schema); err != nil {
		return err
	}
	return tx.Commit()
}
