package workflow

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/google/uuid"

	"github.com/revenant-go/revenant/internal/dbx"
	"github.com/revenant-go/revenant/internal/safe"
	"github.com/revenant-go/revenant/internal/store"
	"github.com/revenant-go/revenant/recovery"
)

// ReconcileWorkflows repairs running and blocked instances in scope that
// missed events: it replays the outcome of every running step whose episode
// is already terminal (the event was lost, or the engine was down), starts
// pending steps whose dependencies are all done and retries that are due,
// and finishes instances with nothing left to do. Replayed counts the
// instances it changed; Blocked those whose steps no longer match their
// registered definition (blocked with the reason, ErrDefinitionChanged);
// Skipped those it could not handle (unregistered workflow, corrupt row, a
// panic), each reported in Errors. Running it twice in a
// row changes nothing the second time.
//
// Call it through recovery.ReconcileWorkflows, after recovery.Sweep and
// after the workflows are registered.
func (e *Engine) ReconcileWorkflows(ctx context.Context, scope recovery.Scope) (*recovery.ReconcileResult, error) {
	e.warnUnknownActors(ctx)
	res := &recovery.ReconcileResult{}
	after := uuid.Nil
	for {
		ids, err := e.st.WorkflowOpen(ctx, e.db, store.Scope(scope), after, reconcileBatch)
		if err != nil {
			return res, fmt.Errorf("reconcile: listing open instances: %w", dbx.Explain(err))
		}
		for _, id := range ids {
			// One instance's panic (a step's Input function, a bad row) is
			// that instance's error; the others go on.
			var changed bool
			err := safe.Call(func() error {
				var err error
				changed, err = e.withInstance(ctx, id, false, func(t *txn) error {
					return reconcileOne(t)
				})
				return err
			})
			switch {
			case errors.Is(err, ErrDefinitionChanged):
				res.Blocked++
				res.Errors = append(res.Errors, fmt.Errorf("instance %s: %w", id, err))
				e.logger.ErrorContext(ctx, "revenant: workflow instance blocked: its definition changed", slog.String("instance", id.String()), slog.Any("error", err))
			case err != nil:
				if ctx.Err() != nil {
					return res, ctx.Err()
				}
				res.Skipped++
				res.Errors = append(res.Errors, fmt.Errorf("instance %s: %w", id, err))
				e.logger.WarnContext(ctx, "revenant: reconcile skipped an instance", slog.String("instance", id.String()), slog.Any("error", err))
			case changed:
				res.Replayed++
			}
		}
		if len(ids) < 500 {
			return res, nil
		}
		after = ids[len(ids)-1]
	}
}

// reconcileOne replays missed terminal outcomes of one locked instance and
// advances it, unless its definition changed.
func reconcileOne(t *txn) error {
	if err := t.checkDefinition(); err != nil {
		return err
	}
	for _, sid := range t.order {
		s := t.steps[sid]
		if s.Status == StepRunning {
			if _, err := t.applyTerminal(s.ID, s.EpisodeID); err != nil {
				return err
			}
		}
	}
	return t.advance()
}

var _ recovery.WorkflowReconciler = (*Engine)(nil)

// reconcileBatch is the page size of a reconciliation's instance listing.
const reconcileBatch = 500

// warnUnknownActors logs, once per actor, the registered workflows' step
// actors that no live node in the engine's scope has registered and that
// have no definition: their steps' episodes would stay pending. A runner
// whose Stack or Env differs from the engine's is the usual cause when
// wiring by hand (the client shares one scope). An actor found known, or
// warned about, is not asked about again: one query per step actor, not
// one per pass.
func (e *Engine) warnUnknownActors(ctx context.Context) {
	e.mu.RLock()
	steps := map[string][]string{} // actor -> "workflow/step"
	for _, d := range e.defs {
		for _, st := range d.Steps {
			if !e.knownActors[st.Actor] && !e.warnedActors[st.Actor] {
				steps[st.Actor] = append(steps[st.Actor], d.ID+"/"+st.ID)
			}
		}
	}
	e.mu.RUnlock()
	for actor, where := range steps {
		known, err := e.st.ActorKnown(ctx, e.db, store.ActorScope{ActorID: actor, Stack: e.config.Stack, Env: e.config.Env})
		if err != nil {
			return // the reconcile that follows reports the database's trouble
		}
		e.mu.Lock()
		warned := e.warnedActors[actor]
		if known {
			e.knownActors[actor] = true
		} else {
			e.warnedActors[actor] = true
		}
		e.mu.Unlock()
		if !known && !warned {
			e.logger.WarnContext(ctx, "revenant: workflow steps run an actor that no live node in the engine's scope has registered and that has no definition; their episodes stay pending until one does (a typo, or a runner with another Stack or Env than the engine?)",
				slog.String("actor", actor), slog.Any("steps", where), slog.String("stack", e.config.Stack), slog.String("env", e.config.Env))
		}
	}
}
