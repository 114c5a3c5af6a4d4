package recovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/google/uuid"

	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/internal/safe"
	"github.com/revenant-go/revenant/internal/store"
)

// The ResolvePolicy path: each batch is locked in a transaction, the
// callback decides per episode, and the decisions are applied before the
// transaction commits. If the sweeper dies mid-batch, the transaction
// rolls back and nothing changed.

// callback asks ResolvePolicy, refusing values other than Restart or Fail.
// A panic in it is that episode's error: the episode is left untouched and
// reported, and the sweep goes on.
func (c *config) callback(ctx context.Context, ep *episodes.Episode) (Policy, error) {
	var p Policy
	err := safe.Call(func() error {
		var err error
		p, err = c.ResolvePolicy(ctx, ep)
		return err
	})
	var pe *safe.PanicError
	if errors.As(err, &pe) {
		c.Logger.ErrorContext(ctx, "revenant: ResolvePolicy panicked", slog.String("episode", ep.ID.String()),
			slog.Any("panic", pe.Value), slog.String("stack", pe.Stack))
		err = fmt.Errorf("%w: ResolvePolicy panicked: %v", ErrBadPolicy, pe.Value)
	}
	if err == nil && !p.Valid() {
		err = fmt.Errorf("%w: ResolvePolicy returned %q", ErrBadPolicy, p)
	}
	return p, err
}

// decide asks ResolvePolicy about each listed orphan. Every listed id goes
// into decided, which later batches of the pass leave out; refusals are
// counted, reported and logged, and left untouched.
func (c *config) decide(ctx context.Context, orphans []store.Orphan, res *Result, decided *[]uuid.UUID) []store.Decision {
	var out []store.Decision
	for _, o := range orphans {
		ep := (*episodes.Episode)(o.Episode)
		*decided = append(*decided, ep.ID)
		p, err := c.callback(ctx, ep)
		if err != nil {
			res.Skipped++
			res.Errors = append(res.Errors, EpisodeError{EpisodeID: ep.ID, ActorID: ep.ActorID, Err: err})
			c.Logger.ErrorContext(ctx, "revenant: sweep leaves orphan untouched", slog.String("episode", ep.ID.String()), slog.Any("error", err))
			continue
		}
		out = append(out, store.Decision{ID: ep.ID, ClaimToken: ep.ClaimToken, Policy: string(p), Source: SourceCallback, Reason: o.Reason})
	}
	return out
}

func sweepWithCallback(ctx context.Context, db conn, c *config, res *Result) error {
	decided := []uuid.UUID{}
	for {
		n, err := callbackBatch(ctx, db, c, res, &decided)
		if err != nil {
			return err
		}
		if n < c.BatchSize {
			return nil
		}
	}
}

func callbackBatch(ctx context.Context, db conn, c *config, res *Result, decided *[]uuid.UUID) (int, error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("sweep: beginning batch: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	orphans, err := c.st.OrphanLock(ctx, tx, c.orphans(), *decided, c.BatchSize)
	if err != nil {
		return 0, fmt.Errorf("sweep: listing orphans: %w", err)
	}
	listed := make(map[uuid.UUID]*store.Orphan, len(orphans))
	for i := range orphans {
		listed[orphans[i].Episode.ID] = &orphans[i]
	}
	// Refusals stay reported even if the batch fails.
	decisions := c.decide(ctx, orphans, res, decided)
	before := *res
	var events []Event
	if len(decisions) > 0 {
		recovered, err := c.st.OrphanApply(ctx, tx, decisions)
		if err != nil {
			return 0, fmt.Errorf("sweep: recovering a batch: %w", err)
		}
		events = c.count(ctx, res, recovered, listed)
		if err := c.wake(ctx, tx, events); err != nil {
			*res = before
			return 0, err
		}
	}
	if err := tx.Commit(); err != nil {
		*res = before
		return 0, fmt.Errorf("sweep: committing batch: %w", err)
	}
	c.emit(ctx, events) // after commit
	return len(orphans), nil
}
