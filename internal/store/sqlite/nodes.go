package sqlite

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/google/uuid"

	"github.com/revenant-go/revenant/internal/dbx"
	"github.com/revenant-go/revenant/internal/dialect"
	"github.com/revenant-go/revenant/internal/store"
)

// SQLite has no advisory locks, arrays or NOTIFY: actors are a JSON array,
// liveness is the TTL, and nodes poll.

var nodeRegisterSQL = `INSERT INTO revenant_nodes (node_id, name, stack, env, lock_key, actors, expires_at, actor_policies)
VALUES ($1, $2, $3, $4, $5, $6, ` + dialect.SQLiteNowPlusMillis("$7") + `, $8)`

var nodeHeartbeatSQL = `UPDATE revenant_nodes SET heartbeat_at = ` + now + `, expires_at = ` + dialect.SQLiteNowPlusMillis("$2") + `
WHERE node_id = $1 AND stopped_at IS NULL`

// nodeLeasesSQL is the heartbeat's lease check: $1 is the node, $2 its
// runs as a JSON array of [id, token] pairs, $3 the age past which an
// untracked run is reported, in milliseconds.
var nodeLeasesSQL = `WITH r AS (
	SELECT json_extract(value, '$[0]') AS id, json_extract(value, '$[1]') AS token FROM json_each($2)
)
SELECT e.id, e.claim_token,
	CASE WHEN e.status = 'canceled' AND e.claim_token = r.token THEN 'canceled' ELSE 'lost' END
FROM r JOIN revenant_episodes e ON e.id = r.id
WHERE e.status <> 'running' OR e.claim_token <> r.token
UNION ALL
SELECT e.id, e.claim_token, 'untracked'
FROM revenant_episodes e
WHERE e.status = 'running' AND e.owner_node = $1 AND e.id NOT IN (SELECT id FROM r)
	AND e.started_at < ` + dialect.SQLiteNowMinusMillis("$3")

const nodeStopSQL = `UPDATE revenant_nodes SET stopped_at = ` + now + `, stop_reason = '` + store.NodeStopped + `' WHERE node_id = $1 AND stopped_at IS NULL`

var errNoAdvisoryLocks = errors.New("SQLite has no advisory locks")

// NodeLock implements store.Store; SQLite has no advisory locks (callers
// check Capabilities first).
func (Store) NodeLock(context.Context, store.Querier, int64) (bool, error) {
	return false, errNoAdvisoryLocks
}

// NodeUnlock implements store.Store.
func (Store) NodeUnlock(context.Context, store.Querier, int64) error { return errNoAdvisoryLocks }

// NodeRegister implements store.Store.
func (Store) NodeRegister(ctx context.Context, q store.Querier, p *store.NodeRegisterParams) error {
	actors := p.Actors
	if actors == nil {
		actors = []string{} // an empty list, not NULL
	}
	list, err := json.Marshal(actors)
	if err != nil {
		return err
	}
	policies, err := store.PoliciesJSON(p.Policies)
	if err != nil {
		return err
	}
	_, err = q.ExecContext(ctx, nodeRegisterSQL, p.ID, p.Name, store.NullString(p.Stack), store.NullString(p.Env),
		p.LockKey, string(list), p.TTL.Milliseconds(), policies)
	return err
}

// NodeHeartbeat implements store.Store: the node row renewal and the lease
// check are two statements (in-process round trips cost little).
func (Store) NodeHeartbeat(ctx context.Context, q store.Querier, p *store.NodeHeartbeatParams) (*store.NodeHeartbeatResult, error) {
	alive, err := store.Affected(q.ExecContext(ctx, nodeHeartbeatSQL, p.NodeID, p.TTL.Milliseconds()))
	if err != nil {
		return nil, err
	}
	pairs := make([][2]any, len(p.Runs))
	for i, r := range p.Runs {
		pairs[i] = [2]any{r.ID.String(), r.Token}
	}
	b, err := json.Marshal(pairs)
	if err != nil {
		return nil, err
	}
	rows, err := q.QueryContext(ctx, nodeLeasesSQL, p.NodeID, string(b), p.UntrackedAfter.Milliseconds())
	if err != nil {
		return nil, err
	}
	defer func() { _ = rows.Close() }()
	res := &store.NodeHeartbeatResult{Alive: alive}
	for rows.Next() {
		var f store.LeaseState
		var id string
		var token any // an unreadable token must not stop the heartbeat
		if err := rows.Scan(&id, &token, &f.Kind); err != nil {
			return nil, err
		}
		var ok bool
		f.ID, err = uuid.Parse(id)
		f.Token, ok = token.(int64)
		if err != nil || !ok {
			res.Unreadable = append(res.Unreadable, dbx.CleanText(id, 64))
			continue
		}
		res.Leases = append(res.Leases, f)
	}
	return res, rows.Err()
}

// NodeStop implements store.Store.
func (Store) NodeStop(ctx context.Context, q store.Querier, nodeID string) error {
	_, err := q.ExecContext(ctx, nodeStopSQL, nodeID)
	return err
}

// Notify implements store.Store: SQLite has no notifications; nodes poll.
func (Store) Notify(context.Context, store.Querier, string, string) error { return nil }
