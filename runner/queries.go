package runner

import (
	"github.com/revenant-go/revenant/internal/dialect"
	"github.com/revenant-go/revenant/internal/schema"
	"github.com/revenant-go/revenant/internal/store"
)

// All of the package's SQL lives here.

const registerNodeSQL = `INSERT INTO revenant_nodes (node_id, name, stack, env, lock_key, actors, expires_at)
VALUES ($1, $2, $3, $4, $5, $6::text[], now() + $7 * interval '1 millisecond')`

// heartbeatSQL is the node's single liveness statement per interval: it
// renews the node row and, in the same round trip, returns the runs whose
// lease is gone (status changed or token bumped by someone else; kind
// 'canceled' or 'lost') and the episodes the database says this node runs
// but the node does not track (kind 'untracked': a run that ended without
// its finishing write, a claimed row that could not be read), so that none
// stays running under a live node. The first column is 0 when the node row
// was marked stopped (a sweeper judged the node dead): the node must then
// re-register.
const heartbeatSQL = `WITH hb AS (
	UPDATE revenant_nodes SET heartbeat_at = now(), expires_at = now() + $2 * interval '1 millisecond'
	WHERE node_id = $1 AND stopped_at IS NULL
	RETURNING node_id
)
SELECT (SELECT count(*) FROM hb), x.id, x.token, x.kind
FROM (SELECT 1) AS one
LEFT JOIN LATERAL (
	SELECT r.id, e.claim_token AS token,
		CASE WHEN e.status = 'canceled' AND e.claim_token = r.token THEN 'canceled' ELSE 'lost' END AS kind
	FROM unnest($3::uuid[], $4::bigint[]) AS r(id, token)
	JOIN revenant_episodes e ON e.id = r.id
	WHERE e.status <> 'running' OR e.claim_token <> r.token
	UNION ALL
	SELECT e.id, e.claim_token, 'untracked'
	FROM revenant_episodes e
	WHERE e.status = 'running' AND e.owner_node = $1 AND NOT (e.id = ANY($3::uuid[]))
		AND e.started_at < now() - $5 * interval '1 millisecond'
) AS x ON true`

// handBackSQL returns an episode this node owns but no longer runs to
// pending, fenced by its token (the attempt stays counted: the run did not
// finish). It returns nothing, so an unreadable row can be handed back too.
const handBackSQL = `UPDATE revenant_episodes
SET status = 'pending', owner_node = NULL, phase = NULL, last_activity_at = now()
WHERE id = $1 AND claim_token = $2 AND status = 'running' AND owner_node = $3`

// failUnreadableSQL fails a claimed episode whose row cannot be read, by
// id and token only (reading it back would fail again).
const failUnreadableSQL = `UPDATE revenant_episodes
SET status = 'failed', error_class = 'corrupt_row', error_detail = $3, finished_at = now(), last_activity_at = now()
WHERE id = $1 AND claim_token = $2 AND status = 'running'`

// stateSQL reads what a cancel notification is checked against.
const stateSQL = `SELECT status, claim_token FROM revenant_episodes WHERE id = $1`

const stopNodeSQL = `UPDATE revenant_nodes SET stopped_at = now() WHERE node_id = $1 AND stopped_at IS NULL`

// claimSQL claims up to $3 pending episodes of one actor, oldest first, in
// one compare-and-set statement: SKIP LOCKED lets runners on many nodes
// claim side by side without waiting on or double-claiming a row.
func claimSQL(scope string) string {
	// MATERIALIZED: an inlined LIMIT … FOR UPDATE subquery can be rescanned
	// once per outer row of a nested loop, claiming far more than LIMIT.
	return `WITH c AS MATERIALIZED (
	SELECT id FROM revenant_episodes
	WHERE status = 'pending' AND actor_id = $2 AND archived_at IS NULL AND ` + schema.Bumpable("") + scope + `
	ORDER BY created_at, id
	LIMIT $3
	FOR UPDATE SKIP LOCKED
)
UPDATE revenant_episodes e
SET status = 'running', owner_node = $1, claim_token = e.claim_token + 1, attempts = e.attempts + 1,
	started_at = now(), last_activity_at = now(), phase = NULL
FROM c
WHERE e.id = c.id AND e.status = 'pending'
RETURNING ` + store.QualifiedEpisodeColumns("e")
}

const notifySQL = `SELECT pg_notify($1, $2)`

const lockSQL = `SELECT pg_try_advisory_lock($1)`
const unlockSQL = `SELECT pg_advisory_unlock($1)`

// The SQLite twins. SQLite has no advisory locks, arrays, NOTIFY or SKIP
// LOCKED; see the README's table of differences.

var sqliteRegisterNodeSQL = `INSERT INTO revenant_nodes (node_id, name, stack, env, lock_key, actors, expires_at)
VALUES ($1, $2, $3, $4, $5, $6, ` + sqliteNowPlus7 + `)`

var sqliteNowPlus7 = dialect.SQLiteNowPlusMillis("$7")

var sqliteHeartbeatNodeSQL = `UPDATE revenant_nodes SET heartbeat_at = ` + dialect.SQLiteNow + `, expires_at = ` + dialect.SQLiteNowPlusMillis("$2") + `
WHERE node_id = $1 AND stopped_at IS NULL`

// sqliteLostLeasesSQL is heartbeatSQL's lease check on SQLite: $1 is the
// node, $2 its runs as a JSON array of [id, token] pairs, $3 the heartbeat
// interval in milliseconds.
var sqliteLostLeasesSQL = `WITH r AS (
	SELECT json_extract(value, '$[0]') AS id, json_extract(value, '$[1]') AS token FROM json_each($2)
)
SELECT e.id, e.claim_token,
	CASE WHEN e.status = 'canceled' AND e.claim_token = r.token THEN 'canceled' ELSE 'lost' END
FROM r JOIN revenant_episodes e ON e.id = r.id
WHERE e.status <> 'running' OR e.claim_token <> r.token
UNION ALL
SELECT e.id, e.claim_token, 'untracked'
FROM revenant_episodes e
WHERE e.status = 'running' AND e.owner_node = $1 AND e.id NOT IN (SELECT id FROM r)
	AND e.started_at < ` + dialect.SQLiteNowMinusMillis("$3")

// sqliteClaimSQL is claimSQL on SQLite. One UPDATE statement takes SQLite's
// single write lock before it reads, so the subquery sees every committed
// claim and none can interleave: claims stay exclusive without SKIP LOCKED
// (runners on one file take turns instead of side by side).
func sqliteClaimSQL(scope string) string {
	return `UPDATE revenant_episodes
SET status = 'running', owner_node = $1, claim_token = claim_token + 1, attempts = attempts + 1,
	started_at = ` + dialect.SQLiteNow + `, last_activity_at = ` + dialect.SQLiteNow + `, phase = NULL
WHERE id IN (
	SELECT id FROM revenant_episodes
	WHERE status = 'pending' AND actor_id = $2 AND archived_at IS NULL AND ` + schema.Bumpable("") + scope + `
	ORDER BY created_at, id
	LIMIT $3
) AND status = 'pending'
RETURNING ` + store.EpisodeColumns
}

// queries holds the statements above that run on both backends, in the
// handle's dialect.
type queries struct {
	handBack, failUnreadable, state, stopNode string
}

func queriesFor(d dialect.Dialect) *queries {
	return &queries{handBack: d.Rewrite(handBackSQL), failUnreadable: d.Rewrite(failUnreadableSQL),
		state: stateSQL, stopNode: d.Rewrite(stopNodeSQL)}
}
