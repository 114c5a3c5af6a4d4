package store

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/revenant-go/revenant/internal/dbx"
)

// ScanClock reads the database clock from a one-row query.
func ScanClock(row *sql.Row) (time.Time, error) {
	var t dbTime
	err := row.Scan(&t)
	return time.Time(t), err
}

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
	// LastSweepAt and LastSweep are the node's Sweeper's last pass (when
	// it ended, and a JSON SweepRecord); nil before its first.
	LastSweepAt *time.Time
	LastSweep   []byte
	// Err (wrapping dbx.ErrCorruptRow) is set when the row could not be
	// read; ID is then set if it could be.
	Err error
}

// ScanNodeInfos reads rows of (node_id, name, stack, env, lock_key,
// lock_held, started_at, heartbeat_at, expires_at, stopped_at,
// stop_reason, dead_reason, actors as a JSON array, actor_policies,
// running, now, last_sweep_at, last_sweep).
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
			stoppedAt, lastSweepAt                   sql.NullTime
			startedAt, heartbeatAt, expiresAt, now   dbTime
			actors, policies, lastSweep              []byte
		)
		if err := rows.Scan(&n.ID, &name, &stack, &env, &lockKey, &n.LockHeld, &startedAt, &heartbeatAt, &expiresAt,
			&stoppedAt, &stopReason, &deadReason, &actors, &policies, &n.Running, &now, &lastSweepAt, &lastSweep); err != nil {
			out = append(out, NodeInfo{ID: n.ID, Err: fmt.Errorf("%w: %w", dbx.ErrCorruptRow, err)})
			continue
		}
		n.Name, n.Stack, n.Env, n.StopReason, n.DeadReason = name.String, stack.String, env.String, stopReason.String, deadReason.String
		if lockKey.Valid {
			k := lockKey.Int64
			n.LockKey = &k
		}
		n.StartedAt, n.HeartbeatAt, n.ExpiresAt, n.Now = time.Time(startedAt), time.Time(heartbeatAt), time.Time(expiresAt), time.Time(now)
		n.StoppedAt, n.LastSweepAt = timePtr(stoppedAt), timePtr(lastSweepAt)
		n.LastSweep = rawJSON(lastSweep)
		if len(actors) > 0 {
			if err := json.Unmarshal(actors, &n.Actors); err != nil {
				out = append(out, NodeInfo{ID: n.ID, Err: fmt.Errorf("%w: node %s has an unreadable actor list: %w", dbx.ErrCorruptRow, n.ID, err)})
				continue
			}
		}
		n.Policies = append([]byte(nil), policies...)
		out = append(out, n)
	}
	return out, rows.Err()
}

// BacklogGroup is one actor and scope's open work (and dead letters).
type BacklogGroup struct {
	ActorID, Stack, Env string
	// Due counts pending episodes that are due; Scheduled those that are
	// not yet (scheduled, or waiting to retry).
	Due, Scheduled, Running, Blocked int
	// Failed counts dead letters: failed, not archived, not workflow steps.
	Failed int
	// OldestDueWait is how long the longest-waiting due episode has been
	// due (0 with none).
	OldestDueWait time.Duration
	// Claimable is true when a live node in scope registered the actor.
	Claimable bool
}

// ScanBacklogGroups reads rows of (actor, stack, env, due, scheduled,
// running, blocked, failed, oldest due wait in ms, claimable).
func ScanBacklogGroups(rows *sql.Rows, err error) ([]BacklogGroup, error) {
	if err != nil {
		return nil, err
	}
	defer func() { _ = rows.Close() }()
	var out []BacklogGroup
	for rows.Next() {
		var (
			g    BacklogGroup
			wait sql.NullInt64
		)
		if err := rows.Scan(&g.ActorID, &g.Stack, &g.Env, &g.Due, &g.Scheduled, &g.Running, &g.Blocked, &g.Failed, &wait, &g.Claimable); err != nil {
			return nil, err
		}
		if wait.Valid && wait.Int64 > 0 {
			g.OldestDueWait = time.Duration(wait.Int64) * time.Millisecond
		}
		out = append(out, g)
	}
	return out, rows.Err()
}

// StepDetail is one journal entry as operators see it.
type StepDetail struct {
	Seq                   int
	Name, Status          string
	StartedAt, FinishedAt time.Time
	// ClaimToken is the claim under which it was recorded.
	ClaimToken int64
	// OutputBytes is the size of the recorded output; Output is the
	// output itself, only when asked for. Error is a failed step's.
	OutputBytes int
	Output      []byte
	Error       []byte
}

// ScanStepDetails reads rows of (seq, name, status, started_at,
// finished_at, claim_token, output size, output or NULL, error).
func ScanStepDetails(rows *sql.Rows, err error) ([]StepDetail, error) {
	if err != nil {
		return nil, err
	}
	defer func() { _ = rows.Close() }()
	var out []StepDetail
	for rows.Next() {
		var (
			d                 StepDetail
			started, finished dbTime
			size              sql.NullInt64
			output, errDetail []byte
		)
		if err := rows.Scan(&d.Seq, &d.Name, &d.Status, &started, &finished, &d.ClaimToken, &size, &output, &errDetail); err != nil {
			return nil, fmt.Errorf("%w: %w", dbx.ErrCorruptRow, err)
		}
		d.StartedAt, d.FinishedAt, d.OutputBytes = time.Time(started), time.Time(finished), int(size.Int64)
		d.Output, d.Error = rawJSON(output), rawJSON(errDetail)
		out = append(out, d)
	}
	return out, rows.Err()
}
