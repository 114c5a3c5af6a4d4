package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/google/uuid"

	"github.com/revenant-go/revenant/internal/schema"
	"github.com/revenant-go/revenant/internal/store"
)

const cols = store.EpisodeColumns

const episodeInsertSQL = `INSERT INTO revenant_episodes (id, actor_id, expectation, input, max_attempts, dedupe_key,
	source_stack, source_env, workflow_instance_id, workflow_step_id, metadata, run_at, retry_policy)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, coalesce($11::jsonb, '{}'::jsonb),
	coalesce($12::timestamptz, now() + $13::bigint * interval '1 millisecond'), $14)
ON CONFLICT ` + schema.DedupeConflictTarget + ` DO NOTHING
RETURNING ` + cols

const episodeGetSQL = `SELECT ` + cols + ` FROM revenant_episodes WHERE id = $1`

// episodeGetByDedupeKeySQL finds the live episode holding a key in one
// actor and scope: keys of other actors, stacks or envs are other episodes.
const episodeGetByDedupeKeySQL = `SELECT ` + cols + `
FROM revenant_episodes
WHERE actor_id = $1 AND coalesce(source_stack, '') = coalesce($2, '') AND coalesce(source_env, '') = coalesce($3, '')
	AND dedupe_key = $4 AND archived_at IS NULL`

const episodeStateSQL = `SELECT status, claim_token FROM revenant_episodes WHERE id = $1`

// Each transition is one compare-and-set: the WHERE clause re-checks the
// allowed source statuses (and the claim token for a holder's writes).
var transitionSQL = map[store.Transition]string{
	store.TransitionClaim: `UPDATE revenant_episodes
SET status = 'running', owner_node = $2, claim_token = claim_token + 1, attempts = attempts + 1,
	started_at = now(), last_activity_at = now(), phase = NULL
WHERE id = $1 AND status = 'pending' AND run_at <= now()
RETURNING ` + cols,
	// A success clears the error a retried attempt left: a done episode
	// has none.
	store.TransitionComplete: `UPDATE revenant_episodes
SET status = 'done', result = $3, error_class = NULL, error_detail = NULL, finished_at = now(), last_activity_at = now()
WHERE id = $1 AND claim_token = $2 AND status = 'running'
RETURNING ` + cols,
	store.TransitionFail: `UPDATE revenant_episodes
SET status = 'failed', error_class = $3, error_detail = $4, finished_at = now(), last_activity_at = now()
WHERE id = $1 AND claim_token = $2 AND status = 'running'
RETURNING ` + cols,
	store.TransitionBlock: `UPDATE revenant_episodes
SET status = 'blocked', phase = $3, last_activity_at = now()
WHERE id = $1 AND claim_token = $2 AND status = 'running'
RETURNING ` + cols,
	// A release hands a claimed episode back, e.g. on graceful shutdown.
	// The attempt is given back too: a clean stop is not a crash.
	store.TransitionRelease: `UPDATE revenant_episodes
SET status = 'pending', owner_node = NULL, attempts = greatest(attempts - 1, 0), last_activity_at = now()
WHERE id = $1 AND claim_token = $2 AND status = 'running'
RETURNING ` + cols,
	store.TransitionSetPhase: `UPDATE revenant_episodes
SET phase = $3, last_activity_at = now()
WHERE id = $1 AND claim_token = $2 AND status = 'running'
RETURNING ` + cols,
	store.TransitionResume: `UPDATE revenant_episodes
SET status = 'pending', owner_node = NULL, phase = NULL, last_activity_at = now()
WHERE id = $1 AND status = 'blocked'
RETURNING ` + cols,
	store.TransitionCancel: `UPDATE revenant_episodes
SET status = 'canceled', error_class = 'canceled', error_detail = $2,
	cancel_requested_at = coalesce(cancel_requested_at, now()), finished_at = now()
WHERE id = $1 AND status IN ('pending', 'running', 'blocked')
RETURNING ` + cols,
	// A retry hands the episode back to wait for its next attempt (already
	// counted by the claim), due after the backoff by the database clock.
	store.TransitionRetry: `UPDATE revenant_episodes
SET status = 'pending', owner_node = NULL, phase = NULL, error_class = $3, error_detail = $4,
	run_at = now() + $5::bigint * interval '1 millisecond', last_activity_at = now()
WHERE id = $1 AND claim_token = $2 AND status = 'running'
RETURNING ` + cols,
	store.TransitionArchive: `UPDATE revenant_episodes
SET archived_at = coalesce(archived_at, now())
WHERE id = $1 AND status IN ('done', 'failed', 'canceled')
RETURNING ` + cols,
}

const episodeListPrefix = `SELECT ` + cols + ` FROM revenant_episodes WHERE `

// EpisodeInsert implements store.Store.
func (Store) EpisodeInsert(ctx context.Context, q store.Querier, p *store.EpisodeInsertParams) (*store.Episode, error) {
	var runAt any
	if !p.RunAt.IsZero() {
		runAt = p.RunAt
	}
	return store.RunInsert(ctx, q, episodeInsertSQL, p, runAt)
}

// EpisodeGet implements store.Store.
func (Store) EpisodeGet(ctx context.Context, q store.Querier, id uuid.UUID) (*store.Episode, error) {
	return store.ScanEpisode(q.QueryRowContext(ctx, episodeGetSQL, id))
}

// EpisodeGetByDedupeKey implements store.Store.
func (Store) EpisodeGetByDedupeKey(ctx context.Context, q store.Querier, actorID, stack, env, key string) (*store.Episode, error) {
	return store.ScanEpisode(q.QueryRowContext(ctx, episodeGetByDedupeKeySQL, actorID, store.NullString(stack), store.NullString(env), key))
}

// EpisodeState implements store.Store.
func (Store) EpisodeState(ctx context.Context, q store.Querier, id uuid.UUID) (string, int64, error) {
	return store.EpisodeState(ctx, q, episodeStateSQL, id)
}

// EpisodeTransition implements store.Store.
func (Store) EpisodeTransition(ctx context.Context, q store.Querier, p *store.TransitionParams) (*store.Episode, error) {
	if len(p.Events) == 0 {
		return store.RunTransition(ctx, q, transitionSQL, p)
	}
	move, ok := transitionSQL[p.Move]
	if !ok {
		return nil, errors.New("store: unknown transition")
	}
	// The move and its events in one statement: the events are inserted
	// only if the move matched its row. No NOTIFY: the caller announces
	// them after the commit, so that this commit does not hold the NOTIFY
	// lock (which serializes every notifying commit) through its flush.
	cte, args := quietOutboxCTE("ev", "EXISTS (SELECT 1 FROM u)", store.TransitionArgs(p), p.Events)
	query := "WITH u AS (\n" + move + "\n),\n" + cte + "\nSELECT " + store.QualifiedEpisodeColumns("u") + " FROM u"
	return store.ScanEpisode(q.QueryRowContext(ctx, query, args...))
}

// EpisodeList implements store.Store.
func (Store) EpisodeList(ctx context.Context, q store.Querier, p *store.EpisodeListParams) ([]store.EpisodeListRow, error) {
	return store.RunList(ctx, q, episodeListPrefix, timeArg, p)
}

// timeArg passes a time as it is: lib/pq and pgx send timestamptz.
func timeArg(t time.Time) any { return t }
