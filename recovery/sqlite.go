package recovery

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"strings"

	"github.com/google/uuid"

	"github.com/revenant-go/revenant"
	"github.com/revenant-go/revenant/bus"
	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/internal/dbx"
	"github.com/revenant-go/revenant/internal/dialect"
	"github.com/revenant-go/revenant/internal/schema"
	"github.com/revenant-go/revenant/internal/store"
)

// The SQLite side of recovery. SQLite has no advisory locks, so a node is
// dead when it stopped or its heartbeat TTL lapsed. It admits one writer at
// a time, so there is no SKIP LOCKED: a by-policy sweep recovers each dead
// owner's orphans with one UPDATE per batch that re-checks "running and
// orphaned" under the write lock; a callback sweep lists, decides and
// applies each batch in one write transaction, its UPDATE re-checking
// "running under the token it was listed with". Both are compare-and-sets,
// as on Postgres.

const sqliteNow = dialect.SQLiteNow

const sqliteNodeStateCTE = `node_state AS (
	SELECT n.node_id,
		CASE
			WHEN n.stopped_at IS NOT NULL THEN '` + ReasonOwnerStopped + `'
			WHEN n.expires_at < ` + sqliteNow + ` THEN '` + ReasonOwnerExpired + `'
		END AS dead_reason
	FROM revenant_nodes n
)`

// sqliteReasonExpr is o.reason of orphanFrom; $1 is StaleAfter in ms.
var sqliteReasonExpr = `(CASE
	WHEN ns.node_id IS NULL THEN
		CASE WHEN coalesce(e.last_activity_at, e.started_at, e.created_at) < ` + dialect.SQLiteNowMinusMillis("$1") + `
		THEN '` + ReasonNoActivity + `' END
	ELSE ns.dead_reason
END)`

const sqliteOrphanFrom = `revenant_episodes e
LEFT JOIN node_state ns ON ns.node_id = e.owner_node`

var sqliteOrphanWhere = `e.status = 'running' AND e.archived_at IS NULL AND ` + sqliteReasonExpr + ` IS NOT NULL AND ` + schema.Bumpable("e")

// sqliteExhaustedOrphansSQL is exhaustedOrphansSQL on SQLite.
func sqliteExhaustedOrphansSQL(scope string, limitArg int) string {
	return `WITH ` + sqliteNodeStateCTE + `
SELECT e.id, e.actor_id
FROM ` + sqliteOrphanFrom + `
WHERE e.status = 'running' AND e.archived_at IS NULL AND ` + sqliteReasonExpr + ` IS NOT NULL AND ` + schema.Exhausted("e") + scope + `
ORDER BY e.id
LIMIT $` + strconv.Itoa(limitArg)
}

var sqliteOrphanFromWhere = sqliteOrphanFrom + `
WHERE ` + sqliteOrphanWhere

// sqliteListOrphansSQL lists orphans (with their reason), leaving out the
// ids in the JSON array at firstArg; firstArg+1 is the limit. Sweeps take
// them in index order (recovered rows leave the running index, so each
// batch starts afresh); the dry run wants id order.
func sqliteListOrphansSQL(scope string, firstArg int, byID bool) string {
	order := ""
	if byID {
		order = "\nORDER BY e.id"
	}
	return `WITH ` + sqliteNodeStateCTE + `
SELECT ` + store.QualifiedEpisodeColumns("e") + `, ` + sqliteReasonExpr + `
FROM ` + sqliteOrphanFromWhere + scope + `
	AND e.id NOT IN (SELECT value FROM json_each($` + strconv.Itoa(firstArg) + `))` + order + `
LIMIT $` + strconv.Itoa(firstArg+1)
}

// sqliteApplySQL applies decisions given as a JSON array of
// [id, policy, source, reason, claim token] to episodes still running under
// that token. RETURNING may only name the updated table on SQLite, so the
// action is read back from the new row (status, error class).
var sqliteApplySQL = `WITH p AS (
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
	finished_at = CASE WHEN c.action = 'restart' THEN NULL ELSE ` + sqliteNow + ` END,
	owner_node = NULL,
	phase = NULL,
	claim_token = e.claim_token + 1,
	last_activity_at = ` + sqliteNow + `
FROM c
WHERE e.id = c.id AND +e.status = 'running' AND e.claim_token = c.token
RETURNING id, status, coalesce(error_class, ''), attempts`

// sqliteMarkDeadNodesSQL: without locks, a live (not stopped) node is dead
// only when its TTL lapsed.
const sqliteMarkDeadNodesSQL = `UPDATE revenant_nodes SET stopped_at = ` + sqliteNow + `
WHERE stopped_at IS NULL AND expires_at < ` + sqliteNow + `
RETURNING node_id, '` + ReasonOwnerExpired + `'`

const sqliteDeadOwnersExistSQL = `WITH ` + sqliteNodeStateCTE + `
SELECT EXISTS (
	SELECT 1 FROM node_state ns
	WHERE ns.dead_reason IS NOT NULL
	  AND EXISTS (SELECT 1 FROM revenant_episodes e WHERE e.status = 'running' AND e.owner_node = ns.node_id)
)`

const sqlitePruneNodesSQL = `DELETE FROM revenant_nodes
WHERE stopped_at < strftime('%Y-%m-%d %H:%M:%f', 'now', '-1 day')
  AND NOT EXISTS (SELECT 1 FROM revenant_episodes e WHERE e.status = 'running' AND e.owner_node = revenant_nodes.node_id)`

const sqliteAgentDefsSQL = `SELECT actor_id, recovery_policy, expectation_policies, enabled
FROM revenant_agent_definitions WHERE actor_id IN (SELECT value FROM json_each($1))`

func sqliteUnclaimableSQL(scope string) string {
	return `SELECT e.actor_id, count(*)
FROM revenant_episodes e
WHERE e.status = 'pending' AND e.archived_at IS NULL` + scope + `
  AND NOT EXISTS (SELECT 1 FROM revenant_nodes n
	WHERE n.stopped_at IS NULL AND n.expires_at > ` + sqliteNow + `
	  AND EXISTS (SELECT 1 FROM json_each(n.actors) a WHERE a.value = e.actor_id))
GROUP BY 1 ORDER BY 1`
}

func jsonArray(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// sqliteCallbackBatch is callbackBatch on SQLite: the batch is listed,
// decided and applied in one write transaction, so a failing batch changes
// nothing.
func sqliteCallbackBatch(ctx context.Context, db conn, c *config, res *Result, decided *[]string) (int, error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("sweep: beginning batch: %w", dbx.Explain(err))
	}
	defer func() { _ = tx.Rollback() }()
	scope, scopeArgs := c.scope(2)
	args := append([]any{c.StaleAfter.Milliseconds()}, scopeArgs...)
	args = append(args, jsonArray(*decided), c.BatchSize)
	eps, reasons, err := listOrphans(ctx, tx, sqliteListOrphansSQL(scope, len(args)-1, false), args...)
	if err != nil {
		return 0, dbx.Explain(err)
	}
	var decisions [][5]any
	byID := map[uuid.UUID]Event{}
	for _, d := range c.decide(ctx, eps, reasons, res, decided) {
		ep := d.ep
		decisions = append(decisions, [5]any{ep.ID.String(), string(d.policy), SourceCallback, d.reason, ep.ClaimToken})
		byID[ep.ID] = Event{EpisodeID: ep.ID, ActorID: ep.ActorID, Reason: d.reason, PreviousOwner: ep.OwnerNode,
			WorkflowInstanceID: ep.WorkflowInstanceID, WorkflowStepID: ep.WorkflowStepID}
	}
	before := *res // as on Postgres: refusals stay reported if the batch fails
	var events []Event
	if len(decisions) > 0 {
		rows, err := tx.QueryContext(ctx, sqliteApplySQL, jsonArray(decisions))
		if err != nil {
			*res = before
			return 0, fmt.Errorf("sweep: recovering a batch: %w", dbx.Explain(err))
		}
		for rows.Next() {
			var id uuid.UUID
			var status, class string
			var attempts int
			if err := rows.Scan(&id, &status, &class, &attempts); err != nil {
				rows.Close()
				*res = before
				return 0, fmt.Errorf("sweep: reading recovered rows: %w", err)
			}
			ev := byID[id]
			countRecovered(ctx, c, res, &ev, status, class, attempts)
			events = append(events, ev)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			*res = before
			return 0, fmt.Errorf("sweep: recovering a batch: %w", dbx.Explain(err))
		}
	}
	if c.Bus != nil && bus.Transactional(c.Bus) && len(events) > 0 {
		if err := c.Bus.PublishTx(ctx, tx, busEvents(events)...); err != nil {
			*res = before
			return 0, fmt.Errorf("sweep: publishing events: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		*res = before
		return 0, fmt.Errorf("sweep: committing batch: %w", dbx.Explain(err))
	}
	c.emit(ctx, events)
	return len(eps), nil
}

// sqliteGroupsSQL lists the (owner, reason, actor, expectation) groups of
// candidate orphans. It reads only the running-owner index (which covers
// every column it needs) and judges each owner once: a dead node's rows are
// orphans; an owner that is not a known node is a candidate whose rows the
// batch statement checks one by one for staleness. (Running episodes are
// never archived, so archived_at is left to the batch statement too.)
func sqliteGroupsSQL(scope string) string {
	return `WITH ` + sqliteNodeStateCTE + `,
g AS MATERIALIZED (
	SELECT e.owner_node, e.actor_id, coalesce(e.expectation, '') AS expectation, count(*) AS n
	FROM revenant_episodes e INDEXED BY revenant_episodes_running_owner_idx
	WHERE e.status = 'running'` + scope + `
	GROUP BY e.owner_node, e.actor_id, e.expectation
)
SELECT g.owner_node, CASE WHEN ns.node_id IS NULL THEN '` + ReasonNoActivity + `' ELSE ns.dead_reason END AS reason,
	g.actor_id, g.expectation, g.n
FROM g LEFT JOIN node_state ns ON ns.node_id = g.owner_node
WHERE ns.node_id IS NULL OR ns.dead_reason IS NOT NULL`
}

// sqliteBatchByOwnerSQL recovers up to a batch of one owner's orphans in
// one statement: the orphan test (owner $k, reason $k+1), the policy join
// (pairs as a JSON array of [actor, expectation, policy, source] at $k+2)
// and the UPDATE run under SQLite's single write lock, so no other writer
// can interleave. The owner and reason are parameters because RETURNING
// may name only the updated table on SQLite. The unary + on the final
// status re-check keeps the planner from driving the update by the status
// index (a scan of every running row per batch) instead of by c's ids.
func sqliteBatchByOwnerSQL(scope string, k int) string {
	a := func(i int) string { return "$" + strconv.Itoa(k+i) }
	action := strings.NewReplacer("e.attempts", "u.attempts", "e.max_attempts", "u.max_attempts").Replace(actionExpr)
	return `WITH ` + sqliteNodeStateCTE + `,
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
	finished_at = CASE WHEN ` + action + ` = 'restart' THEN NULL ELSE ` + sqliteNow + ` END,
	owner_node = NULL,
	phase = NULL,
	claim_token = u.claim_token + 1,
	last_activity_at = ` + sqliteNow + `
FROM p
WHERE u.rowid IN (
	SELECT e.rowid FROM ` + sqliteOrphanFrom + `
	WHERE ` + sqliteOrphanWhere + scope + ` AND e.owner_node IS ` + a(0) + ` AND ` + sqliteReasonExpr + ` = ` + a(1) + `
	  AND EXISTS (SELECT 1 FROM p WHERE p.actor_id = e.actor_id AND p.expectation = coalesce(e.expectation, ''))
	LIMIT ` + a(3) + `
) AND +u.status = 'running' AND p.actor_id = u.actor_id AND p.expectation = coalesce(u.expectation, '')
RETURNING id, actor_id, status, coalesce(error_class, ''), workflow_instance_id, coalesce(workflow_step_id, ''), attempts`
}

// sweepSQLiteByOwner is sweepByPairs on SQLite: policies are resolved per
// (actor, expectation) up front, then each dead owner's orphans are
// recovered a batch per statement.
func sweepSQLiteByOwner(ctx context.Context, db conn, c *config, res *Result) error {
	scope, scopeArgs := c.scope(2)
	rows, err := db.QueryContext(ctx, sqliteGroupsSQL(scope), append([]any{c.StaleAfter.Milliseconds()}, scopeArgs...)...)
	if err != nil {
		return fmt.Errorf("sweep: finding orphans: %w", dbx.Explain(err))
	}
	type group struct{ owner, reason string }
	groups := map[group]bool{}
	var order []group
	counts := map[pairKey]int{}
	var pairs []pairCount
	for rows.Next() {
		var owner sql.NullString
		var g group
		var p pairKey
		var n int
		if err := rows.Scan(&owner, &g.reason, &p.actor, &p.expectation, &n); err != nil {
			rows.Close()
			return fmt.Errorf("sweep: finding orphans: %w", err)
		}
		g.owner = owner.String
		if !groups[g] {
			groups[g] = true
			order = append(order, g)
		}
		if _, ok := counts[p]; !ok {
			pairs = append(pairs, pairCount{pairKey: p})
		}
		counts[p] += n
	}
	for i := range pairs {
		pairs[i].n = counts[pairs[i].pairKey]
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("sweep: finding orphans: %w", dbx.Explain(err))
	}
	if len(order) == 0 {
		return nil
	}
	ok, err := resolvePairs(ctx, db, c, pairs, res)
	if err != nil || len(ok) == 0 {
		return err
	}
	rows4 := make([][4]string, len(ok))
	for i, p := range ok {
		rows4[i] = [4]string{p.actor, p.expectation, string(p.policy), p.source}
	}
	pairsJSON := jsonArray(rows4)
	k := 2 + len(scopeArgs)
	query := sqliteBatchByOwnerSQL(scope, k)
	for _, g := range order {
		var owner any
		if g.owner != "" {
			owner = g.owner
		}
		args := append([]any{c.StaleAfter.Milliseconds()}, scopeArgs...)
		args = append(args, owner, g.reason, pairsJSON, c.BatchSize)
		for {
			n, err := sqliteOwnerBatch(ctx, db, c, res, g.owner, g.reason, query, args)
			if err != nil {
				return err
			}
			if n < c.BatchSize {
				break
			}
		}
	}
	return nil
}

// sqliteOwnerBatch runs one by-owner batch; with a transactional bus, the
// batch and its events commit together.
func sqliteOwnerBatch(ctx context.Context, db conn, c *config, res *Result, owner, reason, query string, args []any) (int, error) {
	inTx := c.Bus != nil && bus.Transactional(c.Bus)
	var ex revenant.Executor = db
	var tx *sql.Tx
	if inTx {
		var err error
		if tx, err = db.BeginTx(ctx, nil); err != nil {
			return 0, fmt.Errorf("sweep: beginning batch: %w", dbx.Explain(err))
		}
		defer func() { _ = tx.Rollback() }()
		ex = tx
	}
	before := *res
	rows, err := ex.QueryContext(ctx, query, args...)
	if err != nil {
		return 0, fmt.Errorf("sweep: recovering a batch: %w", dbx.Explain(err))
	}
	var events []Event
	for rows.Next() {
		ev := Event{Reason: reason, PreviousOwner: owner}
		var status, class string
		var wf uuid.NullUUID
		var attempts int
		if err := rows.Scan(&ev.EpisodeID, &ev.ActorID, &status, &class, &wf, &ev.WorkflowStepID, &attempts); err != nil {
			rows.Close()
			*res = before
			return 0, fmt.Errorf("sweep: reading recovered rows: %w", err)
		}
		ev.WorkflowInstanceID = wf.UUID
		countRecovered(ctx, c, res, &ev, status, class, attempts)
		events = append(events, ev)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		*res = before
		return 0, fmt.Errorf("sweep: recovering a batch: %w", dbx.Explain(err))
	}
	if inTx {
		if len(events) > 0 {
			if err := c.Bus.PublishTx(ctx, tx, busEvents(events)...); err != nil {
				*res = before
				return 0, fmt.Errorf("sweep: publishing events: %w", err)
			}
		}
		if err := tx.Commit(); err != nil {
			*res = before
			return 0, fmt.Errorf("sweep: committing batch: %w", dbx.Explain(err))
		}
	}
	c.emit(ctx, events)
	return len(events), nil
}

// countRecovered reads the action from a recovered row's new status and
// error class, counts it and sets the event's type.
func countRecovered(ctx context.Context, c *config, res *Result, ev *Event, status, class string, attempts int) {
	switch {
	case status == string(episodes.StatusPending):
		res.Restarted++
		ev.Type = EventRecovered
	case class == "max_attempts_exceeded":
		res.DeadLettered++
		ev.Type, ev.ErrorClass = EventDeadLettered, class
		c.Logger.WarnContext(ctx, "revenant: episode dead-lettered after max attempts",
			slog.String("episode", ev.EpisodeID.String()), slog.String("actor", ev.ActorID), slog.Int("attempts", attempts))
	default:
		res.Failed++
		ev.Type, ev.ErrorClass = EventFailed, "orphaned"
	}
}
