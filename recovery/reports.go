package recovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/jmoiron/sqlx"

	"github.com/revenant-go/revenant"
	"github.com/revenant-go/revenant/internal/dbx"
	"github.com/revenant-go/revenant/internal/dialect"
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
	scope, scopeArgs := c.scope(2)
	args := append([]any{c.StaleAfter.Milliseconds()}, scopeArgs...)
	args = append(args, DryRunLimitDefault)
	query := exhaustedOrphansSQL(scope, len(args))
	if c.sqlite {
		query = sqliteExhaustedOrphansSQL(scope, len(args))
	}
	found, err := listExhausted(ctx, db, query, args...)
	if err != nil {
		return fmt.Errorf("sweep: listing exhausted orphans: %w", err)
	}
	for _, e := range found {
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

func listExhausted(ctx context.Context, ex revenant.Executor, query string, args ...any) ([]EpisodeError, error) {
	rows, err := ex.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, dbx.Explain(err)
	}
	defer rows.Close()
	var out []EpisodeError
	for rows.Next() {
		e := EpisodeError{Err: ErrExhausted}
		if err := rows.Scan(&e.EpisodeID, &e.ActorID); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// exhausted lists open episodes in scope whose counters are at their
// maximum (the Sweeper's report).
func exhausted(ctx context.Context, ex revenant.Executor, c *config) ([]EpisodeError, error) {
	scope, args := c.scope(1)
	return listExhausted(ctx, ex, exhaustedSQL(scope), args...)
}

func markDeadNodes(ctx context.Context, db conn, c *config, res *Result) error {
	query := markDeadNodesSQL
	if c.sqlite {
		query = sqliteMarkDeadNodesSQL
	}
	rows, err := db.QueryContext(ctx, query)
	if err != nil {
		return fmt.Errorf("sweep: marking dead nodes: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, reason string
		if err := rows.Scan(&id, &reason); err != nil {
			return fmt.Errorf("sweep: marking dead nodes: %w", err)
		}
		res.DeadNodes = append(res.DeadNodes, id)
	}
	return rows.Err()
}

// DeadOwnersExist reports, with one cheap query, whether any node is dead
// while still owning running episodes. The Sweeper polls it to recover a
// crashed node's work within about a second.
func DeadOwnersExist(ctx context.Context, db *sqlx.DB) (bool, error) {
	if db == nil {
		return false, ErrNilDB
	}
	var exists bool
	if err := db.QueryRowContext(ctx, deadOwnersExistQuery(dialect.Of(db) == dialect.SQLite)).Scan(&exists); err != nil {
		return false, fmt.Errorf("checking for dead nodes: %w", err)
	}
	return exists, nil
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
	c.sqlite = dialect.Of(db) == dialect.SQLite
	return unclaimable(ctx, db, c)
}

func unclaimable(ctx context.Context, db revenant.Executor, c *config) ([]Backlog, error) {
	scope, args := c.scope(1)
	query := unclaimableSQL(scope)
	if c.sqlite {
		query = sqliteUnclaimableSQL(scope)
	}
	rows, err := db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("listing unclaimable episodes: %w", err)
	}
	defer rows.Close()
	var out []Backlog
	for rows.Next() {
		var b Backlog
		if err := rows.Scan(&b.ActorID, &b.Pending); err != nil {
			return nil, fmt.Errorf("listing unclaimable episodes: %w", err)
		}
		out = append(out, b)
	}
	return out, rows.Err()
}

// PruneNodes deletes rows of nodes stopped for over a day that own no
// running episode.
func PruneNodes(ctx context.Context, db *sqlx.DB) (int64, error) {
	if db == nil {
		return 0, ErrNilDB
	}
	res, err := db.ExecContext(ctx, pruneNodesQuery(dialect.Of(db) == dialect.SQLite))
	if err != nil {
		return 0, fmt.Errorf("pruning nodes: %w", err)
	}
	return res.RowsAffected()
}

func deadOwnersExistQuery(sqlite bool) string {
	if sqlite {
		return sqliteDeadOwnersExistSQL
	}
	return deadOwnersExistSQL
}

func pruneNodesQuery(sqlite bool) string {
	if sqlite {
		return sqlitePruneNodesSQL
	}
	return pruneNodesSQL
}
