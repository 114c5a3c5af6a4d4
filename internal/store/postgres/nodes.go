package postgres

import (
	"context"
	"database/sql"
	"errors"

	"github.com/google/uuid"
	"github.com/lib/pq"

	"github.com/revenant-go/revenant/internal/store"
)

const nodeRegisterSQL = `INSERT INTO revenant_nodes (node_id, name, stack, env, lock_key, actors, expires_at, actor_policies)
VALUES ($1, $2, $3, $4, $5, $6::text[], now() + $7 * interval '1 millisecond', $8::jsonb)`

// nodeHeartbeatSQL is the node's single liveness statement per interval:
// it renews the node row and, in the same round trip, returns the runs
// whose lease is gone (status changed or token bumped by someone else;
// kind 'canceled' or 'lost') and the episodes the database says this node
// runs but the node does not track (kind 'untracked': a run that ended
// without its finishing write, a claimed row that could not be read), so
// that none stays running under a live node. The first column is 0 when
// the node row was marked stopped (a sweeper judged the node dead). The
// second says whether another node died owning running episodes (the
// Sweeper's failure check, folded in: no statement of its own).
const nodeHeartbeatSQL = `WITH hb AS (
	UPDATE revenant_nodes SET heartbeat_at = now(), expires_at = now() + $2 * interval '1 millisecond'
	WHERE node_id = $1 AND stopped_at IS NULL
	RETURNING node_id
),
` + nodeStateCTE + `
SELECT (SELECT count(*) FROM hb),
	EXISTS (SELECT 1 FROM node_state ns
		WHERE ns.dead_reason IS NOT NULL AND ns.node_id <> $1
		  AND EXISTS (SELECT 1 FROM revenant_episodes e WHERE e.status = 'running' AND e.owner_node = ns.node_id)),
	x.id, x.token, x.kind
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

const nodeStopSQL = `UPDATE revenant_nodes SET stopped_at = now(), stop_reason = '` + store.NodeStopped + `' WHERE node_id = $1 AND stopped_at IS NULL`

const nodeLockSQL = `SELECT pg_try_advisory_lock($1)`
const nodeUnlockSQL = `SELECT pg_advisory_unlock($1)`

const notifySQL = `SELECT pg_notify($1, $2)`

// NodeLock implements store.Store.
func (Store) NodeLock(ctx context.Context, conn store.Querier, key int64) (bool, error) {
	var ok bool
	err := conn.QueryRowContext(ctx, nodeLockSQL, key).Scan(&ok)
	return ok, err
}

// NodeUnlock implements store.Store.
func (Store) NodeUnlock(ctx context.Context, conn store.Querier, key int64) error {
	_, err := conn.ExecContext(ctx, nodeUnlockSQL, key)
	return err
}

// NodeRegister implements store.Store.
func (Store) NodeRegister(ctx context.Context, q store.Querier, p *store.NodeRegisterParams) error {
	actors := p.Actors
	if actors == nil {
		actors = []string{} // an empty list, not NULL
	}
	policies, err := store.PoliciesJSON(p.Policies)
	if err != nil {
		return err
	}
	_, err = q.ExecContext(ctx, nodeRegisterSQL, p.ID, p.Name, store.NullString(p.Stack), store.NullString(p.Env),
		p.LockKey, pq.Array(actors), p.TTL.Milliseconds(), policies)
	return err
}

// NodeHeartbeat implements store.Store.
func (Store) NodeHeartbeat(ctx context.Context, q store.Querier, p *store.NodeHeartbeatParams) (*store.NodeHeartbeatResult, error) {
	ids := make([]string, len(p.Runs))
	tokens := make([]int64, len(p.Runs))
	for i, r := range p.Runs {
		ids[i], tokens[i] = r.ID.String(), r.Token
	}
	rows, err := q.QueryContext(ctx, nodeHeartbeatSQL, p.NodeID, p.TTL.Milliseconds(), pq.Array(ids), pq.Array(tokens),
		p.UntrackedAfter.Milliseconds())
	if err != nil {
		return nil, err
	}
	defer func() { _ = rows.Close() }()
	res := &store.NodeHeartbeatResult{}
	for rows.Next() {
		var n int64
		var dead bool
		var id uuid.NullUUID
		var token sql.NullInt64
		var kind sql.NullString
		if err := rows.Scan(&n, &dead, &id, &token, &kind); err != nil {
			return nil, err
		}
		res.Alive, res.DeadOwners = n != 0, dead
		if id.Valid {
			res.Leases = append(res.Leases, store.LeaseState{ID: id.UUID, Token: token.Int64, Kind: kind.String})
		}
	}
	return res, rows.Err()
}

// NodeStop implements store.Store.
func (Store) NodeStop(ctx context.Context, q store.Querier, nodeID string) error {
	_, err := q.ExecContext(ctx, nodeStopSQL, nodeID)
	return err
}

// Notify implements store.Store.
func (Store) Notify(ctx context.Context, q store.Querier, channel, payload string) error {
	if channel == "" {
		return errors.New("notify: empty channel")
	}
	_, err := q.ExecContext(ctx, notifySQL, channel, payload)
	return err
}
