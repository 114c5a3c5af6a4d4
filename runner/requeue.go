package runner

import (
	"context"
	"fmt"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"

	"github.com/revenant-go/revenant/bus"
	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/internal/dbx"
	"github.com/revenant-go/revenant/internal/store"
)

// Requeue puts a failed (or canceled) episode back to pending with fresh
// attempts (see episodes.Store.Requeue), publishes episode.requeued and
// wakes runners. opts.By defaults to this node's id.
func (r *Runner) Requeue(ctx context.Context, id uuid.UUID, opts episodes.RequeueOptions) (*episodes.Episode, error) {
	var ep *episodes.Episode
	err := r.requeueIn(ctx, func(tx *sqlx.Tx) ([]*episodes.Episode, error) {
		var err error
		ep, err = r.RequeueTx(ctx, tx, id, opts)
		return nil, err
	})
	return ep, err
}

// RequeueTx is Requeue inside the caller's transaction: the episode is
// requeued, and runners woken, only if it commits. With a bus that is not
// transactional, the event is published at once.
func (r *Runner) RequeueTx(ctx context.Context, tx episodes.Executor, id uuid.UUID, opts episodes.RequeueOptions) (*episodes.Episode, error) {
	ep, err := r.store.RequeueTx(ctx, tx, id, r.requeueBy(opts))
	if err != nil {
		return nil, err
	}
	return ep, r.afterRequeue(ctx, tx, []*episodes.Episode{ep})
}

// RequeueMatching requeues up to filter.Limit failed episodes matching
// filter (see episodes.Store.RequeueMatching) and returns them.
func (r *Runner) RequeueMatching(ctx context.Context, filter episodes.RequeueFilter, opts episodes.RequeueOptions) ([]*episodes.Episode, error) {
	var eps []*episodes.Episode
	err := r.requeueIn(ctx, func(tx *sqlx.Tx) ([]*episodes.Episode, error) {
		var err error
		eps, err = r.RequeueMatchingTx(ctx, tx, filter, opts)
		return eps, err
	})
	return eps, err
}

// RequeueMatchingTx is RequeueMatching inside the caller's transaction.
func (r *Runner) RequeueMatchingTx(ctx context.Context, tx episodes.Executor, filter episodes.RequeueFilter, opts episodes.RequeueOptions) ([]*episodes.Episode, error) {
	eps, err := r.store.RequeueMatchingTx(ctx, tx, filter, r.requeueBy(opts))
	if err != nil {
		return nil, err
	}
	return eps, r.afterRequeue(ctx, tx, eps)
}

func (r *Runner) requeueBy(opts episodes.RequeueOptions) episodes.RequeueOptions {
	if opts.By == "" {
		opts.By = r.NodeID()
	}
	return opts
}

func (r *Runner) requeueIn(ctx context.Context, fn func(tx *sqlx.Tx) ([]*episodes.Episode, error)) error {
	if err := dbx.InTx(ctx, r.db, func(tx *sqlx.Tx) error { _, err := fn(tx); return err }); err != nil {
		return err
	}
	r.signal()
	return nil
}

// afterRequeue wakes runners of the requeued episodes' actors on commit
// and publishes their events.
func (r *Runner) afterRequeue(ctx context.Context, tx episodes.Executor, eps []*episodes.Episode) error {
	if len(eps) == 0 {
		return nil
	}
	seen := map[string]bool{}
	var actors []string
	evs := make([]bus.Event, len(eps))
	for i, ep := range eps {
		if !seen[ep.ActorID] {
			seen[ep.ActorID] = true
			actors = append(actors, ep.ActorID)
		}
		evs[i] = eventOf(bus.EpisodeRequeued, ep)
	}
	if err := r.st.NotifyEach(ctx, tx, store.PendingChannel, actors); err != nil {
		return fmt.Errorf("requeue: notify: %w", err)
	}
	if r.config.Bus == nil {
		return nil
	}
	if bus.Transactional(r.config.Bus) {
		return r.config.Bus.PublishTx(ctx, tx, evs...)
	}
	r.publishAfter(ctx, evs)
	return nil
}
