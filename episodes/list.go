package episodes

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/revenant-go/revenant/internal/dbx"
	"github.com/revenant-go/revenant/internal/store"
)

// ListParams filters and pages List. Empty fields do not filter.
type ListParams struct {
	// Statuses keeps episodes in any of these statuses.
	Statuses []Status
	ActorID  string
	// Stack and Env match SourceStack and SourceEnv exactly.
	Stack string
	Env   string
	// WorkflowInstanceID keeps the episodes of one workflow instance.
	WorkflowInstanceID uuid.UUID
	// IncludeArchived also returns archived episodes.
	IncludeArchived bool
	// ErrorClass keeps episodes whose (last) error has this class.
	ErrorClass string
	// FinishedAfter and FinishedBefore bound the finish time (inclusive,
	// exclusive); zero is unbounded.
	FinishedAfter, FinishedBefore time.Time

	deadLetters bool // set by DeadLetters
	// After is the cursor: pass the previous page's Next to continue.
	After uuid.UUID
	// Limit is the page size. Defaults to ListLimitDefault; at most
	// ListLimitMax.
	Limit int
}

// ListResult is one page of episodes in creation (id) order.
type ListResult struct {
	Episodes []*Episode
	// Next is the cursor for the following page, or uuid.Nil at the end.
	Next uuid.UUID
	// Skipped lists rows of the page that could not be read (each Err
	// wraps ErrCorruptRow); the other rows are returned as usual.
	Skipped []RowError
}

// RowError is a row that could not be read, by id (uuid.Nil when the id
// itself is unreadable).
type RowError struct {
	ID  uuid.UUID
	Err error
}

func (e RowError) Error() string { return fmt.Sprintf("episode %s: %v", e.ID, e.Err) }

// List returns episodes matching p, oldest first, with keyset paging.
func (s *Store) List(ctx context.Context, p ListParams) (*ListResult, error) {
	return s.ListTx(ctx, s.db, p)
}

// ListTx is List inside the caller's transaction.
func (s *Store) ListTx(ctx context.Context, tx Executor, p ListParams) (*ListResult, error) {
	if err := dbx.CheckExecutor("episodes.ListTx", tx); err != nil {
		return nil, err
	}
	limit := p.Limit
	switch {
	case limit == 0:
		limit = ListLimitDefault
	case limit < 0 || limit > ListLimitMax:
		return nil, fmt.Errorf("%w: ListParams.Limit is %d; use 1..%d or 0 for the default (%d)", ErrInvalidInput, limit, ListLimitMax, ListLimitDefault)
	}
	for _, st := range p.Statuses {
		if !st.Valid() {
			return nil, fmt.Errorf("%w: ListParams.Statuses has unknown status %q", ErrInvalidInput, st)
		}
	}
	// One extra row tells whether another page follows.
	rows, err := s.st.EpisodeList(ctx, tx, &store.EpisodeListParams{Statuses: p.Statuses, ActorID: p.ActorID,
		Stack: p.Stack, Env: p.Env, WorkflowInstanceID: p.WorkflowInstanceID, IncludeArchived: p.IncludeArchived,
		ErrorClass: p.ErrorClass, FinishedAfter: p.FinishedAfter, FinishedBefore: p.FinishedBefore,
		NoWorkflowSteps: p.deadLetters, After: p.After, Limit: limit + 1})
	if err != nil {
		return nil, fmt.Errorf("listing episodes: %w", dbx.Explain(err))
	}
	res := &ListResult{}
	for i, row := range rows {
		if i == limit {
			break
		}
		if row.Err != nil {
			res.Skipped = append(res.Skipped, RowError{ID: row.ID, Err: row.Err})
			continue
		}
		res.Episodes = append(res.Episodes, (*Episode)(row.Episode))
	}
	ids := rows
	if len(ids) > limit {
		res.Next = ids[limit-1].ID
	}
	return res, nil
}

// DeadLetters lists the dead-letter list: failed, non-archived episodes
// (attempts exhausted, failed permanently, or dead-lettered by a sweep),
// filtered by p's actor, error class and finish time like List; p's
// Statuses are ignored. Workflow steps are left out: their workflow
// decides about them (List them by WorkflowInstanceID). Put dead letters
// back with Requeue or RequeueMatching, or discard them with Archive.
func (s *Store) DeadLetters(ctx context.Context, p ListParams) (*ListResult, error) {
	p.Statuses, p.IncludeArchived, p.deadLetters = []Status{StatusFailed}, false, true
	return s.ListTx(ctx, s.db, p)
}
