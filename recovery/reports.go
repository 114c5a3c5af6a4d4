package recovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/jmoiron/sqlx"

	"github.com/revenant-go/revenant/internal/dbx"
	"github.com/revenant-go/revenant/internal/store"
	"github.com/revenant-go/revenant/internal/store/backend"
)

// What sweeps leave alone and report (orphans whose counters are at their
// maximum, pending work no live node can claim), and the bookkeeping of
// nodes (dead ones marked stopped, stopped ones pruned).

// ErrExhausted means an orphan's claim token or attempt count is at its
// maximum, so recovering it (which bumps both) is impossible. It is left
// as it is and reported; fail or fix it by hand.
var ErrExhausted = errors.New("revenant: the episode's claim token or attempt count is at its maximum; recovery cannot bump it: fail the episode or fix its row by hand")

// reportExhausted adds the orphans the sweep had to leave out because
// their counters are at their maximum: skipped, with their ids.
func reportExhausted(ctx context.Context, db conn, c *config, res *Result) error {
	found, err := c.st.OrphanExhausted(ctx, db, c.orphans(), DryRunLimitDefault)
	if err != nil {
		return fmt.Errorf("sweep: listing exhausted orphans: %w", dbx.Explain(err))
	}
	for _, ref := range found {
		e := EpisodeError{EpisodeID: ref.ID, ActorID: ref.ActorID, Err: ErrExhausted}
		res.Skipped++
		res.Errors = append(res.Errors, e)
		if c.DryRun {
			res.Plans = append(res.Plans, Plan{EpisodeID: e.EpisodeID, ActorID: e.ActorID, Action: ActionSkip, Err: e.Err})
		}
		c.Logger.ErrorContext(ctx, "revenant: sweep leaves an orphan untouched: its counters are at their maximum",
			slog.String("episode", e.EpisodeID.String()), slog.String("actor", e.ActorID))
	}
	return nil
}

// exhaustedReportLimit bounds the Sweeper's report of exhausted episodes.
const exhaustedReportLimit = 100

// exhausted lists open episodes in scope whose counters are at their
// maximum (the Sweeper's report).
func exhausted(ctx context.Context, ex store.Querier, c *config) ([]EpisodeError, error) {
	refs, err := c.st.EpisodeExhausted(ctx, ex, c.scope(), exhaustedReportLimit)
	if err != nil {
		return nil, dbx.Explain(err)
	}
	out := make([]EpisodeError, len(refs))
	for i, r := range refs {
		out[i] = EpisodeError{EpisodeID: r.ID, ActorID: r.ActorID, Err: ErrExhausted}
	}
	return out, nil
}

func markDeadNodes(ctx context.Context, db conn, c *config, res *Result) error {
	mark := c.st.NodeMarkDead
	if c.DryRun {
		mark = c.st.NodeListDead // what the real sweep would mark
	}
	dead, err := mark(ctx, db)
	if err != nil {
		return fmt.Errorf("sweep: marking dead nodes: %w", err)
	}
	for _, d := range dead {
		res.DeadNodes = append(res.DeadNodes, d.ID)
	}
	return nil
}

// Backlog is pending work of one actor that no live node has registered.
type Backlog struct {
	ActorID string
	Pending int
}

// Unclaimable lists, per actor, pending episodes in scope that no live node
// has registered an actor for. They are left as they are (never lost); the
// Sweeper logs a warning for each.
func Unclaimable(ctx context.Context, db *sqlx.DB, opts *Options) ([]Backlog, error) {
	if db == nil {
		return nil, ErrNilDB
	}
	c, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	c.st = backend.For(db)
	return unclaimable(ctx, db, c)
}

func unclaimable(ctx context.Context, db store.Querier, c *config) ([]Backlog, error) {
	rows, err := c.st.EpisodeUnclaimable(ctx, db, c.scope())
	if err != nil {
		return nil, fmt.Errorf("listing unclaimable episodes: %w", dbx.Explain(err))
	}
	out := make([]Backlog, len(rows))
	for i, r := range rows {
		out[i] = Backlog{ActorID: r.ActorID, Pending: r.Pending}
	}
	return out, nil
}

// PruneNodes deletes rows of nodes stopped for over a day that own no
// running episode.
func PruneNodes(ctx context.Context, db *sqlx.DB) (int64, error) {
	if db == nil {
		return 0, ErrNilDB
	}
	n, err := backend.For(db).NodePrune(ctx, db)
	if err != nil {
		return 0, fmt.Errorf("pruning nodes: %w", dbx.Explain(err))
	}
	return n, nil
}
