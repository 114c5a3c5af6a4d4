package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/revenant-go/revenant/internal/dbx"

	"github.com/revenant-go/revenant/internal/store"
)

const nodeReadinessSQL = `SELECT stopped_at IS NOT NULL, stop_reason, expires_at <= now(),
	(extract(epoch FROM now() - heartbeat_at) * 1000)::bigint
FROM revenant_nodes WHERE node_id = $1`

const nodeRecordSweepSQL = `UPDATE revenant_nodes SET last_sweep_at = now(), last_sweep = $2::jsonb WHERE node_id = $1`

const workflowShapeUpsertSQL = `INSERT INTO revenant_workflow_definitions (workflow_id, stack, env, shape, node_id, updated_at)
VALUES ($1, $2, $3, $4::jsonb, $5, now())
ON CONFLICT (workflow_id, stack, env) DO UPDATE SET shape = excluded.shape, node_id = excluded.node_id, updated_at = now()
WHERE revenant_workflow_definitions.shape IS DISTINCT FROM excluded.shape`

const workflowShapeSQL = `SELECT shape::text FROM revenant_workflow_definitions WHERE workflow_id = $1 AND stack = $2 AND env = $3`

const workflowListSQL = `SELECT i.id, i.workflow_id, i.status, i.subject, i.source_stack, i.source_env, i.compensating,
	i.created_at, i.updated_at, i.finished_at,
	(SELECT json_object_agg(c.status, c.n) FROM (
		SELECT s.status, count(*) AS n FROM revenant_workflow_steps s WHERE s.instance_id = i.id GROUP BY s.status) c)::text
FROM revenant_workflow_instances i
WHERE ($1 = '' OR i.workflow_id = $1) AND ($2 = '' OR i.status = $2) AND ($4::uuid IS NULL OR i.id = $4::uuid)
ORDER BY i.created_at DESC, i.id DESC
LIMIT $3`

// NodeReadiness implements store.Store.
func (Store) NodeReadiness(ctx context.Context, q store.Querier, nodeID string) (*store.NodeReadiness, error) {
	return store.ScanNodeReadiness(q.QueryRowContext(ctx, nodeReadinessSQL, nodeID))
}

// NodeRecordSweep implements store.Store.
func (Store) NodeRecordSweep(ctx context.Context, q store.Querier, nodeID string, record []byte) error {
	_, err := q.ExecContext(ctx, nodeRecordSweepSQL, nodeID, string(record))
	return err
}

// WorkflowShapeUpsert implements store.Store.
func (Store) WorkflowShapeUpsert(ctx context.Context, q store.Querier, p *store.WorkflowShapeParams) error {
	_, err := q.ExecContext(ctx, workflowShapeUpsertSQL, p.WorkflowID, p.Stack, p.Env, string(p.Shape), store.NullString(p.NodeID))
	return err
}

// WorkflowShape implements store.Store.
func (Store) WorkflowShape(ctx context.Context, q store.Querier, workflowID, stack, env string) ([]byte, error) {
	var shape []byte
	err := q.QueryRowContext(ctx, workflowShapeSQL, workflowID, stack, env).Scan(&shape)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	return shape, err
}

// WorkflowList implements store.Store.
func (Store) WorkflowList(ctx context.Context, q store.Querier, p *store.WorkflowListParams) ([]store.WorkflowSummary, error) {
	return store.ScanWorkflowSummaries(q.QueryContext(ctx, workflowListSQL, p.WorkflowID, p.Status, p.Limit, p.IDArg()))
}

// nodeWatchTargetSQL picks the live node after $1 in node id order (the
// first one when $1 is last: a ring) among those whose lock is held now
// (a node whose lock is gone is dead, and waiting on it would return at
// once), in the scope ($2/$3 a stack and env, $4/$5 whether any matches).
const nodeWatchTargetSQL = `WITH ` + nodeStateCTE + `
SELECT n.node_id, n.lock_key FROM revenant_nodes n
WHERE n.stopped_at IS NULL AND n.lock_key IS NOT NULL AND n.node_id <> $1
	AND EXISTS (SELECT 1 FROM held h WHERE h.lock_key = n.lock_key)
	AND ($4 OR coalesce(n.stack, '') = $2) AND ($5 OR coalesce(n.env, '') = $3)
ORDER BY n.node_id < $1, n.node_id
LIMIT 1`

// NodeWatchTarget implements store.Store.
func (Store) NodeWatchTarget(ctx context.Context, q store.Querier, nodeID string, scope store.Scope) (string, int64, bool, error) {
	var (
		id  string
		key int64
	)
	err := q.QueryRowContext(ctx, nodeWatchTargetSQL, nodeID, scope.Stack, scope.Env, scope.AllStacks, scope.AllEnvs).Scan(&id, &key)
	if errors.Is(err, sql.ErrNoRows) {
		return "", 0, false, nil
	}
	return id, key, err == nil, err
}

// NodeAwaitLock implements store.Store: a shared transaction-level lock
// request waits behind the holder's exclusive session lock, and (in
// autocommit) is released as soon as it is granted. With timeout, the
// wait ends by itself with lock_timeout (SQLSTATE 55P03, ErrWaitTimeout)
// instead of a canceled context, which lib/pq answers by closing the
// connection.
func (Store) NodeAwaitLock(ctx context.Context, conn store.Querier, key int64, timeout time.Duration) error {
	_, err := conn.ExecContext(ctx, fmt.Sprintf(`SET lock_timeout = %d`, timeout.Milliseconds()))
	if err == nil {
		_, err = conn.ExecContext(ctx, `SELECT pg_advisory_xact_lock_shared($1)`, key)
	}
	if dbx.SQLState(err) == "55P03" {
		return store.ErrWaitTimeout
	}
	return err
}
