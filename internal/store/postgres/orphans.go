package postgres

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/lib/pq"

	"github.com/revenant-go/revenant/internal/schema"
	"github.com/revenant-go/revenant/internal/store"
)

// Orphan statements: $1 is always StaleAfter in milliseconds; the scope's
// parameters follow from $2; statement-specific ones come after.

// nodeStateCTE says, per node, why it is dead (NULL while alive): stopped,
// its session advisory lock gone (the process or its connection died:
// seen at once), or its heartbeat TTL expired (power cut, partition,
// SIGSTOP).
const nodeStateCTE = `held AS (
	SELECT (l.classid::bigint << 32) | l.objid::bigint AS lock_key
	FROM pg_locks l
	WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
	  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
),
node_state AS (
	SELECT n.node_id,
		CASE
			-- A node a sweep found dead keeps the rule that found it.
			WHEN n.stopped_at IS NOT NULL THEN CASE
				WHEN n.stop_reason IN ('` + store.ReasonOwnerLockGone + `', '` + store.ReasonOwnerExpired + `') THEN n.stop_reason
				ELSE '` + store.ReasonOwnerStopped + `' END
			WHEN n.lock_key IS NOT NULL AND NOT EXISTS (SELECT 1 FROM held h WHERE h.lock_key = n.lock_key) THEN '` + store.ReasonOwnerLockGone + `'
			WHEN n.expires_at < now() THEN '` + store.ReasonOwnerExpired + `'
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
		THEN '` + store.ReasonNoActivity + `' END
	ELSE ns.dead_reason
END AS reason) o`

// orphanWhere leaves out episodes whose counters cannot be bumped: the
// token bump of a recovery would overflow and fail the whole batch
// (OrphanExhausted reports them instead).
var orphanWhere = `e.status = 'running' AND e.archived_at IS NULL AND o.reason IS NOT NULL AND ` + schema.Bumpable("e")

func exhaustedOrphansSQL(scope string, limitArg int) string {
	return `WITH ` + nodeStateCTE + `
SELECT e.id, e.actor_id
FROM ` + orphanFrom + `
WHERE e.status = 'running' AND e.archived_at IS NULL AND o.reason IS NOT NULL AND ` + schema.Exhausted("e") + scope + `
ORDER BY e.id
LIMIT $` + strconv.Itoa(limitArg)
}

// exhaustedSQL: scope parameters start at $1.
func exhaustedSQL(scope string) string {
	return `SELECT e.id, e.actor_id
FROM revenant_episodes e
WHERE ` + schema.Exhausted("e") + ` AND e.status IN ('pending', 'running') AND e.archived_at IS NULL` + scope + `
ORDER BY e.id
LIMIT $1`
}

// actionExpr turns a policy into what happens: a restart past max attempts
// is a dead letter.
const actionExpr = `CASE
	WHEN p.policy = 'restart' AND e.attempts < e.max_attempts THEN '` + store.ActionRestart + `'
	WHEN p.policy = 'restart' THEN '` + store.ActionDeadLetter + `'
	ELSE '` + store.ActionFail + `'
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
RETURNING e.id, e.actor_id, c.action, c.reason, coalesce(c.old_owner, ''),
	e.workflow_instance_id, coalesce(e.workflow_step_id, ''), e.attempts`

// batchByPairSQL claims and recovers one batch in one statement, with the
// policies resolved per owner and (actor, expectation) passed as arrays. The FOR
// UPDATE SKIP LOCKED subquery re-checks "running and orphaned" on the row
// it locks, so concurrent sweeps never claim one episode twice. It is
// MATERIALIZED so that the planner cannot rescan it per outer row (which
// would lock and claim more than LIMIT rows). Only episodes with a
// resolved policy are selected, so a page of unresolvable ones cannot
// starve the rest.
func batchByPairSQL(scope string, firstArg int) string {
	return batchByPairCTEs(scope, firstArg) + "\n" + applySet + lockedRowsByID + applyReturning
}

// lockedRowsByID joins the update to the rows c locked by id: it finds
// every one of them, whichever version the lock named.
const lockedRowsByID = `FROM c WHERE e.id = c.id AND e.status = 'running'`

// lockedRowsJoin joins the update to the rows c locked by their tuple
// ids: one heap fetch per row instead of an index descent (a tenth of a
// batch's time). It can miss a row: when another transaction updated and
// committed it after the statement's snapshot, c locks (and names) the
// newer version, which the update's snapshot cannot see. The row stays
// as it was, for the next batch (a fresh snapshot) to take: the statement
// reports how many rows c locked, and a batch that recovered fewer than
// it locked is not the last (OrphanRecover).
const lockedRowsJoin = `FROM c WHERE e.ctid = c.tid AND e.id = c.id AND e.status = 'running'`

// batchByPairCTEs are the common table expressions of batchByPairSQL
// before its update: the node states, the pairs' policies (p) and the
// locked batch (c).
func batchByPairCTEs(scope string, firstArg int) string {
	a := func(i int) string { return "$" + strconv.Itoa(firstArg+i) }
	return `WITH ` + nodeStateCTE + `,
p AS (SELECT * FROM unnest(` + a(0) + `::text[], ` + a(1) + `::text[], ` + a(2) + `::text[], ` + a(3) + `::text[], ` + a(5) + `::text[])
	AS p(actor_id, expectation, policy, source, owner)),
c AS MATERIALIZED (
	SELECT e.id, e.ctid AS tid, o.reason, p.policy, p.source, e.owner_node AS old_owner, ` + actionExpr + ` AS action
	FROM ` + orphanFrom + `
	JOIN p ON p.actor_id = e.actor_id AND p.expectation = coalesce(e.expectation, '') AND p.owner = coalesce(e.owner_node, '')
	WHERE ` + orphanWhere + scope + `
	LIMIT ` + a(4) + `
	FOR UPDATE OF e SKIP LOCKED
)`
}

// summarizedBatchSQL is batchByPairSQL doing the batch's side effects
// itself (store.OrphanRecoverParams.Summarize): it wakes the runners of
// each restarted actor and, with events (types at $eventsArg, +1, +2 for
// recovered, failed, dead-lettered), writes each recovered episode's
// outbox event and announces them, all delivered on the statement's
// commit. Each event takes the status and error class the update gave
// its episode (a restart keeps an earlier class: its event has none). It
// returns the episodes not restarted, one row each, and one
// row with a NULL id counting the restarted ones and the rows c locked: a
// batch of 5,000 restarts no longer travels to the client and back as
// events. It joins the update to c by tuple id (lockedRowsJoin).
func summarizedBatchSQL(scope string, firstArg int, events bool, eventsArg int) string {
	q := batchByPairCTEs(scope, firstArg) + `,
u AS (
` + applySet + lockedRowsJoin + `
	RETURNING e.id, e.actor_id, c.action, c.reason, coalesce(c.old_owner, '') AS old_owner,
		e.workflow_instance_id, coalesce(e.workflow_step_id, '') AS step_id, e.attempts, e.status, e.error_class
),
woken AS (SELECT count(pg_notify('` + store.PendingChannel + `', a.actor_id)) AS n
	FROM (SELECT DISTINCT actor_id FROM u WHERE action = '` + store.ActionRestart + `') a)`
	announced := `0`
	if events {
		t := func(i int) string { return "$" + strconv.Itoa(eventsArg+i) }
		q += `,
ev AS (
	INSERT INTO revenant_events (id, type, episode_id, actor_id, workflow_instance_id, workflow_step_id, status, error_class, payload)
	SELECT ` + newEventIDSQL + `,
		CASE u.action WHEN '` + store.ActionRestart + `' THEN ` + t(0) + ` WHEN '` + store.ActionDeadLetter + `' THEN ` + t(2) + ` ELSE ` + t(1) + ` END,
		u.id, u.actor_id, u.workflow_instance_id, NULLIF(u.step_id, ''), u.status,
		CASE WHEN u.action <> '` + store.ActionRestart + `' THEN u.error_class END,
		jsonb_build_object('reason', u.reason, 'previous_owner', u.old_owner)
	FROM u
	RETURNING seq
),
announced AS (SELECT count(pg_notify('` + store.OutboxChannel + `', s.seq::text)) AS n
	FROM (SELECT max(seq) AS seq FROM ev) s WHERE s.seq IS NOT NULL)`
		announced = `(SELECT n FROM announced)`
	}
	// A SELECT in WITH runs only if referenced: the last column references
	// the notifications (its value is not used).
	return q + `
SELECT u.id, u.actor_id, u.action, u.reason, u.old_owner, u.workflow_instance_id, u.step_id, u.attempts, 1,
	(SELECT n FROM woken) + ` + announced + `, 0
FROM u WHERE u.action <> '` + store.ActionRestart + `'
UNION ALL
SELECT NULL, '', '` + store.ActionRestart + `', '', '', NULL, '', 0, count(*),
	(SELECT n FROM woken) + ` + announced + `, (SELECT count(*) FROM c)
FROM u WHERE u.action = '` + store.ActionRestart + `'`
}

// pairsSQL lists the owner and (actor, expectation) pairs that have
// orphans in scope, by a loose scan of the running-pairs index: the
// distinct owners of running episodes, then for each dead or unknown
// owner its distinct pairs, each kept if one of its episodes is an orphan
// in scope (LATERAL … LIMIT 1: the planner turns an EXISTS into a join
// reading every running episode). That is a few index probes per pair,
// however many orphans a pair has (unless most of a pair's episodes are
// out of the sweep's scope: the check reads past those), and none for a
// live node's episodes.
// Episodes without an owner (the index holds them under NULL) are grouped
// by a scan of their own, under the empty owner.
func pairsSQL(scope string) string {
	next := func(owner, after string) string {
		return `(SELECT x.actor_id, coalesce(x.expectation, '') AS expectation FROM revenant_episodes x
		WHERE x.status = 'running' AND x.owner_node = ` + owner + after + `
		ORDER BY x.actor_id, coalesce(x.expectation, '') LIMIT 1) f`
	}
	return `WITH RECURSIVE ` + nodeStateCTE + `,
owners AS (
	SELECT min(owner_node) AS owner FROM revenant_episodes WHERE status = 'running'
	UNION ALL
	SELECT (SELECT min(x.owner_node) FROM revenant_episodes x WHERE x.status = 'running' AND x.owner_node > w.owner)
	FROM owners w WHERE w.owner IS NOT NULL
),
pairs AS (
	SELECT w.owner, f.actor_id, f.expectation
	FROM owners w
	LEFT JOIN node_state ns ON ns.node_id = w.owner
	CROSS JOIN LATERAL ` + next("w.owner", "") + `
	WHERE w.owner IS NOT NULL AND (ns.node_id IS NULL OR ns.dead_reason IS NOT NULL)
	UNION ALL
	SELECT p.owner, f.actor_id, f.expectation
	FROM pairs p
	CROSS JOIN LATERAL ` + next("p.owner", `
		  AND (x.actor_id, coalesce(x.expectation, '')) > (p.actor_id, p.expectation)`) + `
)
SELECT p.owner, p.actor_id, p.expectation FROM pairs p
CROSS JOIN LATERAL (SELECT 1 FROM ` + orphanFrom + `
	WHERE e.owner_node = p.owner AND e.actor_id = p.actor_id AND coalesce(e.expectation, '') = p.expectation
	  AND ` + orphanWhere + scope + `
	LIMIT 1) orphaned
UNION ALL
SELECT DISTINCT '', e.actor_id, coalesce(e.expectation, '')
FROM ` + orphanFrom + `
WHERE e.owner_node IS NULL AND ` + orphanWhere + scope
}

// lockBatchSQL locks a batch of orphans for a per-episode decision,
// skipping ids already decided in this pass.
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

const markDeadNodesSQL = `WITH ` + nodeStateCTE + `
UPDATE revenant_nodes n SET stopped_at = now(), stop_reason = ns.dead_reason
FROM node_state ns
WHERE n.node_id = ns.node_id AND n.stopped_at IS NULL AND ns.dead_reason IS NOT NULL
RETURNING n.node_id, ns.dead_reason`

const deadOwnersExistSQL = `WITH ` + nodeStateCTE + `
SELECT EXISTS (
	SELECT 1 FROM node_state ns
	WHERE ns.dead_reason IS NOT NULL
	  AND EXISTS (SELECT 1 FROM revenant_episodes e WHERE e.status = 'running' AND e.owner_node = ns.node_id)
)`

const pruneNodesSQL = `DELETE FROM revenant_nodes n
WHERE n.stopped_at < now() - interval '1 day'
  AND NOT EXISTS (SELECT 1 FROM revenant_episodes e WHERE e.status = 'running' AND e.owner_node = n.node_id)`

const notifyEachSQL = `SELECT pg_notify($1, a) FROM unnest($2::text[]) AS a`

// unclaimableSQL: scope parameters start at $1.
func unclaimableSQL(scope string) string {
	return `SELECT e.actor_id, count(*)
FROM revenant_episodes e
WHERE e.status = 'pending' AND e.archived_at IS NULL` + scope + `
  AND NOT EXISTS (SELECT 1 FROM revenant_nodes n
	WHERE n.stopped_at IS NULL AND n.expires_at > now() AND e.actor_id = ANY(n.actors))
GROUP BY 1 ORDER BY 1`
}

// orphanArgs returns the scope condition on e (from $2) and the leading
// arguments ($1 StaleAfter, then the scope's).
func orphanArgs(p *store.OrphanQuery) (string, []any) {
	scope, args := p.Scope.Where("e", 2)
	args = append([]any{p.StaleAfter.Milliseconds()}, args...)
	if p.Episode != uuid.Nil {
		args = append(args, p.Episode)
		scope += " AND e.id = $" + strconv.Itoa(len(args))
	}
	return scope, args
}

// OrphanGroups implements store.Store: one group per owner and pair
// (Postgres recovers every owner's orphans in each statement), planned
// without JIT (withoutJIT): the loose scan's recursive CTEs are estimated
// far above jit_above_cost, and compiling them took 40–55 ms of a query
// that runs in well under a millisecond (a single failover went from 32
// to 96 ms).
func (Store) OrphanGroups(ctx context.Context, q store.Querier, p *store.OrphanQuery) ([]store.OrphanGroup, error) {
	var groups []store.OrphanGroup
	err := withoutJIT(ctx, q, func(q store.Querier) error {
		var err error
		groups, err = orphanGroups(ctx, q, p)
		return err
	})
	return groups, err
}

// withoutJIT runs fn with JIT off: given a pool or a connection, in a
// transaction of its own with SET LOCAL; given a transaction (whose
// settings are the caller's), as it is.
func withoutJIT(ctx context.Context, q store.Querier, fn func(store.Querier) error) error {
	b, ok := q.(interface {
		BeginTx(context.Context, *sql.TxOptions) (*sql.Tx, error)
	})
	if !ok {
		return fn(q)
	}
	tx, err := b.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	if _, err := tx.ExecContext(ctx, `SET LOCAL jit = off`); err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit()
}

func orphanGroups(ctx context.Context, q store.Querier, p *store.OrphanQuery) ([]store.OrphanGroup, error) {
	scope, args := orphanArgs(p)
	rows, err := q.QueryContext(ctx, pairsSQL(scope), args...)
	if err != nil {
		return nil, err
	}
	defer func() { _ = rows.Close() }()
	var out []store.OrphanGroup
	for rows.Next() {
		var g store.OrphanGroup
		if err := rows.Scan(&g.Owner, &g.ActorID, &g.Expectation); err != nil {
			return nil, err
		}
		out = append(out, g)
	}
	return out, rows.Err()
}

// OrphanRecover implements store.Store: one statement per batch.
func (Store) OrphanRecover(ctx context.Context, q store.Querier, p *store.OrphanRecoverParams) ([]store.Recovered, error) {
	p.Restarted = 0
	if len(p.Policies) == 0 {
		p.Done = true
		return nil, nil
	}
	var pa, pe, pp, ps, po []string
	for _, x := range p.Policies {
		pa, pe, pp, ps = append(pa, x.ActorID), append(pe, x.Expectation), append(pp, x.Policy), append(ps, x.Source)
		po = append(po, x.Owner)
	}
	scope, args := orphanArgs(&p.Query)
	first := len(args) + 1
	args = append(args, pq.Array(pa), pq.Array(pe), pq.Array(pp), pq.Array(ps), p.Limit, pq.Array(po))
	if !p.Summarize {
		out, err := scanRecovered(q.QueryContext(ctx, batchByPairSQL(scope, first), args...))
		if err == nil && len(out) < p.Limit {
			p.Done = true
		}
		return out, err
	}
	query := summarizedBatchSQL(scope, first, p.Events != nil, len(args)+1)
	if p.Events != nil {
		args = append(args, p.Events.Recovered, p.Events.Failed, p.Events.DeadLettered)
	}
	return runSummarizedBatch(ctx, q, query, args, p)
}

// runSummarizedBatch runs a summarizedBatchSQL statement and sets
// p.Restarted and p.Done from it.
func runSummarizedBatch(ctx context.Context, q store.Querier, query string, args []any, p *store.OrphanRecoverParams) ([]store.Recovered, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer func() { _ = rows.Close() }()
	var out []store.Recovered
	lockedRows := 0
	for rows.Next() {
		var r store.Recovered
		var id, wf uuid.NullUUID
		var n, notified, locked int
		if err := rows.Scan(&id, &r.ActorID, &r.Action, &r.Reason, &r.PreviousOwner, &wf, &r.WorkflowStepID, &r.Attempts, &n, &notified, &locked); err != nil {
			return nil, fmt.Errorf("reading recovered rows: %w", err)
		}
		if !id.Valid {
			p.Restarted += n
			lockedRows = locked
			continue
		}
		r.ID, r.WorkflowInstanceID = id.UUID, wf.UUID
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	// A row locked but not recovered (lockedRowsJoin) is left for the
	// next batch. A batch that recovered nothing ends the pass all the
	// same, so that no pass can spin on rows it keeps missing: the next
	// pass takes them.
	recovered := len(out) + p.Restarted
	if recovered == 0 || (lockedRows < p.Limit && recovered == lockedRows) {
		p.Done = true
	}
	return out, nil
}

func scanRecovered(rows *sql.Rows, err error) ([]store.Recovered, error) {
	if err != nil {
		return nil, err
	}
	defer func() { _ = rows.Close() }()
	var out []store.Recovered
	for rows.Next() {
		var r store.Recovered
		var wf uuid.NullUUID
		if err := rows.Scan(&r.ID, &r.ActorID, &r.Action, &r.Reason, &r.PreviousOwner, &wf, &r.WorkflowStepID, &r.Attempts); err != nil {
			return nil, fmt.Errorf("reading recovered rows: %w", err)
		}
		r.WorkflowInstanceID = wf.UUID
		out = append(out, r)
	}
	return out, rows.Err()
}

// OrphanLock implements store.Store: FOR UPDATE SKIP LOCKED.
func (Store) OrphanLock(ctx context.Context, tx store.Querier, p *store.OrphanQuery, exclude []uuid.UUID, limit int) ([]store.Orphan, error) {
	scope, args := orphanArgs(p)
	query := lockBatchSQL(scope, len(args)+1)
	ids := make([]string, len(exclude))
	for i, id := range exclude {
		ids[i] = id.String()
	}
	args = append(args, pq.Array(ids), limit)
	return store.ScanOrphans(tx.QueryContext(ctx, query, args...))
}

// OrphanApply implements store.Store.
func (Store) OrphanApply(ctx context.Context, tx store.Querier, decisions []store.Decision) ([]store.Recovered, error) {
	var ids, policies, sources, reasons []string
	for _, d := range decisions {
		ids, policies, sources, reasons = append(ids, d.ID.String()), append(policies, d.Policy), append(sources, d.Source), append(reasons, d.Reason)
	}
	return scanRecovered(tx.QueryContext(ctx, applyDecidedSQL, pq.Array(ids), pq.Array(policies), pq.Array(sources), pq.Array(reasons)))
}

// OrphanList implements store.Store.
func (Store) OrphanList(ctx context.Context, q store.Querier, p *store.OrphanQuery, limit int) ([]store.Orphan, error) {
	scope, args := orphanArgs(p)
	query := listOrphansSQL(scope, len(args)+1)
	return store.ScanOrphans(q.QueryContext(ctx, query, append(args, limit)...))
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

// PrepareConn implements store.Store. SET takes no parameters; the value
// is an integer formatted here.
func (Store) PrepareConn(ctx context.Context, conn store.Querier, statementTimeout time.Duration) error {
	_, err := conn.ExecContext(ctx, fmt.Sprintf("SET statement_timeout = %d", statementTimeout.Milliseconds()))
	return err
}

// NotifyEach implements store.Store.
func (Store) NotifyEach(ctx context.Context, q store.Querier, channel string, payloads []string) error {
	_, err := q.ExecContext(ctx, notifyEachSQL, channel, pq.Array(payloads))
	return err
}
