package inspect

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/revenant-go/revenant/breakers"
	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/internal/dbx"
	"github.com/revenant-go/revenant/internal/store"
	"github.com/revenant-go/revenant/recovery"
)

// ExplainOptions tunes Explain to the node that would sweep. A zero value
// explains as an operator's dry run in the episode's own scope does: the
// dead owner's published policy, then the actor's definition, then Fail.
type ExplainOptions struct {
	// Node, when set, is the sweeping node (a runner): its scope and its
	// own actor policies are the sweep's, and an episode outside its scope
	// is not its sweep's to take.
	Node recovery.Node
	// DefaultPolicy, ResolvePolicy and StaleAfter are the sweep's (see
	// recovery.Options).
	DefaultPolicy recovery.Policy
	ResolvePolicy recovery.ResolvePolicyFunc
	StaleAfter    time.Duration
}

// Explanation says why an episode is in its state and what happens next.
type Explanation struct {
	// Episode is the row, without input and result.
	Episode *episodes.Episode
	// Summary says it in one or two sentences, for people.
	Summary string
	// Owner is a running episode's node (nil when it is not a known node).
	Owner *Node
	// Plan is what a sweep would do now with a running episode (nil when
	// it is not an orphan: its owner is alive): the rule that finds it
	// orphaned, the policy and where it comes from, the action.
	Plan *recovery.Plan
	// AttemptsLeft is MaxAttempts minus Attempts (never negative).
	AttemptsLeft int
	// DueIn is how long until a pending episode falls due (0 when due).
	DueIn time.Duration
	// Claimers are the live nodes that can claim a pending episode (its
	// actor registered, in its scope).
	Claimers []string
	// Breakers are the claimers' breakers that hold it back (open or
	// half-open).
	Breakers []breakers.Breaker
}

// Explain answers, for one episode: why is it in its state, and what
// happens next? For a running episode: is its owner alive, and by which
// signal; would a sweep take it now, by which rule, with which policy from
// which source, hence restart or fail (recovery.Explain, the same code
// as the sweep's). For a pending one: is it due, which nodes can claim
// it, and what their breakers say. An unknown id is an error wrapping
// episodes.ErrNotFound.
func (i *Inspector) Explain(ctx context.Context, id uuid.UUID, opts ExplainOptions) (*Explanation, error) {
	row, err := i.st.EpisodeGet(ctx, i.db, id)
	if err != nil {
		return nil, fmt.Errorf("explaining episode %s: %w", id, dbx.Explain(err))
	}
	ep := (*episodes.Episode)(row)
	ep.Input, ep.Result = nil, nil
	x := &Explanation{Episode: ep, AttemptsLeft: max(ep.MaxAttempts-ep.Attempts, 0)}
	switch ep.Status {
	case episodes.StatusRunning:
		err = i.explainRunning(ctx, x, opts)
	case episodes.StatusPending:
		err = i.explainPending(ctx, x)
	case episodes.StatusBlocked:
		x.Summary = fmt.Sprintf("Blocked (phase %q): it waits for Resume; sweeps leave blocked episodes alone.", ep.Phase)
	case episodes.StatusFailed:
		x.Summary = fmt.Sprintf("Failed with class %q after %d attempt(s): a dead letter. Requeue puts it back with fresh attempts; Archive discards it.",
			ep.ErrorClass, ep.Attempts)
		if ep.WorkflowInstanceID != uuid.Nil {
			x.Summary = fmt.Sprintf("Failed with class %q: a step of workflow instance %s, whose failure policy decides what happens next.",
				ep.ErrorClass, ep.WorkflowInstanceID)
		}
	case episodes.StatusDone:
		x.Summary = fmt.Sprintf("Done after %d attempt(s).", ep.Attempts)
	case episodes.StatusCanceled:
		x.Summary = "Canceled: nothing runs it again unless it is requeued."
	}
	if err != nil {
		return nil, err
	}
	return x, nil
}

func (i *Inspector) explainRunning(ctx context.Context, x *Explanation, opts ExplainOptions) error {
	ep := x.Episode
	nodes, err := i.Nodes(ctx)
	if err != nil {
		return err
	}
	for k := range nodes {
		if nodes[k].ID == ep.OwnerNode {
			x.Owner = &nodes[k]
		}
	}
	ro := &recovery.Options{Stack: ep.SourceStack, Env: ep.SourceEnv, DefaultPolicy: opts.DefaultPolicy,
		ResolvePolicy: opts.ResolvePolicy, StaleAfter: opts.StaleAfter}
	outOfScope := false
	if opts.Node != nil {
		ro.Stack, ro.Env, ro.Node = "", "", opts.Node
		outOfScope = ep.SourceEnv != opts.Node.Env() || ep.SourceStack != "" && ep.SourceStack != opts.Node.Stack()
	}
	x.Plan, err = recovery.Explain(ctx, i.db, ep.ID, ro)
	if err != nil {
		return fmt.Errorf("explaining episode %s: %w", ep.ID, err)
	}
	staleAfter := opts.StaleAfter
	if staleAfter == 0 {
		staleAfter = recovery.StaleAfterDefault
	}
	var owner string
	switch {
	case x.Owner == nil:
		owner = fmt.Sprintf("Running under %q, which is not a known node: a sweep takes it once it has had no journal activity for %s.", ep.OwnerNode, staleAfter)
	case x.Owner.Liveness == Stopped:
		owner = fmt.Sprintf("Running on node %s, which stopped itself without handing it back.", x.Owner.ID)
	case x.Owner.Liveness == Alive:
		signal := "its heartbeat is fresh"
		if x.Owner.LockHeld {
			signal = "its lock is held and its heartbeat is fresh"
		}
		owner = fmt.Sprintf("Running on node %s, which is alive (%s; last heartbeat %s ago).", x.Owner.ID, signal, x.Owner.HeartbeatAge.Round(time.Millisecond))
	default:
		owner = fmt.Sprintf("Running on node %s, which is %s (%s).", x.Owner.ID, x.Owner.Liveness, describeDeath(x.Owner.DeadBy))
	}
	switch {
	case x.Plan == nil && outOfScope:
		x.Summary = fmt.Sprintf("%s It is outside this node's sweep scope (stack %q, env %q): a node of its own scope sweeps it.",
			owner, opts.Node.Stack(), opts.Node.Env())
	case x.Plan == nil && x.Owner == nil:
		x.Summary = owner + " It has had activity since: a sweep leaves it alone for now."
	case x.Plan == nil:
		x.Summary = owner + " A sweep leaves it alone."
	case x.Plan.Action == recovery.ActionSkip && errors.Is(x.Plan.Err, recovery.ErrExhausted):
		x.Summary = fmt.Sprintf("%s A sweep would leave it: %v.", owner, x.Plan.Err)
	case x.Plan.Action == recovery.ActionSkip:
		x.Summary = fmt.Sprintf("%s A sweep would find it orphaned (%s) but leave it: %v.", owner, x.Plan.Reason, x.Plan.Err)
	default:
		x.Summary = fmt.Sprintf("%s A sweep would find it orphaned (%s) and %s it: policy %s from %s; %d of %d attempts used.",
			owner, x.Plan.Reason, actionVerb(x.Plan.Action), x.Plan.Policy, x.Plan.PolicySource, ep.Attempts, ep.MaxAttempts)
	}
	return nil
}

func (i *Inspector) explainPending(ctx context.Context, x *Explanation) error {
	ep := x.Episode
	nodes, err := i.Nodes(ctx)
	if err != nil {
		return err
	}
	now, err := i.st.Clock(ctx, i.db)
	if err != nil {
		return fmt.Errorf("reading the database clock: %w", dbx.Explain(err))
	}
	x.DueIn = max(ep.RunAt.Sub(now), 0)
	seen := map[store.BreakerKey]bool{}
	for _, n := range nodes {
		if n.Liveness != Alive || n.Env != ep.SourceEnv || ep.SourceStack != "" && n.Stack != ep.SourceStack || !contains(n.Actors, ep.ActorID) {
			continue
		}
		x.Claimers = append(x.Claimers, n.ID)
		key := store.BreakerKey{ActorID: ep.ActorID, Stack: n.Stack, Env: n.Env}
		if seen[key] {
			continue
		}
		seen[key] = true
		b, err := i.st.BreakerGet(ctx, i.db, key)
		if err != nil && !errors.Is(err, dbx.ErrNotFound) {
			return fmt.Errorf("reading the breaker of actor %q: %w", ep.ActorID, dbx.Explain(err))
		}
		if err == nil && b.State != store.BreakerClosed {
			x.Breakers = append(x.Breakers, breakers.Breaker{Key: b.BreakerKey, State: b.State, Failures: b.Failures,
				WindowFailures: b.WindowFailures, ReopenAt: b.ReopenAt, Manual: b.Manual, Reason: b.Reason, ChangedAt: b.ChangedAt})
		}
	}
	due := "Pending and due"
	if x.DueIn > 0 {
		due = fmt.Sprintf("Pending, due in %s", x.DueIn.Round(time.Millisecond))
		if ep.ErrorClass != "" {
			due += fmt.Sprintf(" (waiting to retry after %q)", ep.ErrorClass)
		}
	}
	switch {
	case len(x.Claimers) == 0:
		x.Summary = fmt.Sprintf("%s, but no live node in its scope (stack %q, env %q) has registered actor %q: it waits until one does (a typo, or a node with another Stack or Env?).",
			due, ep.SourceStack, ep.SourceEnv, ep.ActorID)
	case len(x.Breakers) > 0 && len(x.Breakers) == len(seen):
		x.Summary = fmt.Sprintf("%s; nodes %s can claim it, but the actor's breaker is %s (%s).", due, strings.Join(x.Claimers, ", "),
			x.Breakers[0].State, x.Breakers[0].Reason)
	default:
		x.Summary = fmt.Sprintf("%s; nodes %s can claim it.", due, strings.Join(x.Claimers, ", "))
	}
	return nil
}

func describeDeath(rule string) string {
	switch rule {
	case recovery.ReasonOwnerLockGone:
		return "its session lock was released: the process or its connection died"
	case recovery.ReasonOwnerExpired:
		return "its heartbeat lapsed: paused, partitioned, or dead"
	}
	return rule
}

func actionVerb(a recovery.Action) string {
	switch a {
	case recovery.ActionRestart:
		return "restart"
	case recovery.ActionDeadLetter:
		return "dead-letter (max_attempts_exceeded)"
	}
	return "fail (orphaned)"
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
