package runner

import (
	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/internal/dialect"
)

// All of the package's SQL lives here.

const registerNodeSQL = `INSERT INTO revenant_nodes (node_id, name, stack, env, lock_key, actors, expires_at)
VALUES ($1, $2, $3, $4, $5, $6::text[], now() + $7 * interval '1 millisecond')`

// heartbeatSQL is the node's single liveness statement per interval: it
// renews the node row and, in the same round trip, returns the runs whose
// lease is gone (status changed or token bumped by someone else). The
// first column is 0 when the node row was marked stopped (a sweeper judged
// the node dead): the node must then re-register.
const heartbeatSQL = `WITH hb AS (
	UPDATE revenant_nodes SET heartbeat_at = now(), expires_at = now() + $2 * interval '1 millisecond'
	WHERE node_id = $1 AND stopped_at IS NULL
	RETURNING node_id
)
SELECT (SELECT count(*) FROM hb), lost.id, lost.canceled
FROM (SELECT 1) AS one
LEFT JOIN LATERAL (
	SELECT r.id, e.status = 'canceled' AND e.claim_token = r.token AS canceled
	FROM unnest($3::uuid[], $4::bigint[]) AS r(id, token)
	JOIN revenant_episodes e ON e.id = r.id
	WHERE e.status <> 'running' OR e.claim_token <> r.token
) AS lost ON true`

const stopNodeSQL = `UPDATE revenant_nodes SET stopped_at = now() WHERE node_id = $1 AND stopped_at IS NULL`

// claimSQL claims up to $3 pending episodes of one actor, oldest first, in
// one compare-and-set statement: SKIP LOCKED lets runners on many nodes
// claim side by side without waiting on or double-claiming a row.
func claimSQL(scope string) string {
	// MATERIALIZED: an inlined LIMIT … FOR UPDATE subquery can be rescanned
	// once per outer row of a nested loop, claiming far more than LIMIT.
	return `WITH c AS MATERIALIZED (
	SELECT id FROM revenant_episodes
	WHERE status = 'pending' AND actor_id = $2 AND archived_at IS NULL` + scope + `
	ORDER BY created_at, id
	LIMIT $3
	FOR UPDATE SKIP LOCKED
)
UPDATE revenant_episodes e
SET status = 'running', owner_node = $1, claim_token = e.claim_token + 1, attempts = e.attempts + 1,
	started_at = now(), last_activity_at = now(), phase = NULL
FROM c
WHERE e.id = c.id AND e.status = 'pending'
RETURNING ` + episodes.QualifiedColumns("e")
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

// sqliteLostLeasesSQL takes the runs as a JSON array of [id, token] pairs.
const sqliteLostLeasesSQL = `SELECT e.id, e.status = 'canceled' AND e.claim_token = r.token
FROM (SELECT json_extract(value, '$[0]') AS id, json_extract(value, '$[1]') AS token FROM json_each($1)) AS r
JOIN revenant_episodes e ON e.id = r.id
WHERE e.status <> 'running' OR e.claim_token <> r.token`

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
	WHERE status = 'pending' AND actor_id = $2 AND archived_at IS NULL` + scope + `
	ORDER BY created_at, id
	LIMIT $3
) AND status = 'pending'
RETURNING ` + episodes.Columns
}
