package runner

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/revenant-go/revenant/breakers"
	"github.com/revenant-go/revenant/bus"
	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/internal/dbx"
	"github.com/revenant-go/revenant/journal"
	"github.com/revenant-go/revenant/recovery"
)

// Defaults.
const (
	HeartbeatIntervalDefault = 2500 * time.Millisecond
	NodeTTLDefault           = 10 * time.Second
	PollIntervalDefault      = time.Second
	ShutdownTimeoutDefault   = 10 * time.Second
	MaxConcurrentDefault     = 10
	// maxConcurrentLimit bounds MaxConcurrent: one claim asks for that
	// many rows at once.
	maxConcurrentLimit = 100_000
)

// RunFunc runs one episode. ctx is canceled when the claim is lost, the
// episode is canceled, or the runner stops; the run should then return (its
// writes are fenced anyway). The returned value is the episode's JSON result.
// An error fails the episode (error class "error", or the ErrorClass() of an
// error that has one); a panic fails it with class "panic" and the stack.
type RunFunc func(ctx context.Context, ep *episodes.Episode, j *journal.Journal) (any, error)

// Actor is a kind of work a runner can run.
type Actor struct {
	// ID names the actor; episodes carry it as ActorID. Required.
	ID string
	// Run runs one episode. Required.
	Run RunFunc
	// Recovery is what a sweep does with this actor's orphans:
	// recovery.Restart or recovery.Fail. The node publishes it in its row,
	// so that any node's sweep (or an operator's dry run) recovers this
	// node's orphans by it. Empty means "not stated": a sweep falls through
	// to the actor's definition in the database (package actors), then to
	// its DefaultPolicy (Fail unless configured).
	Recovery recovery.Policy
	// ExpectationRecovery overrides Recovery per expectation name.
	ExpectationRecovery map[string]recovery.Policy
	// MaxAttempts is given to episodes enqueued through this runner for the
	// actor: how many attempts an episode gets in all, counting both error
	// retries and crash restarts (one counter, as in River). Defaults to
	// episodes.MaxAttemptsDefault (3).
	MaxAttempts int
	// Retry says how an error ends an attempt: by default (nil) it is
	// retried, while attempts remain, after an exponential backoff with
	// jitter (about 1 s, 2 s, 4 s, … up to 10 min), except errors marked
	// journal.Permanent and the classes in NoRetry. An episode's own
	// policy (episodes.CreateParams.Retry) overrides this one. A waiting
	// episode is pending, holds no lease, and is due by the database
	// clock; its completed steps are replayed, not run again.
	Retry *episodes.RetryPolicy
	// Timeout bounds one attempt: the run's context is canceled when it
	// passes and the attempt ends with error class "timeout" (retried per
	// Retry). The node keeps owning the episode while the run winds down,
	// so an actor must return once its context is done. Defaults to 0 (no
	// limit).
	Timeout time.Duration
	// Breaker, when set, gives the actor a cluster-wide circuit breaker
	// (see package breakers). Defaults to nil: no breaker, and no cost.
	Breaker *breakers.Policy
	// MaxConcurrent bounds this node's running episodes of the actor.
	// Defaults to MaxConcurrentDefault.
	MaxConcurrent int
}

// Config configures a Runner. A nil *Config is valid.
type Config struct {
	// Name is a human name for the node (e.g. the host). The node id is
	// Name plus a random suffix, unique per process start. Defaults to
	// "node".
	Name string
	// Stack and Env are stamped on enqueued episodes and scope this node's
	// claims and sweeps. Default to "" (none).
	Stack string
	Env   string
	// HeartbeatInterval is how often the node renews its liveness (one
	// statement, whatever the number of running episodes) and checks the
	// leases of its runs. Defaults to HeartbeatIntervalDefault.
	HeartbeatInterval time.Duration
	// NodeTTL is how long liveness lasts without a heartbeat; after it the
	// node's episodes are orphans. Must exceed twice HeartbeatInterval.
	// Defaults to NodeTTLDefault.
	NodeTTL time.Duration
	// OnDeadOwners, when set, is called from the heartbeat (it must not
	// block) when the heartbeat finds another node dead owning running
	// episodes (Postgres: the check rides on the heartbeat's statement).
	// revenant.Client wires it to its Sweeper, which then needs no poll of
	// its own. Defaults to none.
	OnDeadOwners func()
	// PollInterval is how often runners look for pending work when no
	// notification arrives. Defaults to PollIntervalDefault.
	PollInterval time.Duration
	// ListenDSN, when set, is used by lib/pq's Listener to receive LISTEN/
	// NOTIFY wake-ups (new work, cancels). Without it runners poll. It may
	// point at the same database as the pool whatever the pool's driver. A
	// DSN that does not parse is an error from New; one that cannot connect
	// is not: Start returns once the first attempt fails, its ctx ends or
	// 5 s pass (connect_timeout is 5 s unless the DSN sets one), the node
	// polls, logs one warning per outage, and keeps trying to LISTEN in the
	// background.
	ListenDSN string
	// DisableLockDetection turns off the session advisory lock that lets
	// other nodes see this node's death at once. Set it behind a
	// transaction-mode connection pooler (PgBouncer), where session locks
	// do not work; liveness then relies on the heartbeat TTL alone.
	DisableLockDetection bool
	// ShutdownTimeout bounds how long Stop and StopAndCancel wait for
	// canceled runs to return before handing their episodes back anyway,
	// and then the hand-back writes themselves. Defaults to
	// ShutdownTimeoutDefault.
	ShutdownTimeout time.Duration
	// Bus, when set, receives the episode lifecycle events (started,
	// completed, failed, canceled). With the Postgres bus each event is
	// written in the same transaction as the state change. Defaults to none.
	Bus bus.Publisher
	// StrictActors makes Enqueue refuse (ErrUnknownActor, nothing
	// written) an episode whose actor no live node in its scope has
	// registered and that has no definition. Defaults to false: such an
	// episode is enqueued, flagged (CreateResult.UnknownActor) and logged
	// once per actor.
	StrictActors bool
	// Journal configures the journals handed to runs.
	Journal *journal.Config
	// Logger defaults to discarding.
	Logger *slog.Logger
}

func (c *Config) withDefaults() *Config {
	out := Config{}
	if c != nil {
		out = *c
	}
	if out.Name == "" {
		out.Name = "node"
	}
	if out.HeartbeatInterval == 0 {
		out.HeartbeatInterval = HeartbeatIntervalDefault
	}
	if out.NodeTTL == 0 {
		out.NodeTTL = NodeTTLDefault
	}
	if out.PollInterval == 0 {
		out.PollInterval = PollIntervalDefault
	}
	if out.ShutdownTimeout == 0 {
		out.ShutdownTimeout = ShutdownTimeoutDefault
	}
	if out.Logger == nil {
		out.Logger = dbx.DiscardLogger()
	}
	return &out
}

// Bounds on Config durations: intervals shorter than minInterval turn the
// loops into busy loops, and the NodeTTL also bounds transactional steps'
// idle_in_transaction_session_timeout, a 32-bit number of milliseconds.
const (
	minInterval = 10 * time.Millisecond
	maxInterval = time.Hour
)

func (c *Config) validate() error {
	for _, d := range []struct {
		name           string
		value, lo, def time.Duration
		hi             time.Duration
	}{
		{"HeartbeatInterval", c.HeartbeatInterval, minInterval, HeartbeatIntervalDefault, maxInterval},
		{"NodeTTL", c.NodeTTL, 3 * minInterval, NodeTTLDefault, dbx.MaxDBTimeout},
		{"PollInterval", c.PollInterval, minInterval, PollIntervalDefault, maxInterval},
		{"ShutdownTimeout", c.ShutdownTimeout, time.Millisecond, ShutdownTimeoutDefault, 24 * time.Hour},
	} {
		if err := dbx.CheckDuration("runner Config."+d.name, d.value, d.lo, d.hi, d.def); err != nil {
			return err
		}
	}
	if c.NodeTTL <= 2*c.HeartbeatInterval {
		return fmt.Errorf("%w: runner Config.NodeTTL (%s) must exceed twice HeartbeatInterval (%s), or one late heartbeat would declare the node dead",
			dbx.ErrInvalidInput, c.NodeTTL, c.HeartbeatInterval)
	}
	// The node id is the name plus a dash and 8 hex digits.
	if err := dbx.CheckText("runner Config.Name", c.Name, dbx.MaxNameBytes-9); err != nil {
		return err
	}
	if err := dbx.CheckName("runner Config.Stack", c.Stack, false); err != nil {
		return err
	}
	return dbx.CheckName("runner Config.Env", c.Env, false)
}

func (a *Actor) validate() error {
	if err := dbx.CheckName("Actor.ID", a.ID, true); err != nil {
		return err
	}
	if a.Run == nil {
		return fmt.Errorf("%w: actor %q: Actor.Run is nil", dbx.ErrInvalidInput, a.ID)
	}
	if a.Recovery != "" && !a.Recovery.Valid() {
		return fmt.Errorf("%w: actor %q: Recovery is %q; use recovery.Restart, recovery.Fail, or leave it empty to defer to the actor's definition", dbx.ErrInvalidInput, a.ID, a.Recovery)
	}
	for exp, p := range a.ExpectationRecovery {
		if err := dbx.CheckName(fmt.Sprintf("actor %q: ExpectationRecovery key", a.ID), exp, true); err != nil {
			return err
		}
		if !p.Valid() {
			return fmt.Errorf("%w: actor %q expectation %q: recovery policy is %q; use recovery.Restart or recovery.Fail", dbx.ErrInvalidInput, a.ID, exp, p)
		}
	}
	if a.MaxAttempts < 0 || a.MaxAttempts > dbx.MaxMaxAttempts || a.MaxConcurrent < 0 || a.MaxConcurrent > maxConcurrentLimit {
		return fmt.Errorf("%w: actor %q: MaxAttempts is %d and MaxConcurrent %d; use 1..%d and 1..%d (0 means the default)",
			dbx.ErrInvalidInput, a.ID, a.MaxAttempts, a.MaxConcurrent, dbx.MaxMaxAttempts, maxConcurrentLimit)
	}
	if a.MaxConcurrent == 0 {
		a.MaxConcurrent = MaxConcurrentDefault
	}
	if err := a.Retry.Validate(fmt.Sprintf("actor %q: Retry", a.ID), false); err != nil {
		return err
	}
	if a.Timeout < 0 || a.Timeout > dbx.MaxDBTimeout {
		return fmt.Errorf("%w: actor %q: Timeout is %s; use 0 (none) up to %s", dbx.ErrInvalidInput, a.ID, a.Timeout, dbx.MaxDBTimeout)
	}
	if a.Breaker != nil {
		b := *a.Breaker // validated and defaulted on a copy: the caller's stays as given
		if err := b.Validate(fmt.Sprintf("actor %q: Breaker", a.ID)); err != nil {
			return err
		}
		a.Breaker = &b
	}
	return nil
}
