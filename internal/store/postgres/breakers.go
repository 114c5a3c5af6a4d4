package postgres

import (
	"context"
	"strconv"

	"github.com/google/uuid"

	"github.com/lib/pq"

	"github.com/revenant-go/revenant/internal/schema"
	"github.com/revenant-go/revenant/internal/store"
)

// Requeues, due times and circuit breakers.

// EpisodeRequeue implements store.Store. One statement: the rows are
// locked and re-checked (failed or canceled, not archived) by the UPDATE,
// and their failed journal entries go in the same statement.
func (Store) EpisodeRequeue(ctx context.Context, tx store.Querier, p *store.RequeueParams) ([]*store.Episode, error) {
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	where := store.RequeueFilter(p, arg, timeArg, func(ph string) string { return "id = ANY(" + ph + "::uuid[])" }, pq.Array(p.IDs))
	// By id, wait for a row another transaction holds; in bulk, skip it
	// (the next call takes it).
	limit := " FOR UPDATE"
	if len(p.IDs) == 0 {
		limit = " LIMIT " + arg(p.Limit) + " FOR UPDATE SKIP LOCKED"
	}
	var runAt any
	if !p.RunAt.IsZero() {
		runAt = p.RunAt
	}
	query := `WITH t AS (
	SELECT id FROM revenant_episodes WHERE ` + where + ` ORDER BY id` + limit + `
), u AS (
	UPDATE revenant_episodes e
	SET status = 'pending', attempts = 0, owner_node = NULL, phase = NULL, finished_at = NULL, cancel_requested_at = NULL,
		run_at = coalesce(` + arg(runAt) + `::timestamptz, now() + ` + arg(p.DelayMillis) + `::bigint * interval '1 millisecond'),
		last_activity_at = now(),
		requeue_history = (CASE WHEN jsonb_array_length(coalesce(e.requeue_history, '[]'::jsonb)) >= ` + strconv.Itoa(store.MaxRequeueHistory) + `
				THEN e.requeue_history - 0 ELSE coalesce(e.requeue_history, '[]'::jsonb) END)
			|| jsonb_build_array(jsonb_build_object('at', now(), 'by', ` + arg(p.By) + `::text, 'reason', ` + arg(p.Reason) + `::text,
				'from', e.status, 'error_class', e.error_class, 'attempts', e.attempts, 'clean', ` + arg(p.Clean) + `::boolean))
	FROM t
	WHERE e.id = t.id AND e.status IN ('failed', 'canceled') AND e.archived_at IS NULL
	RETURNING ` + store.QualifiedEpisodeColumns("e") + `
), s AS (
	DELETE FROM revenant_steps st USING u WHERE st.episode_id = u.id AND (` + arg(p.Clean) + `::boolean OR st.status = 'failed')
)
SELECT ` + cols + ` FROM u ORDER BY id`
	return store.ScanEpisodes(tx.QueryContext(ctx, query, args...))
}

// nextDueSQL: per actor ($1), its first pending episode in scope (from
// $4) that a claim could take, due or not (one that fell due since the
// claim ran must not be missed), and the breaker of stack $2 and env $3
// when it is not closed. Each actor's answer is its first index entry.
func nextDueSQL(scope string) string {
	return `SELECT a.actor,
	(SELECT (extract(epoch FROM e.run_at - now()) * 1000)::bigint FROM revenant_episodes e
		WHERE e.status = 'pending' AND e.actor_id = a.actor AND e.archived_at IS NULL AND ` + schema.Bumpable("e") + scope + `
		ORDER BY e.run_at LIMIT 1),
	b.state,
	(extract(epoch FROM b.reopen_at - now()) * 1000)::bigint
FROM unnest($1::text[]) AS a(actor)
LEFT JOIN revenant_breakers b ON b.actor_id = a.actor AND b.stack = $2 AND b.env = $3 AND b.state <> 'closed'`
}

// EpisodeNextDue implements store.Store.
func (Store) EpisodeNextDue(ctx context.Context, q store.Querier, actors []string, scope store.Scope) ([]store.ActorDue, error) {
	where, args := scope.Where("e", 4)
	args = append([]any{pq.Array(actors), scope.Stack, scope.Env}, args...)
	return store.ScanActorDue(q.QueryContext(ctx, nextDueSQL(where), args...))
}

const breakerSelect = `SELECT ` + store.BreakerColumns + `, now() FROM revenant_breakers`

// breakerLockSQL creates the row when missing and locks it either way: a
// conflicting insert that updates nothing still locks and returns the row.
const breakerLockSQL = `INSERT INTO revenant_breakers AS b (actor_id, stack, env) VALUES ($1, $2, $3)
ON CONFLICT (actor_id, stack, env) DO UPDATE SET actor_id = b.actor_id
RETURNING ` + store.BreakerColumns + `, now()`

const breakerWriteSQL = `INSERT INTO revenant_breakers AS b (actor_id, stack, env, state, failures, window_start, window_failures,
	cool_down_ms, reopen_at, manual, reason, probe_episode, probe_token, changed_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now() + $9::bigint * interval '1 millisecond', $10, $11, $13, $14, now())
ON CONFLICT (actor_id, stack, env) DO UPDATE SET state = excluded.state, failures = excluded.failures,
	window_start = excluded.window_start, window_failures = excluded.window_failures, cool_down_ms = excluded.cool_down_ms,
	reopen_at = excluded.reopen_at, manual = excluded.manual, reason = excluded.reason,
	probe_episode = excluded.probe_episode, probe_token = excluded.probe_token,
	changed_at = CASE WHEN $12 THEN now() ELSE b.changed_at END`

// breakerProbeSQL: an open breaker whose cool-down is over, or a
// half-open one whose probe is no longer running under its claim (its
// node died, or it ended without a word), lets one probe through.
const breakerProbeSQL = `UPDATE revenant_breakers b
SET state = 'half_open', reopen_at = now() + cool_down_ms * interval '1 millisecond', changed_at = now(),
	probe_episode = NULL, probe_token = NULL
WHERE actor_id = $1 AND stack = $2 AND env = $3 AND NOT manual AND reopen_at <= now()
	AND (state = 'open' OR state = 'half_open' AND NOT EXISTS (
		SELECT 1 FROM revenant_episodes e WHERE e.id = b.probe_episode AND e.claim_token = b.probe_token AND e.status = 'running'))`

// breakerProbeStartedSQL names the probe's run on a half-open breaker.
const breakerProbeStartedSQL = `UPDATE revenant_breakers SET probe_episode = $4, probe_token = $5
WHERE actor_id = $1 AND stack = $2 AND env = $3 AND state = 'half_open'`

// breakerSucceededSQL: a success clears a closed breaker's counts; only
// the probe's success ($4) closes a half-open one.
const breakerSucceededSQL = `UPDATE revenant_breakers
SET state = 'closed', failures = 0, window_failures = 0, window_start = NULL, reopen_at = NULL,
	reason = CASE WHEN state <> 'closed' THEN 'the probe succeeded' ELSE reason END,
	probe_episode = NULL, probe_token = NULL,
	changed_at = CASE WHEN state <> 'closed' THEN now() ELSE changed_at END
WHERE actor_id = $1 AND stack = $2 AND env = $3 AND NOT manual
	AND (state = 'closed' AND (failures > 0 OR window_failures > 0) OR state = 'half_open' AND probe_episode = $4::uuid)
RETURNING changed_at = now()`

// BreakerLock implements store.Store.
func (Store) BreakerLock(ctx context.Context, tx store.Querier, key store.BreakerKey) (*store.Breaker, error) {
	return store.ScanBreaker(tx.QueryRowContext(ctx, breakerLockSQL, key.ActorID, key.Stack, key.Env))
}

// BreakerWrite implements store.Store.
func (Store) BreakerWrite(ctx context.Context, q store.Querier, p *store.BreakerWriteParams) error {
	_, err := q.ExecContext(ctx, breakerWriteSQL, p.ActorID, p.Stack, p.Env, string(p.State), p.Failures, p.WindowStart,
		p.WindowFailures, max(p.CoolDown.Milliseconds(), 1), p.ReopenInMillis, p.Manual, store.NullString(p.Reason), p.Changed,
		store.NullUUID(p.ProbeEpisode), nullToken(p.ProbeEpisode, p.ProbeToken))
	return err
}

// BreakerProbe implements store.Store.
func (Store) BreakerProbe(ctx context.Context, tx store.Querier, key store.BreakerKey) (bool, error) {
	return store.Affected(tx.ExecContext(ctx, breakerProbeSQL, key.ActorID, key.Stack, key.Env))
}

// BreakerSucceeded implements store.Store.
func (Store) BreakerSucceeded(ctx context.Context, q store.Querier, key store.BreakerKey, probe uuid.UUID) (bool, error) {
	return store.ScanBool(q.QueryRowContext(ctx, breakerSucceededSQL, key.ActorID, key.Stack, key.Env, store.NullUUID(probe)))
}

// BreakerProbeStarted implements store.Store.
func (Store) BreakerProbeStarted(ctx context.Context, tx store.Querier, key store.BreakerKey, episode uuid.UUID, token int64) error {
	_, err := tx.ExecContext(ctx, breakerProbeStartedSQL, key.ActorID, key.Stack, key.Env, episode, token)
	return err
}

// nullToken stores a probe token only with its episode.
func nullToken(episode uuid.UUID, token int64) any {
	if episode == uuid.Nil {
		return nil
	}
	return token
}

// BreakerList implements store.Store.
func (Store) BreakerList(ctx context.Context, q store.Querier) ([]store.Breaker, error) {
	return store.ScanBreakers(q.QueryContext(ctx, breakerSelect+` ORDER BY actor_id, stack, env`))
}

// BreakerGet implements store.Store.
func (Store) BreakerGet(ctx context.Context, q store.Querier, key store.BreakerKey) (*store.Breaker, error) {
	return store.ScanBreaker(q.QueryRowContext(ctx, breakerSelect+` WHERE actor_id = $1 AND stack = $2 AND env = $3`, key.ActorID, key.Stack, key.Env))
}
