package runner

import (
	"context"
	"fmt"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"

	"github.com/revenant-go/revenant/bus"
	"github.com/revenant-go/revenant/episodes"
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
	res, err := r.store.CreateTx(ctx, tx, p)
	if err != nil {
		return nil, err
	}
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
