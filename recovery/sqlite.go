package recovery

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"

	"github.com/google/uuid"

	"github.com/revenant-go/revenant/bus"
	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/internal/dbx"
	"github.com/revenant-go/revenant/internal/dialect"
)

// The SQLite side of recovery. SQLite has no advisory locks, so a node is
// dead when it stopped or its heartbeat TTL lapsed; it has one writer at a
// time, so a batch is listed and applied inside one write transaction
// (opened BEGIN IMMEDIATE by sqlite.Open) and every UPDATE still re-checks
// "running under the token it was listed with": a compare-and-set, as on
// Postgres.

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

var sqliteOrphanFromWhere = `revenant_episodes e
LEFT JOIN node_state ns ON ns.node_id = e.owner_node
WHERE e.status = 'running' AND e.archived_at IS NULL AND ` + sqliteReasonExpr + ` IS NOT NULL`

// sqliteListOrphansSQL lists orphans (with their reason) in id order,
// leaving out the ids in the JSON array at firstArg; firstArg+1 is the
// limit.
func sqliteListOrphansSQL(scope string, firstArg int) string {
	return `WITH ` + sqliteNodeStateCTE + `
SELECT ` + episodes.QualifiedColumns("e") + `, ` + sqliteReasonExpr + `
FROM ` + sqliteOrphanFromWhere + scope + `
	AND e.id NOT IN (SELECT value FROM json_each($` + strconv.Itoa(firstArg) + `))
ORDER BY e.id
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
WHERE e.id = c.id AND e.status = 'running' AND e.claim_token = c.token
RETURNING id, status, coalesce(error_class, '')`

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

// sweepSQLite recovers orphans batch by batch: each batch is listed,
// decided (registry, database definitions or the callback) and applied in
// one write transaction, so a failing batch changes nothing.
func sweepSQLite(ctx context.Context, db conn, c *config, res *Result) error {
	skipped := []string{}
	defs := map[string]*agentDef{}
	loaded := map[string]bool{}
	for {
		n, err := sqliteBatch(ctx, db, c, res, &skipped, defs, loaded)
		if err != nil {
			return err
		}
		if n < c.BatchSize {
			return nil
		}
	}
}

// sqliteBatch recovers one batch. defs caches the agent definitions of the
// actors in loaded across batches.
func sqliteBatch(ctx context.Context, db conn, c *config, res *Result, skipped *[]string, defs map[string]*agentDef, loaded map[string]bool) (int, error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("sweep: beginning batch: %w", dbx.Explain(err))
	}
	defer func() { _ = tx.Rollback() }()
	scope, scopeArgs := c.scope(2)
	args := append([]any{c.StaleAfter.Milliseconds()}, scopeArgs...)
	args = append(args, jsonArray(*skipped), c.BatchSize)
	eps, reasons, err := listOrphans(ctx, tx, sqliteListOrphansSQL(scope, len(args)-1), args...)
	if err != nil {
		return 0, dbx.Explain(err)
	}
	var missing []string
	for _, ep := range eps {
		if !loaded[ep.ActorID] {
			loaded[ep.ActorID] = true
			missing = append(missing, ep.ActorID)
		}
	}
	if c.ResolvePolicy == nil && len(missing) > 0 {
		got, err := loadDefinitions(ctx, tx, true, missing)
		if err != nil {
			for _, a := range missing {
				delete(loaded, a)
			}
			return 0, fmt.Errorf("sweep: %w", err)
		}
		for a, d := range got {
			defs[a] = d
		}
	}
	r := &resolver{registry: c.Registry, defs: defs}
	before := *res
	var decisions [][5]any
	byID := map[uuid.UUID]Event{}
	for i, ep := range eps {
		var v resolved
		if c.ResolvePolicy != nil {
			p, err := c.callback(ctx, ep)
			v = resolved{policy: p, source: SourceCallback, err: err}
		} else {
			v = r.resolve(ep.ActorID, ep.Expectation)
		}
		if v.err != nil {
			*skipped = append(*skipped, ep.ID.String())
			res.Skipped++
			res.Errors = append(res.Errors, EpisodeError{EpisodeID: ep.ID, ActorID: ep.ActorID, Err: v.err})
			c.Logger.ErrorContext(ctx, "revenant: sweep leaves orphan untouched", slog.String("episode", ep.ID.String()), slog.Any("error", v.err))
			continue
		}
		decisions = append(decisions, [5]any{ep.ID.String(), string(v.policy), v.source, reasons[i], ep.ClaimToken})
		byID[ep.ID] = Event{EpisodeID: ep.ID, ActorID: ep.ActorID, Reason: reasons[i], PreviousOwner: ep.OwnerNode,
			WorkflowInstanceID: ep.WorkflowInstanceID, WorkflowStepID: ep.WorkflowStepID}
	}
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
			if err := rows.Scan(&id, &status, &class); err != nil {
				rows.Close()
				*res = before
				return 0, fmt.Errorf("sweep: reading recovered rows: %w", err)
			}
			ev := byID[id]
			switch {
			case status == string(episodes.StatusPending):
				res.Restarted++
				ev.Type = EventRecovered
			case class == "max_attempts_exceeded":
				res.DeadLettered++
				ev.Type, ev.ErrorClass = EventDeadLettered, class
				c.Logger.WarnContext(ctx, "revenant: episode dead-lettered after max attempts",
					slog.String("episode", id.String()), slog.String("actor", ev.ActorID))
			default:
				res.Failed++
				ev.Type, ev.ErrorClass = EventFailed, "orphaned"
			}
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
