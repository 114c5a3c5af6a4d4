package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/revenant-go/revenant/internal/dialect"
	"github.com/revenant-go/revenant/internal/schema"
	"github.com/revenant-go/revenant/internal/store"
)

// SQLite has no advisory locks, so a node is dead when it stopped or its
// heartbeat TTL lapsed. It admits one writer at a time, so there is no SKIP
// LOCKED: a by-policy sweep recovers each dead owner's orphans with one
// UPDATE per batch that re-checks "running and orphaned" under the write
// lock; a callback sweep lists, decides and applies each batch in one
// write transaction, its UPDATE re-checking "running under the token it
// was listed with". Both are compare-and-sets, as on Postgres.
//
// Parameters: $1 is StaleAfter in milliseconds, the scope's follow from
// $2, statement-specific ones after.

const nodeStateCTE = `node_state AS (
	SELECT n.node_id,
		CASE
			-- A node a sweep found dead keeps the rule that found it.
			WHEN n.stopped_at IS NOT NULL THEN CASE
				WHEN n.stop_reason IN ('` + store.ReasonOwnerLockGone + `', '` + store.ReasonOwnerExpired + `') THEN n.stop_reason
				ELSE '` + store.ReasonOwnerStopped + `' END
			WHEN n.expires_at < ` + now + ` THEN '` + store.ReasonOwnerExpired + `'
		END AS dead_reason
	FROM revenant_nodes n
)`

// reasonExpr is why e is orphaned, NULL unless it is.
var reasonExpr = `(CASE
	WHEN ns.node_id IS NULL THEN
		CASE WHEN coalesce(e.last_activity_at, e.started_at, e.created_at) < ` + dialect.SQLiteNowMinusMillis("$1") + `
		THEN '` + store.ReasonNoActivity + `' END
	ELSE ns.dead_reason
END)`

const orphanFrom = `revenant_episodes e
LEFT JOIN node_state ns ON ns.node_id = e.owner_node`

var orphanWhere = `e.status = 'running' AND e.archived_at IS NULL AND ` + reasonExpr + ` IS NOT NULL AND ` + schema.Bumpable("e")

func exhaustedOrphansSQL(scope string, limitArg int) string {
	return `WITH ` + nodeStateCTE + `
SELECT e.id, e.actor_id
FROM ` + orphanFrom + `
WHERE e.status = 'running' AND e.archived_at IS NULL AND ` + reasonExpr + ` IS NOT NULL AND ` + schema.Exhausted("e") + scope + `
ORDER BY e.id
LIMIT $` + strconv.Itoa(limitArg)
}

func exhaustedSQL(scope string) string {
	return `SELECT e.id, e.actor_id
FROM revenant_episodes e
WHERE ` + schema.Exhausted("e") + ` AND e.status IN ('pending', 'running') AND e.archived_at IS NULL` + scope + `
ORDER BY e.id
LIMIT $1`
}

// listOrphansSQL lists orphans (with their reason), leaving out the ids in
// the JSON array at firstArg; firstArg+1 is the limit. Sweeps take them in
// index order (recovered rows leave the running index, so each batch
// starts afresh); the dry run wants id order.
func listOrphansSQL(scope string, firstArg int, byID bool) string {
	order := ""
	if byID {
		order = "\nORDER BY e.id"
	}
	return `WITH ` + nodeStateCTE + `
SELECT ` + store.QualifiedEpisodeColumns("e") + `, ` + reasonExpr + `
FROM ` + orphanFrom + `
WHERE ` + orphanWhere + scope + `
	AND e.id NOT IN (SELECT value FROM json_each($` + strconv.Itoa(firstArg) + `))` + order + `
LIMIT $` + strconv.Itoa(firstArg+1)
}

// actionExpr turns a policy into what happens: a restart past max
// attempts is a dead letter.
const actionExpr = `CASE
	WHEN p.policy = 'restart' AND e.attempts < e.max_attempts THEN '` + store.ActionRestart + `'
	WHEN p.policy = 'restart' THEN '` + store.ActionDeadLetter + `'
	ELSE '` + store.ActionFail + `'
END`

// applySQL applies decisions given as a JSON array of [id, policy, source,
// reason, claim token] to episodes still running under that token.
// RETURNING may only name the updated table on SQLite, so the action is
// read back from the new row (status, error class).
const applySQL = `WITH p AS (
	SELECT json_extract(value, '$[0]') AS id, json_extract(value, '$[1]') AS policy,
		json_extract(value, '$[2]') AS source, json_extract(value, '$[3]') AS reason,
		json_extract(value, '$[4]') AS token
	FROM json_each($1)
),
c AS (
	SELECT p.id, p.reason, p.policy, p.source, p.token, e.owner_node AS old_owner, ` + actionExpr + ` AS action
	FROM p JOIN revenant_episodes e ON e.id = p.id
)
UPDATE revenant_episodes AS e SET
	status = CASE WHEN c.action = 'restart' THEN 'pending' ELSE 'failed' END,
	error_class = CASE c.action WHEN 'fail' THEN 'orphaned' WHEN 'dead_letter' THEN 'max_attempts_exceeded' ELSE e.error_class END,
	error_detail = CASE WHEN c.action = 'restart' THEN e.error_detail ELSE json_object(
		'reason', c.reason, 'previous_owner', c.old_owner, 'policy', c.policy, 'policy_source', c.source,
		'attempts', e.attempts, 'max_attempts', e.max_attempts) END,
	finished_at = CASE WHEN c.action = 'restart' THEN NULL ELSE ` + now + ` END,
	owner_node = NULL,
	phase = NULL,
	claim_token = e.claim_token + 1,
	last_activity_at = ` + now + `
FROM c
WHERE e.id = c.id AND +e.status = 'running' AND e.claim_token = c.token
RETURNING id, actor_id, status, coalesce(error_class, ''), workflow_instance_id, coalesce(workflow_step_id, ''), attempts`

// markDeadNodesSQL: without locks, a live (not stopped) node is dead only
// when its TTL lapsed.
const markDeadNodesSQL = `UPDATE revenant_nodes SET stopped_at = ` + now + `, stop_reason = '` + store.ReasonOwnerExpired + `'
WHERE stopped_at IS NULL AND expires_at < ` + now + `
RETURNING node_id, '` + store.ReasonOwnerExpired + `'`

const deadOwnersExistSQL = `WITH ` + nodeStateCTE + `
SELECT EXISTS (
	SELECT 1 FROM node_state ns
	WHERE ns.dead_reason IS NOT NULL
	  AND EXISTS (SELECT 1 FROM revenant_episodes e WHERE e.status = 'running' AND e.owner_node = ns.node_id)
)`

const pruneNodesSQL = `DELETE FROM revenant_nodes
WHERE stopped_at < strftime('%Y-%m-%d %H:%M:%f', 'now', '-1 day')
  AND NOT EXISTS (SELECT 1 FROM revenant_episodes e WHERE e.status = 'running' AND e.owner_node = revenant_nodes.node_id)`

func unclaimableSQL(scope string) string {
	return `SELECT e.actor_id, count(*)
FROM revenant_episodes e
WHERE e.status = 'pending' AND e.archived_at IS NULL` + scope + `
  AND NOT EXISTS (SELECT 1 FROM revenant_nodes n
	WHERE n.stopped_at IS NULL AND n.expires_at > ` + now + `
	  AND EXISTS (SELECT 1 FROM json_each(n.actors) a WHERE a.value = e.actor_id))
GROUP BY 1 ORDER BY 1`
}

// groupsSQL lists the (owner, reason, actor, expectation) groups of
// candidate orphans. It reads only the running-owner index (which covers
// every column it needs) and judges each owner once: a dead node's rows
// are orphans; an owner that is not a known node is a candidate whose rows
// the batch statement checks one by one for staleness. (Running episodes
// are never archived, so archived_at is left to the batch statement too.)
func groupsSQL(scope string) string {
	return `WITH ` + nodeStateCTE + `,
g AS MATERIALIZED (
	SELECT DISTINCT e.owner_node, e.actor_id, coalesce(e.expectation, '') AS expectation
	FROM revenant_episodes e INDEXED BY revenant_episodes_running_owner_idx
	WHERE e.status = 'running'` + scope + `
)
SELECT g.owner_node, CASE WHEN ns.node_id IS NULL THEN '` + store.ReasonNoActivity + `' ELSE ns.dead_reason END AS reason,
	g.actor_id, g.expectation
FROM g LEFT JOIN node_state ns ON ns.node_id = g.owner_node
WHERE ns.node_id IS NULL OR ns.dead_reason IS NOT NULL`
}

// batchByOwnerSQL recovers up to a batch of one owner's orphans in one
// statement: the orphan test (owner $k, reason $k+1), the policy join
// (pairs as a JSON array of [actor, expectation, policy, source] at $k+2)
// and the UPDATE run under SQLite's single write lock, so no other writer
// can interleave. The owner and reason are parameters because RETURNING
// may name only the updated table on SQLite. The unary + on the final
// status re-check keeps the planner from driving the update by the status
// index (a scan of every running row per batch) instead of by c's ids.
func batchByOwnerSQL(scope string, k int) string {
	a := func(i int) string { return "$" + strconv.Itoa(k+i) }
	action := strings.NewReplacer("e.attempts", "u.attempts", "e.max_attempts", "u.max_attempts").Replace(actionExpr)
	return `WITH ` + nodeStateCTE + `,
p AS MATERIALIZED (
	SELECT json_extract(value, '$[0]') AS actor_id, json_extract(value, '$[1]') AS expectation,
		json_extract(value, '$[2]') AS policy, json_extract(value, '$[3]') AS source
	FROM json_each(` + a(2) + `)
)
UPDATE revenant_episodes AS u SET
	status = CASE WHEN ` + action + ` = 'restart' THEN 'pending' ELSE 'failed' END,
	error_class = CASE ` + action + ` WHEN 'fail' THEN 'orphaned' WHEN 'dead_letter' THEN 'max_attempts_exceeded' ELSE u.error_class END,
	error_detail = CASE WHEN ` + action + ` = 'restart' THEN u.error_detail ELSE json_object(
		'reason', ` + a(1) + `, 'previous_owner', ` + a(0) + `, 'policy', p.policy, 'policy_source', p.source,
		'attempts', u.attempts, 'max_attempts', u.max_attempts) END,
	finished_at = CASE WHEN ` + action + ` = 'restart' THEN NULL ELSE ` + now + ` END,
	owner_node = NULL,
	phase = NULL,
	claim_token = u.claim_token + 1,
	last_activity_at = ` + now + `
FROM p
WHERE u.rowid IN (
	SELECT e.rowid FROM ` + orphanFrom + `
	WHERE ` + orphanWhere + scope + ` AND e.owner_node IS ` + a(0) + ` AND ` + reasonExpr + ` = ` + a(1) + `
	  AND EXISTS (SELECT 1 FROM p WHERE p.actor_id = e.actor_id AND p.expectation = coalesce(e.expectation, ''))
	LIMIT ` + a(3) + `
) AND +u.status = 'running' AND p.actor_id = u.actor_id AND p.expectation = coalesce(u.expectation, '')
RETURNING id, actor_id, status, coalesce(error_class, ''), workflow_instance_id, coalesce(workflow_step_id, ''), attempts`
}

func orphanArgs(p *store.OrphanQuery) (string, []any) {
	scope, args := p.Scope.Where("e", 2)
	args = append([]any{p.StaleAfter.Milliseconds()}, args...)
	if p.Episode != uuid.Nil {
		args = append(args, p.Episode)
		scope += " AND e.id = $" + strconv.Itoa(len(args))
	}
	return scope, args
}

func jsonArray(v any) (string, error) {
	b, err := json.Marshal(v)
	return string(b), err
}

// OrphanGroups implements store.Store: one group per owner and pair, for
// OrphanRecover to batch by owner.
func (Store) OrphanGroups(ctx context.Context, q store.Querier, p *store.OrphanQuery) ([]store.OrphanGroup, error) {
	scope, args := orphanArgs(p)
	rows, err := q.QueryContext(ctx, groupsSQL(scope), args...)
	if err != nil {
		return nil, err
	}
	defer func() { _ = rows.Close() }()
	var out []store.OrphanGroup
	for rows.Next() {
		var owner sql.NullString
		var g store.OrphanGroup
		if err := rows.Scan(&owner, &g.Reason, &g.ActorID, &g.Expectation); err != nil {
			return nil, err
		}
		g.Owner = owner.String
		out = append(out, g)
	}
	return out, rows.Err()
}

// owners returns the distinct (owner, reason) pairs of groups, in order.
func owners(groups []store.OrphanGroup) [][2]string {
	seen := map[[2]string]bool{}
	var out [][2]string
	for _, g := range groups {
		k := [2]string{g.Owner, g.Reason}
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	return out
}

// OrphanRecover implements store.Store: one statement per batch of one
// owner's orphans; p.Cursor is the owner being recovered.
func (Store) OrphanRecover(ctx context.Context, q store.Querier, p *store.OrphanRecoverParams) ([]store.Recovered, error) {
	byOwner := owners(p.Groups)
	if len(p.Policies) == 0 || p.Cursor >= len(byOwner) {
		p.Done = true
		return nil, nil
	}
	o := byOwner[p.Cursor]
	rows4 := [][4]string{}
	for _, x := range p.Policies {
		if x.Owner == o[0] {
			rows4 = append(rows4, [4]string{x.ActorID, x.Expectation, x.Policy, x.Source})
		}
	}
	pairs, err := jsonArray(rows4)
	if err != nil {
		return nil, err
	}
	var owner any
	if o[0] != "" {
		owner = o[0]
	}
	scope, args := orphanArgs(&p.Query)
	query := batchByOwnerSQL(scope, len(args)+1)
	args = append(args, owner, o[1], pairs, p.Limit)
	out, err := scanRecovered(q.QueryContext(ctx, query, args...))
	if err != nil {
		return nil, err
	}
	for i := range out {
		out[i].Reason, out[i].PreviousOwner = o[1], o[0]
	}
	if len(out) < p.Limit {
		p.Cursor++
		p.Done = p.Cursor >= len(byOwner)
	}
	return out, nil
}

// scanRecovered reads (id, actor, status, class, workflow instance, step,
// attempts) rows and derives each action from the new status and class.
func scanRecovered(rows *sql.Rows, err error) ([]store.Recovered, error) {
	if err != nil {
		return nil, err
	}
	defer func() { _ = rows.Close() }()
	var out []store.Recovered
	for rows.Next() {
		var r store.Recovered
		var status, class string
		var wf uuid.NullUUID
		if err := rows.Scan(&r.ID, &r.ActorID, &status, &class, &wf, &r.WorkflowStepID, &r.Attempts); err != nil {
			return nil, fmt.Errorf("reading recovered rows: %w", err)
		}
		r.WorkflowInstanceID = wf.UUID
		switch {
		case status == string(store.StatusPending):
			r.Action = store.ActionRestart
		case class == "max_attempts_exceeded":
			r.Action = store.ActionDeadLetter
		default:
			r.Action = store.ActionFail
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// OrphanLock implements store.Store: the caller's write transaction is the
// lock, and OrphanApply re-checks each token.
func (Store) OrphanLock(ctx context.Context, tx store.Querier, p *store.OrphanQuery, exclude []uuid.UUID, limit int) ([]store.Orphan, error) {
	return listOrphans(ctx, tx, p, exclude, limit, false)
}

func listOrphans(ctx context.Context, q store.Querier, p *store.OrphanQuery, exclude []uuid.UUID, limit int, byID bool) ([]store.Orphan, error) {
	ids := make([]string, len(exclude))
	for i, id := range exclude {
		ids[i] = id.String()
	}
	ex, err := jsonArray(ids)
	if err != nil {
		return nil, err
	}
	scope, args := orphanArgs(p)
	query := listOrphansSQL(scope, len(args)+1, byID)
	return store.ScanOrphans(q.QueryContext(ctx, query, append(args, ex, limit)...))
}

// OrphanApply implements store.Store.
func (Store) OrphanApply(ctx context.Context, tx store.Querier, decisions []store.Decision) ([]store.Recovered, error) {
	rows := make([][5]any, len(decisions))
	for i, d := range decisions {
		rows[i] = [5]any{d.ID.String(), d.Policy, d.Source, d.Reason, d.ClaimToken}
	}
	arg, err := jsonArray(rows)
	if err != nil {
		return nil, err
	}
	out, err := scanRecovered(tx.QueryContext(ctx, applySQL, arg))
	if err != nil {
		return nil, err
	}
	byID := make(map[uuid.UUID]store.Decision, len(decisions))
	for _, d := range decisions {
		byID[d.ID] = d
	}
	for i := range out {
		out[i].Reason = byID[out[i].ID].Reason
	}
	return out, nil
}

// OrphanList implements store.Store.
func (Store) OrphanList(ctx context.Context, q store.Querier, p *store.OrphanQuery, limit int) ([]store.Orphan, error) {
	return listOrphans(ctx, q, p, nil, limit, true)
}

// OrphanExhausted implements store.Store.
func (Store) OrphanExhausted(ctx context.Context, q store.Querier, p *store.OrphanQuery, limit int) ([]store.EpisodeRef, error) {
	scope, args := orphanArgs(p)
	return store.ScanRefs(q.QueryContext(ctx, exhaustedOrphansSQL(scope, len(args)+1), append(args, limit)...))
}

// EpisodeExhausted implements store.Store.
func (Store) EpisodeExhausted(ctx context.Context, q store.Querier, scope store.Scope, limit int) ([]store.EpisodeRef, error) {
	where, args := scope.Where("e", 2)
	return store.ScanRefs(q.QueryContext(ctx, exhaustedSQL(where), append([]any{limit}, args...)...))
}

// EpisodeUnclaimable implements store.Store.
func (Store) EpisodeUnclaimable(ctx context.Context, q store.Querier, scope store.Scope) ([]store.ActorBacklog, error) {
	where, args := scope.Where("e", 1)
	return store.ScanBacklog(q.QueryContext(ctx, unclaimableSQL(where), args...))
}

// NodeMarkDead implements store.Store.
func (Store) NodeMarkDead(ctx context.Context, q store.Querier) ([]store.DeadNode, error) {
	return store.ScanDeadNodes(q.QueryContext(ctx, markDeadNodesSQL))
}

// NodeDeadOwnersExist implements store.Store.
func (Store) NodeDeadOwnersExist(ctx context.Context, q store.Querier) (bool, error) {
	var dead bool
	err := q.QueryRowContext(ctx, deadOwnersExistSQL).Scan(&dead)
	return dead, err
}

// NodePrune implements store.Store.
func (Store) NodePrune(ctx context.Context, q store.Querier) (int64, error) {
	return store.Count(q.ExecContext(ctx, pruneNodesSQL))
}

// PrepareConn implements store.Store: SQLite has no statement timeout (its
// busy_timeout bounds lock waits); the probe still runs, so a closed or
// broken handle fails here.
func (Store) PrepareConn(ctx context.Context, conn store.Querier, _ time.Duration) error {
	_, err := conn.ExecContext(ctx, "SELECT 1")
	return err
}

// NotifyEach implements store.Store: nodes poll.
func (Store) NotifyEach(context.Context, store.Querier, string, []string) error { return nil }
