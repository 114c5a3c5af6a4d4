package recovery

import (
	"strconv"

	"github.com/revenant-go/revenant/internal/schema"
	"github.com/revenant-go/revenant/internal/store"
)

// All of the package's SQL lives here.
//
// Parameter $1 is always StaleAfter in milliseconds; the scope's parameters
// follow from $2 (see scope.sql); statement-specific ones come after.

// nodeStateCTE says, per node, why it is dead (NULL while alive): stopped,
// its session advisory lock gone (the process or its connection died: seen
// at once), or its heartbeat TTL expired (power cut, partition, SIGSTOP).
const nodeStateCTE = `held AS (
	SELECT (l.classid::bigint << 32) | l.objid::bigint AS lock_key
	FROM pg_locks l
	WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
	  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
),
node_state AS (
	SELECT n.node_id,
		CASE
			WHEN n.stopped_at IS NOT NULL THEN '` + ReasonOwnerStopped + `'
			WHEN n.lock_key IS NOT NULL AND NOT EXISTS (SELECT 1 FROM held h WHERE h.lock_key = n.lock_key) THEN '` + ReasonOwnerLockGone + `'
			WHEN n.expires_at < now() THEN '` + ReasonOwnerExpired + `'
		END AS dead_reason
	FROM revenant_nodes n
)`

// orphanFrom joins a running episode e to its owner's state and computes
// o.reason, which is NULL unless the episode is orphaned. Only an episode
// whose owner is not a known node falls back to journal activity.
const orphanFrom = `revenant_episodes e
LEFT JOIN node_state ns ON ns.node_id = e.owner_node
CROSS JOIN LATERAL (SELECT CASE
	WHEN ns.node_id IS NULL THEN
		CASE WHEN coalesce(e.last_activity_at, e.started_at, e.created_at) < now() - $1 * interval '1 millisecond'
		THEN '` + ReasonNoActivity + `' END
	ELSE ns.dead_reason
END AS reason) o`

// orphanWhere leaves out episodes whose counters cannot be bumped: the
// token bump of a recovery would overflow and fail the whole batch
// (exhaustedOrphansSQL reports them instead).
var orphanWhere = `e.status = 'running' AND e.archived_at IS NULL AND o.reason IS NOT NULL AND ` + schema.Bumpable("e")

// exhaustedOrphansSQL lists (up to $N) orphans that orphanWhere leaves out
// because their counters are at their maximum.
func exhaustedOrphansSQL(scope string, limitArg int) string {
	return `WITH ` + nodeStateCTE + `
SELECT e.id, e.actor_id
FROM ` + orphanFrom + `
WHERE e.status = 'running' AND e.archived_at IS NULL AND o.reason IS NOT NULL AND ` + schema.Exhausted("e") + scope + `
ORDER BY e.id
LIMIT $` + strconv.Itoa(limitArg)
}

// exhaustedSQL lists (up to 100) open episodes in scope whose counters are
// at their maximum, for the Sweeper's report. Scope parameters start at $1.
func exhaustedSQL(scope string) string {
	return `SELECT e.id, e.actor_id
FROM revenant_episodes e
WHERE ` + schema.Exhausted("e") + ` AND e.status IN ('pending', 'running') AND e.archived_at IS NULL` + scope + `
ORDER BY e.id
LIMIT 100`
}

// actionExpr turns a policy into what happens: a restart past max attempts
// is a dead letter.
const actionExpr = `CASE
	WHEN p.policy = 'restart' AND e.attempts < e.max_attempts THEN '` + string(ActionRestart) + `'
	WHEN p.policy = 'restart' THEN '` + string(ActionDeadLetter) + `'
	ELSE '` + string(ActionFail) + `'
END`

// applySet applies c.action to e, bumping the claim token so that the dead
// owner (if it is only partitioned or paused) is fenced off.
const applySet = `UPDATE revenant_episodes e SET
	status = CASE WHEN c.action = 'restart' THEN 'pending' ELSE 'failed' END,
	error_class = CASE c.action WHEN 'fail' THEN 'orphaned' WHEN 'dead_letter' THEN 'max_attempts_exceeded' ELSE e.error_class END,
	error_detail = CASE WHEN c.action = 'restart' THEN e.error_detail ELSE jsonb_build_object(
		'reason', c.reason, 'previous_owner', c.old_owner, 'policy', c.policy, 'policy_source', c.source,
		'attempts', e.attempts, 'max_attempts', e.max_attempts) END,
	finished_at = CASE WHEN c.action = 'restart' THEN NULL ELSE now() END,
	owner_node = NULL,
	phase = NULL,
	claim_token = e.claim_token + 1,
	last_activity_at = now()
`

const applyReturning = `
RETURNING e.id, e.actor_id, c.action, c.reason, c.policy, c.source, coalesce(c.old_owner, ''),
	e.workflow_instance_id, coalesce(e.workflow_step_id, ''), e.attempts`

// batchByPairSQL claims and recovers one batch in one statement, with the
// policies resolved per (actor, expectation) passed as arrays. The
// FOR UPDATE SKIP LOCKED subquery re-checks "running and orphaned" on the row
// it locks, so concurrent sweeps never claim one episode twice. It is
// MATERIALIZED so that the planner cannot rescan it per outer row (which
// would lock and claim more than LIMIT rows). Only
// episodes with a resolved policy are selected, so a page of unresolvable
// ones cannot starve the rest.
func batchByPairSQL(scope string, firstArg int) string {
	a := func(i int) string { return "$" + strconv.Itoa(firstArg+i) }
	return `WITH ` + nodeStateCTE + `,
p AS (SELECT * FROM unnest(` + a(0) + `::text[], ` + a(1) + `::text[], ` + a(2) + `::text[], ` + a(3) + `::text[])
	AS p(actor_id, expectation, policy, source)),
c AS MATERIALIZED (
	SELECT e.id, o.reason, p.policy, p.source, e.owner_node AS old_owner, ` + actionExpr + ` AS action
	FROM ` + orphanFrom + `
	JOIN p ON p.actor_id = e.actor_id AND p.expectation = coalesce(e.expectation, '')
	WHERE ` + orphanWhere + scope + `
	LIMIT ` + a(4) + `
	FOR UPDATE OF e SKIP LOCKED
)
` + applySet + `FROM c WHERE e.id = c.id AND e.status = 'running'` + applyReturning
}

// pairsSQL lists the (actor, expectation) pairs of current orphans.
func pairsSQL(scope string) string {
	return `WITH ` + nodeStateCTE + `
SELECT e.actor_id, coalesce(e.expectation, ''), count(*)
FROM ` + orphanFrom + `
WHERE ` + orphanWhere + scope + `
GROUP BY 1, 2`
}

// lockBatchSQL locks a batch of orphans for a per-episode decision (the
// ResolvePolicy callback), skipping ids already decided in this pass.
func lockBatchSQL(scope string, firstArg int) string {
	return `WITH ` + nodeStateCTE + `
SELECT ` + store.QualifiedEpisodeColumns("e") + `, o.reason
FROM ` + orphanFrom + `
WHERE ` + orphanWhere + scope + ` AND NOT (e.id = ANY($` + strconv.Itoa(firstArg) + `::uuid[]))
LIMIT $` + strconv.Itoa(firstArg+1) + `
FOR UPDATE OF e SKIP LOCKED`
}

// listOrphansSQL is the dry run's read: no locks, no writes.
func listOrphansSQL(scope string, firstArg int) string {
	return `WITH ` + nodeStateCTE + `
SELECT ` + store.QualifiedEpisodeColumns("e") + `, o.reason
FROM ` + orphanFrom + `
WHERE ` + orphanWhere + scope + `
ORDER BY e.id
LIMIT $` + strconv.Itoa(firstArg)
}

// applyDecidedSQL applies per-episode decisions to rows this transaction
// has locked.
const applyDecidedSQL = `WITH p AS (
	SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[]) AS p(id, policy, source, reason)
),
c AS (
	SELECT p.id, p.reason, p.policy, p.source, e.owner_node AS old_owner, ` + actionExpr + ` AS action
	FROM p JOIN revenant_episodes e ON e.id = p.id
)
` + applySet + `FROM c WHERE e.id = c.id AND e.status = 'running'` + applyReturning

// markDeadNodesSQL records dead nodes as stopped, so that a node that was
// only paused finds out at its next heartbeat and re-registers.
const markDeadNodesSQL = `WITH ` + nodeStateCTE + `
UPDATE revenant_nodes n SET stopped_at = now()
FROM node_state ns
WHERE n.node_id = ns.node_id AND n.stopped_at IS NULL AND ns.dead_reason IS NOT NULL
RETURNING n.node_id, ns.dead_reason`

// deadOwnersExistSQL is the Sweeper's cheap, frequent check: is any node
// dead while still owning running episodes?
const deadOwnersExistSQL = `WITH ` + nodeStateCTE + `
SELECT EXISTS (
	SELECT 1 FROM node_state ns
	WHERE ns.dead_reason IS NOT NULL
	  AND EXISTS (SELECT 1 FROM revenant_episodes e WHERE e.status = 'running' AND e.owner_node = ns.node_id)
)`

// pruneNodesSQL deletes rows of nodes stopped for over a day that own no
// running episode.
const pruneNodesSQL = `DELETE FROM revenant_nodes n
WHERE n.stopped_at < now() - interval '1 day'
  AND NOT EXISTS (SELECT 1 FROM revenant_episodes e WHERE e.status = 'running' AND e.owner_node = n.node_id)`

const notifySQL = `SELECT pg_notify($1, a) FROM unnest($2::text[]) AS a`

const agentDefsSQL = `SELECT actor_id, recovery_policy, expectation_policies, enabled
FROM revenant_agent_definitions WHERE actor_id = ANY($1::text[])`

// unclaimableSQL counts pending episodes per actor that no live node in the
// database has registered.
func unclaimableSQL(scope string) string {
	return `SELECT e.actor_id, count(*)
FROM revenant_episodes e
WHERE e.status = 'pending' AND e.archived_at IS NULL` + scope + `
  AND NOT EXISTS (SELECT 1 FROM revenant_nodes n
	WHERE n.stopped_at IS NULL AND n.expires_at > now() AND e.actor_id = ANY(n.actors))
GROUP BY 1 ORDER BY 1`
}
