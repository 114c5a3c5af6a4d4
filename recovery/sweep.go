package recovery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"

	"github.com/revenant-go/revenant/bus"
	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/internal/dbx"
	"github.com/revenant-go/revenant/internal/safe"
	"github.com/revenant-go/revenant/internal/store"
	"github.com/revenant-go/revenant/internal/store/backend"
)

// Sweep finds orphaned running episodes in scope and restarts or fails each
// by its actor's policy. It is safe to run from any number of nodes at once:
// each orphan is claimed by exactly one sweep. A failing pass leaves
// episodes as they were (each batch is one statement or one transaction).
func Sweep(ctx context.Context, db *sqlx.DB, opts *Options) (*Result, error) {
	if db == nil {
		return nil, ErrNilDB
	}
	c, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	c.st = backend.For(db)
	return sweep(ctx, db, c)
}

func sweep(ctx context.Context, db conn, c *config) (*Result, error) {
	var err error
	start := time.Now()
	res := &Result{}
	switch {
	case c.DryRun:
		err = dryRun(ctx, db, c, res)
	case c.ResolvePolicy != nil:
		err = sweepWithCallback(ctx, db, c, res)
	default:
		err = sweepByPolicy(ctx, db, c, res)
	}
	if err != nil {
		return res, dbx.Explain(err)
	}
	if err := reportExhausted(ctx, db, c, res); err != nil {
		return res, err
	}
	if err := markDeadNodes(ctx, db, c, res); err != nil {
		return res, dbx.Explain(err)
	}
	res.Duration = time.Since(start)
	level := slog.LevelDebug
	if res.Restarted+res.Failed+res.DeadLettered+res.Skipped > 0 {
		level = slog.LevelInfo
	}
	c.Logger.Log(ctx, level, "revenant: sweep",
		slog.Int("restarted", res.Restarted), slog.Int("failed", res.Failed),
		slog.Int("dead_lettered", res.DeadLettered), slog.Int("skipped", res.Skipped),
		slog.Any("dead_nodes", res.DeadNodes), slog.Bool("dry_run", c.DryRun), slog.Duration("took", res.Duration))
	return res, nil
}

// sweepByPolicy resolves policies per owner and (actor, expectation) up
// front, then has the store recover the orphans batch by batch (one statement per
// batch; the backend chooses how to batch).
func sweepByPolicy(ctx context.Context, db conn, c *config, res *Result) error {
	groups, err := c.st.OrphanGroups(ctx, db, c.orphans())
	if err != nil {
		return fmt.Errorf("sweep: finding orphans: %w", err)
	}
	if len(groups) == 0 {
		return nil
	}
	policies, err := resolvePairs(ctx, db, c, groups, res)
	if err != nil || len(policies) == 0 {
		return err
	}
	p := &store.OrphanRecoverParams{Query: *c.orphans(), Groups: groups, Policies: policies, Limit: c.BatchSize}
	if c.summarize() {
		p.Summarize = true
		if c.Bus != nil {
			p.Events = &store.RecoveryEventTypes{Recovered: EventRecovered, Failed: EventFailed, DeadLettered: EventDeadLettered}
		}
	}
	for !p.Done {
		if err := recoverBatch(ctx, db, c, res, p); err != nil {
			return err
		}
	}
	return nil
}

// resolvePairs resolves the policy of each group's owner and (actor,
// expectation) pair. Groups whose policy is malformed (or, with Skip as
// the default, unstated) are logged, left untouched and reported in res;
// the others are returned.
func resolvePairs(ctx context.Context, db conn, c *config, groups []store.OrphanGroup, res *Result) ([]store.PairPolicy, error) {
	seenKey := map[orphanKey]bool{}
	var keys []orphanKey
	var owners, actors []string
	seenOwner, seenActor := map[string]bool{}, map[string]bool{}
	for _, g := range groups {
		k := orphanKey{g.Owner, g.ActorID, g.Expectation}
		if !seenKey[k] {
			seenKey[k] = true
			keys = append(keys, k)
		}
		if !seenActor[g.ActorID] {
			seenActor[g.ActorID] = true
			actors = append(actors, g.ActorID)
		}
		if g.Owner != "" && !seenOwner[g.Owner] {
			seenOwner[g.Owner] = true
			owners = append(owners, g.Owner)
		}
	}
	r, err := newResolver(ctx, db, c, owners, actors)
	if err != nil {
		return nil, fmt.Errorf("sweep: %w", err)
	}
	var out []store.PairPolicy
	untouched := map[orphanKey]error{}
	for _, k := range keys {
		v := r.resolve(k)
		if v.err != nil {
			untouched[k] = v.err
			msg := "revenant: sweep leaves orphans untouched: malformed recovery policy"
			if errors.Is(v.err, ErrNoPolicy) {
				msg = "revenant: sweep leaves orphans running: no source states a recovery policy for their actor"
			}
			c.Logger.ErrorContext(ctx, msg, slog.String("actor", k.actor), slog.String("expectation", k.expectation),
				slog.String("owner", k.owner), slog.Any("error", v.err))
			continue
		}
		out = append(out, store.PairPolicy{Owner: k.owner, ActorID: k.actor, Expectation: k.expectation, Policy: string(v.policy), Source: v.source})
	}
	if len(untouched) > 0 {
		if err := reportUntouched(ctx, db, c, untouched, res); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// reportUntouched lists the orphans whose policy could not be resolved
// (up to DryRunLimitDefault of all orphans) and reports each in res.
func reportUntouched(ctx context.Context, db conn, c *config, why map[orphanKey]error, res *Result) error {
	orphans, err := c.st.OrphanList(ctx, db, c.orphans(), DryRunLimitDefault)
	if err != nil {
		return fmt.Errorf("sweep: listing orphans: %w", err)
	}
	for _, o := range orphans {
		if e, ok := why[orphanKey{o.Episode.OwnerNode, o.Episode.ActorID, o.Episode.Expectation}]; ok {
			res.Skipped++
			res.Errors = append(res.Errors, EpisodeError{EpisodeID: o.Episode.ID, ActorID: o.Episode.ActorID, Err: e})
		}
	}
	return nil
}

// recoverBatch runs one batch of p; with a transactional bus, the batch
// and its events commit together. A failed batch leaves res as it was.
func recoverBatch(ctx context.Context, db conn, c *config, res *Result, p *store.OrphanRecoverParams) error {
	if p.Summarize {
		return recoverSummarized(ctx, db, c, res, p)
	}
	inTx := c.Bus != nil && bus.Transactional(c.Bus)
	var ex store.Querier = db
	var commit func() error
	if inTx {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("sweep: beginning batch: %w", err)
		}
		defer func() { _ = tx.Rollback() }()
		ex, commit = tx, tx.Commit
	}
	before := *res
	recovered, err := c.st.OrphanRecover(ctx, ex, p)
	if err != nil {
		return fmt.Errorf("sweep: recovering a batch: %w", err)
	}
	events := c.count(ctx, res, recovered, nil)
	if err := c.wake(ctx, ex, events); err != nil {
		*res = before
		return err
	}
	if inTx {
		if err := commit(); err != nil {
			*res = before
			return fmt.Errorf("sweep: committing batch: %w", err)
		}
	}
	c.emit(ctx, events)
	return nil
}

// summarize reports whether batches can do their side effects in their
// own statement: nothing needs each recovered episode in Go (no OnEvent,
// no bus or the outbox, which the statement writes) and the backend can.
func (c *config) summarize() bool {
	return c.OnEvent == nil && (c.Bus == nil || bus.Transactional(c.Bus)) && c.st.Capabilities().StatementEvents
}

// recoverSummarized runs one batch as one statement that also wakes the
// runners and writes the events: what recoverBatch does in up to five
// round trips, with every recovered row sent to the client and its event
// sent back. A failed NOTIFY (only a full notification queue) fails the
// batch here, where recoverBatch only logs it; the batch is then retried
// by the next pass, as any failed batch is.
func recoverSummarized(ctx context.Context, db conn, c *config, res *Result, p *store.OrphanRecoverParams) error {
	recovered, err := c.st.OrphanRecover(ctx, db, p)
	if err != nil {
		return fmt.Errorf("sweep: recovering a batch: %w", err)
	}
	// Only the episodes not restarted come back, for their counts and logs.
	c.count(ctx, res, recovered, nil)
	res.Restarted += p.Restarted
	return nil
}

// count tallies recovered rows in res and turns them into events. When
// listed is given (the callback path), each event takes the episode's
// details from the row as it was listed.
func (c *config) count(ctx context.Context, res *Result, recovered []store.Recovered, listed map[uuid.UUID]*store.Orphan) []Event {
	events := make([]Event, 0, len(recovered))
	for _, r := range recovered {
		ev := Event{EpisodeID: r.ID, ActorID: r.ActorID, Reason: r.Reason, PreviousOwner: r.PreviousOwner,
			WorkflowInstanceID: r.WorkflowInstanceID, WorkflowStepID: r.WorkflowStepID}
		if o, ok := listed[r.ID]; ok {
			ep := o.Episode
			ev.ActorID, ev.Reason, ev.PreviousOwner = ep.ActorID, o.Reason, ep.OwnerNode
			ev.WorkflowInstanceID, ev.WorkflowStepID = ep.WorkflowInstanceID, ep.WorkflowStepID
		}
		switch r.Action {
		case store.ActionRestart:
			res.Restarted++
			ev.Type = EventRecovered
		case store.ActionDeadLetter:
			res.DeadLettered++
			ev.Type, ev.ErrorClass = EventDeadLettered, "max_attempts_exceeded"
			c.Logger.WarnContext(ctx, "revenant: episode dead-lettered after max attempts",
				slog.String("episode", ev.EpisodeID.String()), slog.String("actor", ev.ActorID), slog.Int("attempts", r.Attempts))
		default:
			res.Failed++
			ev.Type, ev.ErrorClass = EventFailed, "orphaned"
		}
		events = append(events, ev)
	}
	return events
}

// wake tells runners about restarted work and writes the events to a
// transactional bus, in the batch's transaction. A failed notification is
// only logged: runners still find the work by polling.
func (c *config) wake(ctx context.Context, ex store.Querier, events []Event) error {
	restarted := map[string]bool{}
	for _, ev := range events {
		if ev.Type == EventRecovered {
			restarted[ev.ActorID] = true
		}
	}
	if len(restarted) > 0 {
		actors := make([]string, 0, len(restarted))
		for a := range restarted {
			actors = append(actors, a)
		}
		sort.Strings(actors)
		if err := c.st.NotifyEach(ctx, ex, store.PendingChannel, actors); err != nil {
			c.Logger.WarnContext(ctx, "revenant: notifying runners failed; they will poll", slog.Any("error", err))
		}
	}
	if c.Bus != nil && bus.Transactional(c.Bus) && len(events) > 0 {
		if err := c.Bus.PublishTx(ctx, ex, busEvents(events)...); err != nil {
			return fmt.Errorf("sweep: publishing events: %w", err)
		}
	}
	return nil
}

// emit runs after commit: it publishes to a non-transactional bus and calls
// OnEvent.
func (c *config) emit(ctx context.Context, events []Event) {
	if c.Bus != nil && !bus.Transactional(c.Bus) && len(events) > 0 {
		if err := c.Bus.Publish(ctx, busEvents(events)...); err != nil {
			c.Logger.WarnContext(ctx, "revenant: publishing recovery events failed", slog.Any("error", err))
		}
	}
	if c.OnEvent == nil {
		return
	}
	for _, ev := range events {
		// The recovery is committed; a panicking hook must not undo the
		// pass's bookkeeping or take the Sweeper down.
		var pe *safe.PanicError
		if err := safe.Call(func() error { c.OnEvent(ctx, ev); return nil }); errors.As(err, &pe) {
			c.Logger.ErrorContext(ctx, "revenant: OnEvent panicked", slog.String("episode", ev.EpisodeID.String()),
				slog.Any("panic", pe.Value), slog.String("stack", pe.Stack))
		}
	}
}

func busEvents(events []Event) []bus.Event {
	out := make([]bus.Event, len(events))
	for i, ev := range events {
		status := string(episodes.StatusFailed)
		if ev.Type == EventRecovered {
			status = string(episodes.StatusPending)
		}
		// Marshalling two strings cannot fail.
		payload, _ := json.Marshal(bus.Recovery{Reason: ev.Reason, PreviousOwner: ev.PreviousOwner})
		out[i] = bus.Event{Type: ev.Type, EpisodeID: ev.EpisodeID, ActorID: ev.ActorID, WorkflowInstanceID: ev.WorkflowInstanceID,
			WorkflowStepID: ev.WorkflowStepID, Status: status, ErrorClass: ev.ErrorClass, Payload: payload}
	}
	return out
}
