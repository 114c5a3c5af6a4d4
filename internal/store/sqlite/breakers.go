package sqlite

import (
	"context"
	"strconv"

	"github.com/google/uuid"

	"github.com/revenant-go/revenant/internal/dialect"
	"github.com/revenant-go/revenant/internal/schema"
	"github.com/revenant-go/revenant/internal/store"
)

// Requeues, due times and circuit breakers.

// EpisodeRequeue implements store.Store: the UPDATE re-checks each row
// (failed or canceled, not archived) under SQLite's write lock, then the
// caller's transaction deletes the journal entries that must run again.
func (Store) EpisodeRequeue(ctx context.Context, tx store.Querier, p *store.RequeueParams) ([]*store.Episode, error) {
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	ids, err := jsonArray(p.IDs)
	if err != nil {
		return nil, err
	}
	where := store.RequeueFilter(p, arg, timeArg, func(ph string) string { return "id IN (SELECT value FROM json_each(" + ph + "))" }, ids)
	limit := ""
	if len(p.IDs) == 0 {
		limit = " LIMIT " + arg(p.Limit)
	}
	var runAt any
	if !p.RunAt.IsZero() {
		runAt = timeArg(p.RunAt)
	}
	clean := 0
	if p.Clean {
		clean = 1
	}
	history := `coalesce(requeue_history, '[]')`
	query := `UPDATE revenant_episodes
SET status = 'pending', attempts = 0, owner_node = NULL, phase = NULL, finished_at = NULL, cancel_requested_at = NULL,
	run_at = coalesce(` + arg(runAt) + `, ` + dialect.SQLiteNowPlusMillis(arg(p.DelayMillis)) + `),
	last_activity_at = ` + now + `,
	requeue_history = json_insert(CASE WHEN json_array_length(` + history + `) >= ` + strconv.Itoa(store.MaxRequeueHistory) + `
			THEN json_remove(` + history + `, '$[0]') ELSE ` + history + ` END, '$[#]',
		json_object('at', ` + now + `, 'by', ` + arg(p.By) + `, 'reason', ` + arg(p.Reason) + `, 'from', status,
			'error_class', error_class, 'attempts', attempts, 'clean', json(CASE WHEN ` + arg(clean) + ` THEN 'true' ELSE 'false' END)))
WHERE id IN (SELECT id FROM revenant_episodes WHERE ` + where + ` ORDER BY id` + limit + `)
	AND status IN ('failed', 'canceled') AND archived_at IS NULL
RETURNING ` + cols
	eps, err := store.ScanEpisodes(tx.QueryContext(ctx, query, args...))
	if err != nil || len(eps) == 0 {
		return eps, err
	}
	done := make([]uuid.UUID, len(eps))
	for i, ep := range eps {
		done[i] = ep.ID
	}
	doneJSON, err := jsonArray(done)
	if err != nil {
		return nil, err
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM revenant_steps
WHERE episode_id IN (SELECT value FROM json_each($1)) AND ($2 OR status = 'failed')`, doneJSON, clean); err != nil {
		return nil, err
	}
	return eps, nil
}

// nextDueSQL: per actor ($1, a JSON array), its first pending episode in
// scope (from $4) that a claim could take, due or not, and the breaker of
// stack $2 and env $3 when it is not closed (as on Postgres).
func nextDueSQL(scope string) string {
	return `SELECT a.value,
	(SELECT CAST((julianday(min(e.run_at)) - julianday('now')) * 86400000 AS INTEGER) FROM revenant_episodes e
		WHERE e.status = 'pending' AND e.actor_id = a.value AND e.archived_at IS NULL AND ` + schema.Bumpable("e") + scope + `),
	b.state,
	CAST((julianday(b.reopen_at) - julianday('now')) * 86400000 AS INTEGER)
FROM json_each($1) AS a
LEFT JOIN revenant_breakers b ON b.actor_id = a.value AND b.stack = $2 AND b.env = $3 AND b.state <> 'closed'`
}

// EpisodeNextDue implements store.Store.
func (Store) EpisodeNextDue(ctx context.Context, q store.Querier, actors []string, scope store.Scope) ([]store.ActorDue, error) {
	list, err := jsonArray(actors)
	if err != nil {
		return nil, err
	}
	where, args := scope.Where("e", 4)
	args = append([]any{list, scope.Stack, scope.Env}, args...)
	return store.ScanActorDue(q.QueryContext(ctx, nextDueSQL(where), args...))
}

const breakerSelect = `SELECT ` + store.BreakerColumns + `, ` + now + ` FROM revenant_breakers`

// breakerLockSQL creates the row when missing; the caller's transaction
// holds SQLite's write lock from this write on.
const breakerLockSQL = `INSERT INTO revenant_breakers AS b (actor_id, stack, env) VALUES ($1, $2, $3)
ON CONFLICT (actor_id, stack, env) DO UPDATE SET actor_id = b.actor_id
RETURNING ` + store.BreakerColumns + `, ` + now

var breakerWriteSQL = `INSERT INTO revenant_breakers AS b (actor_id, stack, env, state, failures, window_start, window_failures,
	cool_down_ms, reopen_at, manual, reason, probe_episode, probe_token, changed_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, CASE WHEN $9 IS NOT NULL THEN ` + dialect.SQLiteNowPlusMillis("$9") + ` END, $10, $11, $13, $14, ` + now + `)
ON CONFLICT (actor_id, stack, env) DO UPDATE SET state = excluded.state, failures = excluded.failures,
	window_start = excluded.window_start, window_failures = excluded.window_failures, cool_down_ms = excluded.cool_down_ms,
	reopen_at = excluded.reopen_at, manual = excluded.manual, reason = excluded.reason,
	probe_episode = excluded.probe_episode, probe_token = excluded.probe_token,
	changed_at = CASE WHEN $12 THEN ` + now + ` ELSE b.changed_at END`

// breakerProbeSQL: as on Postgres.
var breakerProbeSQL = `UPDATE revenant_breakers AS b
SET state = 'half_open', reopen_at = ` + dialect.SQLiteNowPlusMillis("cool_down_ms") + `, changed_at = ` + now + `,
	probe_episode = NULL, probe_token = NULL
WHERE actor_id = $1 AND stack = $2 AND env = $3 AND NOT manual AND reopen_at <= ` + now + `
	AND (state = 'open' OR state = 'half_open' AND NOT EXISTS (
		SELECT 1 FROM revenant_episodes e WHERE e.id = b.probe_episode AND e.claim_token = b.probe_token AND e.status = 'running'))`

const breakerProbeStartedSQL = `UPDATE revenant_breakers SET probe_episode = $4, probe_token = $5
WHERE actor_id = $1 AND stack = $2 AND env = $3 AND state = 'half_open'`

// breakerSucceededSQL: as on Postgres.
const breakerSucceededSQL = `UPDATE revenant_breakers
SET state = 'closed', failures = 0, window_failures = 0, window_start = NULL, reopen_at = NULL,
	reason = CASE WHEN state <> 'closed' THEN 'the probe succeeded' ELSE reason END,
	probe_episode = NULL, probe_token = NULL,
	changed_at = CASE WHEN state <> 'closed' THEN ` + now + ` ELSE changed_at END
WHERE actor_id = $1 AND stack = $2 AND env = $3 AND NOT manual
	AND (state = 'closed' AND (failures > 0 OR window_failures > 0) OR state = 'half_open' AND probe_episode = $4)
RETURNING changed_at = ` + now

// BreakerLock implements store.Store.
func (Store) BreakerLock(ctx context.Context, tx store.Querier, key store.BreakerKey) (*store.Breaker, error) {
	return store.ScanBreaker(tx.QueryRowContext(ctx, breakerLockSQL, key.ActorID, key.Stack, key.Env))
}

// BreakerWrite implements store.Store.
func (Store) BreakerWrite(ctx context.Context, q store.Querier, p *store.BreakerWriteParams) error {
	var winStart any
	if p.WindowStart != nil {
		winStart = timeArg(*p.WindowStart)
	}
	_, err := q.ExecContext(ctx, breakerWriteSQL, p.ActorID, p.Stack, p.Env, string(p.State), p.Failures, winStart,
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
