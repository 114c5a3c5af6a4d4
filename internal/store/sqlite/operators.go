package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/revenant-go/revenant/internal/store"
)

const nodeReadinessSQL = `SELECT stopped_at IS NOT NULL, stop_reason, expires_at <= ` + now + `,
	CAST((julianday(` + now + `) - julianday(heartbeat_at)) * 86400000 AS INTEGER)
FROM revenant_nodes WHERE node_id = $1`

const nodeRecordSweepSQL = `UPDATE revenant_nodes SET last_sweep_at = ` + now + `, last_sweep = $2 WHERE node_id = $1`

const workflowShapeUpsertSQL = `INSERT INTO revenant_workflow_definitions (workflow_id, stack, env, shape, node_id, updated_at)
VALUES ($1, $2, $3, $4, $5, ` + now + `)
ON CONFLICT (workflow_id, stack, env) DO UPDATE SET shape = excluded.shape, node_id = excluded.node_id, updated_at = ` + now + `
WHERE revenant_workflow_definitions.shape IS NOT excluded.shape`

const workflowShapeSQL = `SELECT shape FROM revenant_workflow_definitions WHERE workflow_id = $1 AND stack = $2 AND env = $3`

const workflowListSQL = `SELECT i.id, i.workflow_id, i.status, i.subject, i.source_stack, i.source_env, i.compensating,
	i.created_at, i.updated_at, i.finished_at,
	(SELECT json_group_object(c.status, c.n) FROM (
		SELECT s.status, count(*) AS n FROM revenant_workflow_steps s WHERE s.instance_id = i.id GROUP BY s.status) c)
FROM revenant_workflow_instances i
WHERE ($1 = '' OR i.workflow_id = $1) AND ($2 = '' OR i.status = $2) AND ($4 IS NULL OR i.id = $4)
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

// NodeWatchTarget implements store.Store: SQLite has no locks to wait on.
func (Store) NodeWatchTarget(context.Context, store.Querier, string, store.Scope) (string, int64, bool, error) {
	return "", 0, false, nil
}

// NodeAwaitLock implements store.Store; SQLite nodes are never watched.
func (Store) NodeAwaitLock(context.Context, store.Querier, int64, time.Duration) error {
	return errors.New("sqlite: no advisory locks to wait on")
}
