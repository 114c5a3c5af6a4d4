// Package clusterdemo describes the examples/cluster program to the tests
// that run it as real worker processes and kill them with signals (package
// recovery's crash tests and failover benchmark): its command line, its
// actor and its side-effect table. The worker code itself lives in
// examples/cluster, whose test checks that the constants here match it.
package clusterdemo

import (
	"fmt"
	"time"
)

// Package is the import path of the program.
const Package = "github.com/revenant-go/revenant/examples/cluster"

// ActorID is the program's actor.
const ActorID = "cluster-work"

// Schema is the program's side-effect table on Postgres: one row per
// (episode, step), written in the step's transaction.
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

// Options configures one worker process.
type Options struct {
	// DSN is a Postgres URL, or with SQLite set, the SQLite file's path.
	DSN         string
	SQLite      bool
	Name        string
	Concurrency int
	// MaxConns bounds the worker's pool; 0 keeps the program's default
	// (Concurrency + 6).
	MaxConns int
	Enqueue  int // episodes to enqueue at start
	Steps    int // steps per episode; 0 keeps the program's default (5)
	// StepTime is each step's work outside its transaction. Zero here
	// means none, unlike the program's default (600ms), so that tests run
	// fast.
	StepTime time.Duration
	// StepSleep is how long each step holds its transaction open before
	// writing (-tx-hold): a kill or a pause then lands inside it.
	StepSleep   time.Duration
	MaxAttempts int
	// Client timing; zero values keep the program's defaults.
	HeartbeatInterval, NodeTTL, PollInterval, SweepInterval time.Duration
	// ExitWhenDone stops the worker once no demo episode is pending or
	// running.
	ExitWhenDone bool
	// QuietRecoveries: the worker does not print (nor read) each
	// recovered episode it hears of.
	QuietRecoveries bool
}

// Args is the program's command line for o.
func (o Options) Args() []string {
	args := []string{"-name", o.Name, "-step-time", o.StepTime.String(), "-tx-hold", o.StepSleep.String()}
	for _, f := range []struct {
		name string
		v    int
	}{{"-concurrency", o.Concurrency}, {"-max-conns", o.MaxConns}, {"-enqueue", o.Enqueue}, {"-steps", o.Steps}, {"-max-attempts", o.MaxAttempts}} {
		if f.v != 0 {
			args = append(args, f.name, fmt.Sprint(f.v))
		}
	}
	for _, f := range []struct {
		name string
		v    time.Duration
	}{{"-heartbeat", o.HeartbeatInterval}, {"-ttl", o.NodeTTL}, {"-poll", o.PollInterval}, {"-sweep-interval", o.SweepInterval}} {
		if f.v != 0 {
			args = append(args, f.name, f.v.String())
		}
	}
	if o.ExitWhenDone {
		args = append(args, "-exit-when-done")
	}
	if o.QuietRecoveries {
		args = append(args, "-quiet-recoveries")
	}
	if o.SQLite {
		args = append(args, "-sqlite", o.DSN)
	}
	return args
}

// Env is the program's environment for o, to append to os.Environ(): the
// last DATABASE_URL wins, and an empty one selects SQLite.
func (o Options) Env() []string {
	if o.SQLite {
		return []string{"DATABASE_URL="}
	}
	return []string{"DATABASE_URL=" + o.DSN}
}
