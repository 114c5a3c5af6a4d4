package store

import (
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/revenant-go/revenant/internal/dbx"
)

// ErrWaitTimeout is returned when NodeAwaitLock's wait ran out without the lock.
var ErrWaitTimeout = errors.New("store: lock wait timed out")

// NodeReadiness is what the database says of one node, for its own
// readiness probe.
type NodeReadiness struct {
	// Found is false when the node has no row (pruned, or never
	// registered).
	Found bool
	// Stopped: it stopped, or a sweep found it dead (StopReason says
	// which).
	Stopped    bool
	StopReason string
	// Expired: its heartbeat TTL lapsed.
	Expired bool
	// HeartbeatAge is how long ago its last heartbeat was.
	HeartbeatAge time.Duration
}

// ScanNodeReadiness reads a row of (stopped, stop_reason, expired,
// heartbeat age in ms); no row is a node that is not found.
func ScanNodeReadiness(row *sql.Row) (*NodeReadiness, error) {
	var (
		r      NodeReadiness
		reason sql.NullString
		ageMS  sql.NullInt64
	)
	err := row.Scan(&r.Stopped, &reason, &r.Expired, &ageMS)
	if err == sql.ErrNoRows {
		return &r, nil
	}
	if err != nil {
		return nil, err
	}
	r.Found, r.StopReason, r.HeartbeatAge = true, reason.String, time.Duration(ageMS.Int64)*time.Millisecond
	return &r, nil
}

// WorkflowShapeParams is a registered workflow's shape (encoded JSON) for
// one scope ("" for none), published by a node.
type WorkflowShapeParams struct {
	WorkflowID, Stack, Env string
	Shape                  []byte
	NodeID                 string
}

// WorkflowListParams filters WorkflowList; empty fields do not filter.
type WorkflowListParams struct {
	WorkflowID, Status string
	// ID, when set, reads that one instance.
	ID    uuid.UUID
	Limit int
}

// IDArg is the ID filter's argument: NULL when unset.
func (p *WorkflowListParams) IDArg() any {
	if p.ID == uuid.Nil {
		return nil
	}
	return p.ID.String()
}

// WorkflowSummary is one instance with its steps counted by status.
type WorkflowSummary struct {
	ID                                      uuid.UUID
	WorkflowID, Status, Subject, Stack, Env string
	Compensating                            bool
	CreatedAt, UpdatedAt                    time.Time
	FinishedAt                              *time.Time
	StepCounts                              map[string]int
}

// ScanWorkflowSummaries reads rows of (id, workflow_id, status, subject,
// stack, env, compensating, created_at, updated_at, finished_at, step
// counts as a JSON object).
func ScanWorkflowSummaries(rows *sql.Rows, err error) ([]WorkflowSummary, error) {
	if err != nil {
		return nil, err
	}
	defer func() { _ = rows.Close() }()
	var out []WorkflowSummary
	for rows.Next() {
		var (
			w                   WorkflowSummary
			id                  string
			subject, stack, env sql.NullString
			created, updated    dbTime
			finished            sql.NullTime
			counts              []byte
		)
		if err := rows.Scan(&id, &w.WorkflowID, &w.Status, &subject, &stack, &env, &w.Compensating, &created, &updated, &finished, &counts); err != nil {
			return nil, fmt.Errorf("%w: %w", dbx.ErrCorruptRow, err)
		}
		if w.ID, err = uuid.Parse(id); err != nil {
			return nil, fmt.Errorf("%w: workflow instance id %q: %w", dbx.ErrCorruptRow, id, err)
		}
		w.Subject, w.Stack, w.Env = subject.String, stack.String, env.String
		w.CreatedAt, w.UpdatedAt, w.FinishedAt = time.Time(created), time.Time(updated), timePtr(finished)
		w.StepCounts = map[string]int{}
		if len(counts) > 0 {
			if err := json.Unmarshal(counts, &w.StepCounts); err != nil {
				return nil, fmt.Errorf("%w: step counts of instance %s: %w", dbx.ErrCorruptRow, id, err)
			}
		}
		out = append(out, w)
	}
	return out, rows.Err()
}

// SweepRecord is a Sweeper pass as recorded on its node's row.
type SweepRecord struct {
	TookMS       int64  `json:"took_ms"`
	Restarted    int    `json:"restarted"`
	Failed       int    `json:"failed"`
	DeadLettered int    `json:"dead_lettered"`
	Skipped      int    `json:"skipped"`
	Error        string `json:"error,omitempty"`
}

// WorkflowShape is a registered workflow's DAG as published for tools.
type WorkflowShape struct {
	Steps []WorkflowShapeStep `json:"steps"`
}

// WorkflowShapeStep is one step of a WorkflowShape.
type WorkflowShapeStep struct {
	ID         string   `json:"id"`
	Actor      string   `json:"actor"`
	DependsOn  []string `json:"depends_on,omitempty"`
	Compensate string   `json:"compensate,omitempty"`
	OnFailure  string   `json:"on_failure,omitempty"`
}
