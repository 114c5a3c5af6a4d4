package runner

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"

	"github.com/revenant-go/revenant/bus"
	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/internal/dbx"
	"github.com/revenant-go/revenant/internal/store"
)

// Enqueue creates a pending episode and wakes runners (on commit). A
// duplicate dedupe key returns the existing episode and wakes no one.
func (r *Runner) Enqueue(ctx context.Context, p episodes.CreateParams) (*episodes.CreateResult, error) {
	var res *episodes.CreateResult
	err := r.inTx(ctx, func(tx *sqlx.Tx) error {
		var err error
		res, err = r.EnqueueTx(ctx, tx, p)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("enqueue: %w", err)
	}
	if !res.Duplicate {
		r.signal() // this node need not wait for a notification or a poll
	}
	return res, nil
}

// EnqueueTx is Enqueue inside the caller's transaction: the episode exists,
// and runners are woken, only if it commits.
func (r *Runner) EnqueueTx(ctx context.Context, tx episodes.Executor, p episodes.CreateParams) (*episodes.CreateResult, error) {
	if p.MaxAttempts == 0 {
		r.mu.Lock()
		if a, ok := r.actors[p.ActorID]; ok {
			p.MaxAttempts = a.MaxAttempts
		}
		r.mu.Unlock()
	}
	if err := dbx.CheckExecutor("runner EnqueueTx", tx); err != nil {
		return nil, err
	}
	known, err := r.actorKnown(ctx, tx, p)
	if err != nil {
		return nil, err
	}
	if !known && r.config.StrictActors {
		return nil, fmt.Errorf("%w: %q: no live node in scope (stack %q, env %q) has registered it and it has no definition; check the spelling, register it on a node, define it (package actors), or unset StrictActors to enqueue anyway",
			ErrUnknownActor, p.ActorID, r.scopeOf(p).Stack, r.scopeOf(p).Env)
	}
	res, err := r.store.CreateTx(ctx, tx, p)
	if err != nil {
		return nil, err
	}
	res.UnknownActor = !known
	if !res.Duplicate {
		if err := r.st.Notify(ctx, tx, store.PendingChannel, p.ActorID); err != nil {
			return nil, fmt.Errorf("enqueue: notify: %w", err)
		}
	}
	return res, nil
}

// Cancel cancels an episode from any node: it becomes canceled at once
// (its holder is fenced off) and the holder's run context is canceled, at
// once where it listens for notifications, else at its next heartbeat.
func (r *Runner) Cancel(ctx context.Context, id uuid.UUID, reason string) (*episodes.Episode, error) {
	var ep *episodes.Episode
	var after []bus.Event
	err := r.inTx(ctx, func(tx *sqlx.Tx) error {
		var err error
		if ep, err = r.store.CancelTx(ctx, tx, id, reason); err != nil {
			return err
		}
		if err := r.publishTx(ctx, tx, &after, eventOf(bus.EpisodeCanceled, ep)); err != nil {
			return err
		}
		// Without notifications the holder finds the cancel at its next
		// heartbeat.
		return r.st.Notify(ctx, tx, controlChannel, "cancel:"+id.String())
	})
	if err != nil {
		return nil, err
	}
	r.publishAfter(ctx, after)
	r.cancelRun(id, ErrCanceled) // a local run stops at once
	return ep, nil
}

func (r *Runner) scopeOf(p episodes.CreateParams) store.ActorScope {
	a := store.ActorScope{ActorID: p.ActorID, Stack: p.SourceStack, Env: p.SourceEnv}
	if a.Stack == "" {
		a.Stack = r.config.Stack
	}
	if a.Env == "" {
		a.Env = r.config.Env
	}
	return a
}

// actorKnown reports whether some live node that can claim the episode
// registered its actor, or the actor has a definition. Actors registered
// here, and answers once found true, are not asked again (a node that dies
// later leaves a backlog, which the Sweeper reports). The query runs in
// the caller's transaction: a pool of one connection must not deadlock.
// An unknown actor is logged once per actor and scope.
func (r *Runner) actorKnown(ctx context.Context, tx episodes.Executor, p episodes.CreateParams) (bool, error) {
	a := r.scopeOf(p)
	r.mu.Lock()
	_, local := r.actors[a.ActorID]
	known := local && a.Stack == r.config.Stack && a.Env == r.config.Env
	known = known || r.knownActors[a]
	r.mu.Unlock()
	if known || dbx.CheckName("actor", a.ActorID, true) != nil || dbx.CheckName("stack", a.Stack, false) != nil || dbx.CheckName("env", a.Env, false) != nil {
		return true, nil // Create refuses a malformed id or scope, saying why
	}
	known, err := r.st.ActorKnown(ctx, tx, a)
	if err != nil {
		return false, fmt.Errorf("enqueue: checking that actor %q is known: %w", a.ActorID, dbx.Explain(err))
	}
	r.mu.Lock()
	warned := r.warnedActors[a]
	if known {
		r.knownActors[a] = true
	} else {
		r.warnedActors[a] = true
	}
	r.mu.Unlock()
	if !known && !warned {
		r.logger.WarnContext(ctx, "revenant: enqueued an episode of an actor that no live node in its scope has registered and that has no definition; it stays pending until one does (a typo?)",
			slog.String("actor", a.ActorID), slog.String("stack", a.Stack), slog.String("env", a.Env))
	}
	return known, nil
}
