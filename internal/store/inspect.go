package store

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/revenant-go/revenant/internal/dbx"
)

// NodeStopped is the stop reason of a node that stopped itself.
const NodeStopped = "stopped"

// NodeInfo is one revenant_nodes row with what the database says of it
// now, for operators.
type NodeInfo struct {
	ID, Name, Stack, Env string
	// LockKey is the advisory lock the node holds while alive (nil
	// without one); LockHeld says whether some session holds it now
	// (Postgres only).
	LockKey  *int64
	LockHeld bool
	// StartedAt, HeartbeatAt and ExpiresAt are the node's times; StoppedAt
	// and StopReason (NodeStopped, or the Reason… rule by which a sweep
	// found it dead) are set once it is stopped.
	StartedAt, HeartbeatAt, ExpiresAt time.Time
	StoppedAt                         *time.Time
	StopReason                        string
	// DeadReason is the rule by which a sweep would find the node dead
	// now ("" while it is alive).
	DeadReason string
	Actors     []string
	// Policies is the node's published recovery policies (a JSON object).
	Policies []byte
	// Running counts the episodes running under the node.
	Running int
	// Now is the database clock when read.
	Now time.Time
}

// ScanNodeInfos reads rows of (node_id, name, stack, env, lock_key,
// lock_held, started_at, heartbeat_at, expires_at, stopped_at,
// stop_reason, dead_reason, actors as a JSON array, actor_policies,
// running, now).
func ScanNodeInfos(rows *sql.Rows, err error) ([]NodeInfo, error) {
	if err != nil {
		return nil, err
	}
	defer func() { _ = rows.Close() }()
	var out []NodeInfo
	for rows.Next() {
		var (
			n                                        NodeInfo
			name, stack, env, stopReason, deadReason sql.NullString
			lockKey                                  sql.NullInt64
			stoppedAt                                sql.NullTime
			startedAt, heartbeatAt, expiresAt, now   dbTime
			actors, policies                         []byte
		)
		if err := rows.Scan(&n.ID, &name, &stack, &env, &lockKey, &n.LockHeld, &startedAt, &heartbeatAt, &expiresAt,
			&stoppedAt, &stopReason, &deadReason, &actors, &policies, &n.Running, &now); err != nil {
			return nil, fmt.Errorf("%w: %w", dbx.ErrCorruptRow, err)
		}
		n.Name, n.Stack, n.Env, n.StopReason, n.DeadReason = name.String, stack.String, env.String, stopReason.String, deadReason.String
		if lockKey.Valid {
			k := lockKey.Int64
			n.LockKey = &k
		}
		n.StartedAt, n.HeartbeatAt, n.ExpiresAt, n.Now = time.Time(startedAt), time.Time(heartbeatAt), time.Time(expiresAt), time.Time(now)
		n.StoppedAt = timePtr(stoppedAt)
		if len(actors) > 0 {
			if err := json.Unmarshal(actors, &n.Actors); err != nil {
				return nil, fmt.Errorf("%w: node %s has an unreadable actor list: %w", dbx.ErrCorruptRow, n.ID, err)
			}
		}
		n.Policies = append([]byte(nil), policies...)
		out = append(out, n)
	}
	return out, rows.Err()
}
