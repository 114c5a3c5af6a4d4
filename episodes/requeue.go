package episodes

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"

	"github.com/revenant-go/revenant/internal/dbx"
	"github.com/revenant-go/revenant/internal/store"
)

// RequeueOptions says how failed episodes go back to work.
type RequeueOptions struct {
	// RunAt or Delay schedules them (as CreateParams does); by default
	// they are due at once.
	RunAt time.Time
	Delay time.Duration
	// Clean clears the journal so that every step runs again. By default
	// completed steps still count (their recorded outputs are replayed)
	// and only a step that failed permanently runs again.
	Clean bool
	// By and Reason are recorded in each episode's requeue history (for
	// example an operator's name and a ticket). Optional.
	By, Reason string
}

func (o *RequeueOptions) validate() error {
	if !o.RunAt.IsZero() && o.Delay != 0 {
		return fmt.Errorf("%w: RequeueOptions sets both RunAt and Delay; set one", ErrInvalidInput)
	}
	if o.Delay < 0 || o.Delay > MaxScheduleDelay {
		return fmt.Errorf("%w: RequeueOptions.Delay is %s; use 0 up to %s", ErrInvalidInput, o.Delay, MaxScheduleDelay)
	}
	if err := dbx.CheckText("RequeueOptions.By", o.By, dbx.MaxNameBytes); err != nil {
		return err
	}
	return dbx.CheckText("RequeueOptions.Reason", o.Reason, dbx.MaxKeyBytes)
}

// RequeueFilter selects failed episodes to requeue in bulk. Empty fields
// do not filter.
type RequeueFilter struct {
	ActorID    string
	ErrorClass string
	// FinishedAfter and FinishedBefore bound the finish time (inclusive,
	// exclusive), as in ListParams.
	FinishedAfter, FinishedBefore time.Time
	// IncludeCanceled requeues canceled episodes too.
	IncludeCanceled bool
	// Limit bounds how many are requeued. Defaults to ListLimitDefault;
	// at most ListLimitMax. Call again for more.
	Limit int
}

// Requeue puts a failed (or canceled) episode back to pending with fresh
// attempts, records the requeue in its history (Episode.Requeues) and
// returns it. It is the way out of the dead-letter list. A workflow step's
// episode cannot be requeued (resume or restart its workflow instead), nor
// an archived one.
func (s *Store) Requeue(ctx context.Context, id uuid.UUID, opts RequeueOptions) (*Episode, error) {
	var ep *Episode
	err := dbx.InTx(ctx, s.db, func(tx *sqlx.Tx) error {
		var err error
		ep, err = s.RequeueTx(ctx, tx, id, opts)
		return err
	})
	return ep, err
}

// RequeueTx is Requeue inside the caller's transaction.
func (s *Store) RequeueTx(ctx context.Context, tx Executor, id uuid.UUID, opts RequeueOptions) (*Episode, error) {
	eps, err := s.requeue(ctx, tx, &store.RequeueParams{IDs: []uuid.UUID{id}, Statuses: []Status{StatusFailed, StatusCanceled}}, opts)
	if err != nil {
		return nil, err
	}
	if len(eps) == 1 {
		return eps[0], nil
	}
	cur, err := s.st.EpisodeGet(ctx, tx, id)
	if errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("requeue episode %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("requeue episode %s: %w", id, dbx.Explain(err))
	}
	why := ""
	switch {
	case cur.ArchivedAt != nil:
		why = " (it is archived)"
	case cur.WorkflowInstanceID != uuid.Nil:
		why = " (it is a step of workflow instance " + cur.WorkflowInstanceID.String() + "; resume or restart the workflow instead)"
	}
	return nil, fmt.Errorf("%w%s", &TransitionError{ID: id, Op: "requeue", From: []Status{StatusFailed, StatusCanceled}, Current: cur.Status}, why)
}

// RequeueMatching requeues up to filter.Limit failed episodes matching
// filter, in id order, and returns them.
func (s *Store) RequeueMatching(ctx context.Context, filter RequeueFilter, opts RequeueOptions) ([]*Episode, error) {
	var eps []*Episode
	err := dbx.InTx(ctx, s.db, func(tx *sqlx.Tx) error {
		var err error
		eps, err = s.RequeueMatchingTx(ctx, tx, filter, opts)
		return err
	})
	return eps, err
}

// RequeueMatchingTx is RequeueMatching inside the caller's transaction.
func (s *Store) RequeueMatchingTx(ctx context.Context, tx Executor, filter RequeueFilter, opts RequeueOptions) ([]*Episode, error) {
	limit := filter.Limit
	if limit == 0 {
		limit = ListLimitDefault
	}
	if limit < 0 || limit > ListLimitMax {
		return nil, fmt.Errorf("%w: RequeueFilter.Limit is %d; use 1..%d", ErrInvalidInput, filter.Limit, ListLimitMax)
	}
	for _, f := range []struct{ name, v string }{{"RequeueFilter.ActorID", filter.ActorID}, {"RequeueFilter.ErrorClass", filter.ErrorClass}} {
		if err := dbx.CheckName(f.name, f.v, false); err != nil {
			return nil, err
		}
	}
	statuses := []Status{StatusFailed}
	if filter.IncludeCanceled {
		statuses = append(statuses, StatusCanceled)
	}
	return s.requeue(ctx, tx, &store.RequeueParams{Statuses: statuses, ActorID: filter.ActorID, ErrorClass: filter.ErrorClass,
		FinishedAfter: filter.FinishedAfter, FinishedBefore: filter.FinishedBefore, Limit: limit}, opts)
}

func (s *Store) requeue(ctx context.Context, tx Executor, p *store.RequeueParams, opts RequeueOptions) ([]*Episode, error) {
	if err := dbx.CheckExecutor("episodes requeue", tx); err != nil {
		return nil, err
	}
	if err := opts.validate(); err != nil {
		return nil, err
	}
	p.RunAt, p.DelayMillis, p.Clean, p.By, p.Reason = opts.RunAt, opts.Delay.Milliseconds(), opts.Clean, opts.By, opts.Reason
	rows, err := s.st.EpisodeRequeue(ctx, tx, p)
	if err != nil {
		return nil, fmt.Errorf("requeue: %w", dbx.Explain(err))
	}
	out := make([]*Episode, len(rows))
	for i, r := range rows {
		out[i] = (*Episode)(r)
	}
	return out, nil
}
