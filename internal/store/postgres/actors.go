package postgres

import (
	"context"
	"time"

	"github.com/lib/pq"

	"github.com/revenant-go/revenant/internal/store"
)

const actorDefinitionsSQL = `SELECT ` + store.ActorDefinitionColumns + `
FROM revenant_actor_definitions WHERE actor_id = ANY($1::text[])`

const actorDefinitionListSQL = `SELECT ` + store.ActorDefinitionColumns + `
FROM revenant_actor_definitions ORDER BY actor_id`

const actorDefinitionUpsertSQL = `INSERT INTO revenant_actor_definitions (actor_id, recovery_policy, expectation_policies, enabled)
VALUES ($1, $2, $3::jsonb, $4)
ON CONFLICT (actor_id) DO UPDATE SET recovery_policy = EXCLUDED.recovery_policy,
	expectation_policies = EXCLUDED.expectation_policies, enabled = EXCLUDED.enabled, updated_at = now()`

const actorDefinitionSetEnabledSQL = `UPDATE revenant_actor_definitions SET enabled = $2, updated_at = now() WHERE actor_id = $1`

const actorDefinitionDeleteSQL = `DELETE FROM revenant_actor_definitions WHERE actor_id = $1`

// actorKnownSQL: a live node that registered the actor and whose claims
// reach the scope ($2 stack, NULL for none; $3 env), or a definition row.
const actorKnownSQL = `SELECT EXISTS (
	SELECT 1 FROM revenant_nodes n
	WHERE n.stopped_at IS NULL AND n.expires_at > now() AND $1 = ANY(n.actors)
	  AND n.env IS NOT DISTINCT FROM $3::text AND ($2::text IS NULL OR n.stack = $2::text)
) OR EXISTS (SELECT 1 FROM revenant_actor_definitions d WHERE d.actor_id = $1)`

const nodePoliciesSQL = `SELECT node_id, actor_policies FROM revenant_nodes WHERE node_id = ANY($1::text[])`

const listDeadNodesSQL = `WITH ` + nodeStateCTE + `
SELECT ns.node_id, ns.dead_reason FROM node_state ns JOIN revenant_nodes n ON n.node_id = ns.node_id
WHERE n.stopped_at IS NULL AND ns.dead_reason IS NOT NULL
ORDER BY ns.node_id`

// nodeListSQL: every node with the state the sweep's rules give it now.
const nodeListSQL = `WITH ` + nodeStateCTE + `
SELECT n.node_id, n.name, n.stack, n.env, n.lock_key,
	n.lock_key IS NOT NULL AND EXISTS (SELECT 1 FROM held h WHERE h.lock_key = n.lock_key),
	n.started_at, n.heartbeat_at, n.expires_at, n.stopped_at, n.stop_reason, ns.dead_reason,
	to_json(n.actors)::text, n.actor_policies::text,
	(SELECT count(*) FROM revenant_episodes e WHERE e.status = 'running' AND e.owner_node = n.node_id),
	now(), n.last_sweep_at, n.last_sweep::text
FROM revenant_nodes n JOIN node_state ns ON ns.node_id = n.node_id
ORDER BY n.started_at, n.node_id`

// backlogSQL groups open episodes and dead letters by actor and scope.
// A group is claimable when a live node (by the sweep's rules) registered
// the actor, in its env, and in its stack unless the group has none.
const backlogSQL = `WITH ` + nodeStateCTE + `,
g AS (
	SELECT e.actor_id, e.source_stack, e.source_env,
		count(*) FILTER (WHERE e.status = 'pending' AND e.run_at <= now()) AS due,
		count(*) FILTER (WHERE e.status = 'pending' AND e.run_at > now()) AS scheduled,
		count(*) FILTER (WHERE e.status = 'running') AS running,
		count(*) FILTER (WHERE e.status = 'blocked') AS blocked,
		count(*) FILTER (WHERE e.status = 'failed' AND e.workflow_instance_id IS NULL) AS failed,
		(extract(epoch FROM now() - min(e.run_at) FILTER (WHERE e.status = 'pending' AND e.run_at <= now())) * 1000)::bigint AS wait
	FROM revenant_episodes e
	WHERE e.status IN ('pending', 'running', 'blocked', 'failed') AND e.archived_at IS NULL
	GROUP BY 1, 2, 3
)
SELECT g.actor_id, coalesce(g.source_stack, ''), coalesce(g.source_env, ''), g.due, g.scheduled, g.running, g.blocked, g.failed, g.wait,
	EXISTS (SELECT 1 FROM revenant_nodes n JOIN node_state ns ON ns.node_id = n.node_id
		WHERE ns.dead_reason IS NULL AND g.actor_id = ANY(n.actors) AND n.env IS NOT DISTINCT FROM g.source_env
			AND (g.source_stack IS NULL OR n.stack = g.source_stack))
FROM g
ORDER BY 1, 2, 3`

// EpisodeBacklog implements store.Store.
func (Store) EpisodeBacklog(ctx context.Context, q store.Querier) ([]store.BacklogGroup, error) {
	return store.ScanBacklogGroups(q.QueryContext(ctx, backlogSQL))
}

// Clock implements store.Store.
func (Store) Clock(ctx context.Context, q store.Querier) (time.Time, error) {
	return store.ScanClock(q.QueryRowContext(ctx, `SELECT now()`))
}

// NodeList implements store.Store.
func (Store) NodeList(ctx context.Context, q store.Querier) ([]store.NodeInfo, error) {
	return store.ScanNodeInfos(q.QueryContext(ctx, nodeListSQL))
}

// ActorDefinitions implements store.Store.
func (Store) ActorDefinitions(ctx context.Context, q store.Querier, actors []string) ([]store.ActorDefinition, error) {
	return store.ScanActorDefinitions(q.QueryContext(ctx, actorDefinitionsSQL, pq.Array(actors)))
}

// ActorDefinitionList implements store.Store.
func (Store) ActorDefinitionList(ctx context.Context, q store.Querier) ([]store.ActorDefinition, error) {
	return store.ScanActorDefinitions(q.QueryContext(ctx, actorDefinitionListSQL))
}

// ActorDefinitionUpsert implements store.Store.
func (Store) ActorDefinitionUpsert(ctx context.Context, q store.Querier, d *store.ActorDefinition) error {
	_, err := q.ExecContext(ctx, actorDefinitionUpsertSQL, d.ActorID, d.RecoveryPolicy, string(d.ExpectationPolicies), d.Enabled)
	return err
}

// ActorDefinitionSetEnabled implements store.Store.
func (Store) ActorDefinitionSetEnabled(ctx context.Context, q store.Querier, actorID string, enabled bool) (bool, error) {
	return store.Affected(q.ExecContext(ctx, actorDefinitionSetEnabledSQL, actorID, enabled))
}

// ActorDefinitionDelete implements store.Store.
func (Store) ActorDefinitionDelete(ctx context.Context, q store.Querier, actorID string) (bool, error) {
	return store.Affected(q.ExecContext(ctx, actorDefinitionDeleteSQL, actorID))
}

// ActorKnown implements store.Store.
func (Store) ActorKnown(ctx context.Context, q store.Querier, a store.ActorScope) (bool, error) {
	var known bool
	err := q.QueryRowContext(ctx, actorKnownSQL, a.ActorID, store.NullString(a.Stack), store.NullString(a.Env)).Scan(&known)
	return known, err
}

// NodePolicies implements store.Store.
func (Store) NodePolicies(ctx context.Context, q store.Querier, nodeIDs []string) (map[string][]byte, error) {
	return store.ScanNodePolicies(q.QueryContext(ctx, nodePoliciesSQL, pq.Array(nodeIDs)))
}

// NodeListDead implements store.Store.
func (Store) NodeListDead(ctx context.Context, q store.Querier) ([]store.DeadNode, error) {
	return store.ScanDeadNodes(q.QueryContext(ctx, listDeadNodesSQL))
}
