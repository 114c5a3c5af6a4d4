package episodes

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/google/uuid"

	"github.com/revenant-go/revenant"
	"github.com/revenant-go/revenant/internal/dbx"
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
func (s *Store) ListTx(ctx context.Context, tx revenant.Executor, p ListParams) (*ListResult, error) {
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
	var (
		where []string
		args  []any
	)
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if len(p.Statuses) > 0 {
		ph := make([]string, len(p.Statuses))
		for i, st := range p.Statuses {
			if !st.Valid() {
				return nil, fmt.Errorf("%w: ListParams.Statuses has unknown status %q", ErrInvalidInput, st)
			}
			ph[i] = arg(string(st))
		}
		where = append(where, "status IN ("+strings.Join(ph, ", ")+")")
	}
	if p.ActorID != "" {
		where = append(where, "actor_id = "+arg(p.ActorID))
	}
	if p.Stack != "" {
		where = append(where, "source_stack = "+arg(p.Stack))
	}
	if p.Env != "" {
		where = append(where, "source_env = "+arg(p.Env))
	}
	if p.WorkflowInstanceID != uuid.Nil {
		where = append(where, "workflow_instance_id = "+arg(p.WorkflowInstanceID))
	}
	if !p.IncludeArchived {
		where = append(where, "archived_at IS NULL")
	}
	if p.After != uuid.Nil {
		where = append(where, "id > "+arg(p.After))
	}
	if len(where) == 0 {
		where = append(where, "true")
	}
	// One extra row tells whether another page follows.
	query := s.q.listPrefix + strings.Join(where, " AND ") + " ORDER BY id LIMIT " + arg(limit+1)
	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("listing episodes: %w", dbx.Explain(err))
	}
	defer rows.Close()
	res := &ListResult{}
	// ids holds every row's id in order, readable or not, for the cursor.
	var ids []uuid.UUID
	for rows.Next() {
		ep, err := scanEpisode(rows)
		if errors.Is(err, ErrCorruptRow) {
			id := dbx.RowUUID(rows)
			ids = append(ids, id)
			if len(ids) <= limit {
				res.Skipped = append(res.Skipped, RowError{ID: id, Err: err})
			}
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("listing episodes: %w", err)
		}
		ids = append(ids, ep.ID)
		if len(ids) <= limit {
			res.Episodes = append(res.Episodes, ep)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing episodes: %w", dbx.Explain(err))
	}
	if len(ids) > limit {
		res.Next = ids[limit-1]
	}
	return res, nil
}
