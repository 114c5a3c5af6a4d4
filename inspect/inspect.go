// Package inspect answers an operator's questions about a revenant
// database: which nodes are alive, dead or stopped (and by which rule),
// what they run, and what waits. It reads; it changes nothing.
//
// Everything is computed by the database, with its clock and the same
// rules the sweep applies, so what it says is what the next sweep acts on.
package inspect

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"

	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/internal/dbx"
	"github.com/revenant-go/revenant/internal/store"
	"github.com/revenant-go/revenant/internal/store/backend"
	"github.com/revenant-go/revenant/recovery"
)

// Config configures an Inspector. A nil *Config is valid.
type Config struct {
	// Logger receives a warning for each row that cannot be read (it is
	// reported and skipped). Defaults to discarding.
	Logger *slog.Logger
}

// Inspector reads revenant's tables for operators.
type Inspector struct {
	db     *sqlx.DB
	st     store.Store
	logger *slog.Logger
}

// New returns an Inspector on db. db is the caller's and is never closed.
func New(db *sqlx.DB, config *Config) (*Inspector, error) {
	if db == nil {
		return nil, fmt.Errorf("%w: inspect.New: db is nil; pass the *sqlx.DB your application opened (wrap a *sql.DB with revenant.WrapDB)", dbx.ErrInvalidInput)
	}
	i := &Inspector{db: db, st: backend.For(db), logger: dbx.DiscardLogger()}
	if config != nil && config.Logger != nil {
		i.logger = config.Logger
	}
	return i, nil
}

// Liveness is what the database says of a node.
type Liveness string

// The livenesses.
const (
	// Alive: its lock is held (Postgres) and its heartbeat is fresh.
	Alive Liveness = "alive"
	// Dead: it died (DeadBy says by which rule); its running episodes are
	// orphans, or were recovered.
	Dead Liveness = "dead"
	// Stopped: it stopped itself cleanly.
	Stopped Liveness = "stopped"
)

// Node is one node as the database sees it.
type Node struct {
	// ID is unique per process start: Name plus a random suffix.
	ID, Name string
	// Stack and Env scope its claims and sweeps ("" for none).
	Stack, Env string
	Liveness   Liveness
	// DeadBy is the rule by which it is dead: recovery.ReasonOwnerLockGone
	// (its session lock was released: the process or its connection
	// died), recovery.ReasonOwnerExpired (its heartbeat lapsed: a pause,
	// a partition, or SQLite) or, for a node stopped before revenant
	// recorded why, recovery.ReasonOwnerStopped. "" unless Dead.
	DeadBy string
	// HasLock is true when the node took a session advisory lock
	// (Postgres, unless lock detection is off), and LockHeld when that
	// lock is held now.
	HasLock, LockHeld bool
	// StartedAt, HeartbeatAt and ExpiresAt are the database's times;
	// HeartbeatAge is how long ago the last heartbeat was. StoppedAt is
	// set once the node stopped or was found dead by a sweep.
	StartedAt, HeartbeatAt, ExpiresAt time.Time
	HeartbeatAge                      time.Duration
	StoppedAt                         *time.Time
	// Actors are the actors it registered, and Policies the recovery
	// policies it published for them (actors without one are left out).
	Actors   []string
	Policies map[string]ActorPolicy
	// Running counts the episodes running under it: for a dead node,
	// its orphans not yet recovered.
	Running int
	// LastSweep is the node's Sweeper's last pass; nil before its first
	// (or on a node that runs no Sweeper).
	LastSweep *SweepRecord
}

// SweepRecord is one Sweeper pass, as its node recorded it.
type SweepRecord struct {
	// At is when the pass ended (database clock); Took how long it ran.
	At   time.Time
	Took time.Duration
	// Restarted, Failed, DeadLettered and Skipped count what it did with
	// orphans (see recovery.Result).
	Restarted, Failed, DeadLettered, Skipped int
	// Error is why the pass failed ("" when it succeeded); a failed pass
	// changed nothing.
	Error string
}

// ActorPolicy is the recovery policy a node published for an actor.
type ActorPolicy struct {
	Recovery     recovery.Policy
	Expectations map[string]recovery.Policy
}

// Nodes lists every node the database knows, oldest first. Rows of nodes
// stopped over a day ago that own nothing are pruned by sweeps.
func (i *Inspector) Nodes(ctx context.Context) ([]Node, error) {
	rows, err := i.st.NodeList(ctx, i.db)
	if err != nil {
		return nil, fmt.Errorf("listing nodes: %w", dbx.Explain(err))
	}
	out := make([]Node, 0, len(rows))
	for _, r := range rows {
		if r.Err != nil {
			i.logger.WarnContext(ctx, "revenant: a node row cannot be read; left out", slog.String("node", r.ID), slog.Any("error", r.Err))
			continue
		}
		n := Node{ID: r.ID, Name: r.Name, Stack: r.Stack, Env: r.Env, HasLock: r.LockKey != nil, LockHeld: r.LockHeld,
			StartedAt: r.StartedAt, HeartbeatAt: r.HeartbeatAt, ExpiresAt: r.ExpiresAt, StoppedAt: r.StoppedAt,
			HeartbeatAge: max(r.Now.Sub(r.HeartbeatAt), 0), Actors: r.Actors, Running: r.Running}
		switch {
		case r.StoppedAt != nil && r.StopReason == store.NodeStopped:
			n.Liveness = Stopped
		case r.StoppedAt != nil:
			n.Liveness, n.DeadBy = Dead, r.StopReason
			if n.DeadBy == "" {
				n.DeadBy = recovery.ReasonOwnerStopped
			}
		case r.DeadReason != "":
			n.Liveness, n.DeadBy = Dead, r.DeadReason
		default:
			n.Liveness = Alive
		}
		if r.LastSweepAt != nil && len(r.LastSweep) > 0 {
			var rec store.SweepRecord
			if err := json.Unmarshal(r.LastSweep, &rec); err != nil {
				i.logger.WarnContext(ctx, "revenant: a node's last sweep cannot be read; shown without it",
					slog.String("node", r.ID), slog.Any("error", err))
			} else {
				n.LastSweep = &SweepRecord{At: *r.LastSweepAt, Took: time.Duration(rec.TookMS) * time.Millisecond,
					Restarted: rec.Restarted, Failed: rec.Failed, DeadLettered: rec.DeadLettered, Skipped: rec.Skipped, Error: rec.Error}
			}
		}
		var pols map[string]store.ActorPolicy
		if err := json.Unmarshal(r.Policies, &pols); err != nil {
			i.logger.WarnContext(ctx, "revenant: a node's published policies cannot be read; shown without them",
				slog.String("node", r.ID), slog.Any("error", err))
		}
		for actor, p := range pols {
			if n.Policies == nil {
				n.Policies = map[string]ActorPolicy{}
			}
			ap := ActorPolicy{Recovery: recovery.Policy(p.Recovery)}
			for exp, v := range p.Expectations {
				if ap.Expectations == nil {
					ap.Expectations = map[string]recovery.Policy{}
				}
				ap.Expectations[exp] = recovery.Policy(v)
			}
			n.Policies[actor] = ap
		}
		out = append(out, n)
	}
	return out, nil
}

// Backlog is one actor and scope's open work, and its dead letters.
type Backlog struct {
	// ActorID, and the Stack and Env its episodes carry ("" for none).
	ActorID, Stack, Env string
	// Due counts pending episodes that are due now; Scheduled those not
	// due yet (scheduled, or waiting to retry).
	Due, Scheduled int
	// Running and Blocked count episodes in those states.
	Running, Blocked int
	// Failed counts dead letters (failed, not archived; workflow steps
	// are their workflows' business and are left out).
	Failed int
	// OldestDueWait is how long the longest-waiting due episode has been
	// due, by the database clock.
	OldestDueWait time.Duration
	// Claimable is false when no live node in the episodes' scope has
	// registered the actor: they wait until one does (a typo in the
	// actor id, or a node with another Stack or Env).
	Claimable bool
}

// Backlog counts open episodes and dead letters per actor and scope.
func (i *Inspector) Backlog(ctx context.Context) ([]Backlog, error) {
	rows, err := i.st.EpisodeBacklog(ctx, i.db)
	if err != nil {
		return nil, fmt.Errorf("reading the backlog: %w", dbx.Explain(err))
	}
	out := make([]Backlog, len(rows))
	for k, g := range rows {
		out[k] = Backlog(g)
	}
	return out, nil
}

// EpisodeOptions says what Episode shows.
type EpisodeOptions struct {
	// Data shows the episode's input and result and its steps' outputs,
	// which may hold personal data. Defaults to false: they are left out
	// (step outputs keep their sizes).
	Data bool
}

// Step is one journal entry of an episode.
type Step struct {
	Seq int
	// Name is the step's name; Status "done" or "failed" (failed
	// permanently; other errors leave no entry).
	Name, Status string
	// StartedAt and FinishedAt are the database's times; Took their
	// difference.
	StartedAt, FinishedAt time.Time
	Took                  time.Duration
	// ClaimToken is the claim under which it was recorded: entries of
	// earlier attempts have smaller tokens.
	ClaimToken int64
	// OutputBytes is the recorded output's size; Output the output, with
	// EpisodeOptions.Data only. Error is a failed step's message.
	OutputBytes int
	Output      json.RawMessage
	Error       json.RawMessage
}

// WorkflowContext places a step's episode in its workflow.
type WorkflowContext struct {
	InstanceID uuid.UUID
	WorkflowID string
	StepID     string
	// Status is the instance's status.
	Status string
}

// EpisodeDetail is one episode as an operator looks at it.
type EpisodeDetail struct {
	// Episode is the row (with Input and Result only with
	// EpisodeOptions.Data); its ErrorDetail and Requeues are the error
	// and the requeue history.
	Episode *episodes.Episode
	// Steps is its journal, in order.
	Steps []Step
	// Workflow is set for a workflow step's episode.
	Workflow *WorkflowContext
}

// Episode reads one episode with its journal and workflow context. An
// unknown id is an error wrapping episodes.ErrNotFound.
func (i *Inspector) Episode(ctx context.Context, id uuid.UUID, opts EpisodeOptions) (*EpisodeDetail, error) {
	row, err := i.st.EpisodeGet(ctx, i.db, id)
	if err != nil {
		return nil, fmt.Errorf("reading episode %s: %w", id, dbx.Explain(err))
	}
	ep := (*episodes.Episode)(row)
	if !opts.Data {
		ep.Input, ep.Result = nil, nil
	}
	steps, err := i.st.StepList(ctx, i.db, id, opts.Data)
	if err != nil {
		return nil, fmt.Errorf("reading the journal of episode %s: %w", id, dbx.Explain(err))
	}
	d := &EpisodeDetail{Episode: ep, Steps: make([]Step, len(steps))}
	for k, s := range steps {
		d.Steps[k] = Step{Seq: s.Seq, Name: s.Name, Status: s.Status, StartedAt: s.StartedAt, FinishedAt: s.FinishedAt,
			Took: max(s.FinishedAt.Sub(s.StartedAt), 0), ClaimToken: s.ClaimToken, OutputBytes: s.OutputBytes,
			Output: s.Output, Error: s.Error}
	}
	if ep.WorkflowInstanceID != uuid.Nil {
		d.Workflow = &WorkflowContext{InstanceID: ep.WorkflowInstanceID, StepID: ep.WorkflowStepID}
		wf, err := i.st.WorkflowGet(ctx, i.db, ep.WorkflowInstanceID)
		switch {
		case err == nil:
			d.Workflow.WorkflowID, d.Workflow.Status = wf.Instance.WorkflowID, wf.Instance.Status
		case !errors.Is(err, dbx.ErrNotFound):
			return nil, fmt.Errorf("reading the workflow of episode %s: %w", id, dbx.Explain(err))
		}
	}
	return d, nil
}
