package inspect

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"

	"github.com/revenant-go/revenant/internal/dbx"
	"github.com/revenant-go/revenant/internal/store"
)

// Workflow list defaults.
const (
	WorkflowLimitDefault = 100
	WorkflowLimitMax     = 1000
)

// WorkflowFilter filters Workflows; empty fields do not filter.
type WorkflowFilter struct {
	// WorkflowID keeps instances of one workflow; Status those in one
	// status (running, blocked, done, failed, canceled).
	WorkflowID, Status string
	// Limit caps the instances returned, newest first. Defaults to
	// WorkflowLimitDefault; at most WorkflowLimitMax.
	Limit int
}

// WorkflowSummary is one workflow instance, with its steps counted by
// status.
type WorkflowSummary struct {
	ID                                      uuid.UUID
	WorkflowID, Status, Subject, Stack, Env string
	// Compensating is true while an aborted instance runs compensations.
	Compensating         bool
	CreatedAt, UpdatedAt time.Time
	FinishedAt           *time.Time
	// StepCounts counts its steps (and compensations) by status.
	StepCounts map[string]int
}

// WorkflowDetail is one instance with its steps, placed in the DAG of the
// workflow's definition.
type WorkflowDetail struct {
	WorkflowSummary
	// Error is why the instance failed or is blocked (JSON), if it did.
	Error json.RawMessage
	// Defined is true when a node that registered the workflow in the
	// instance's scope published its shape (at its Start): steps then
	// carry their actor, dependencies and compensation. Without it (no
	// node of this version registered the workflow) only the steps'
	// states are known.
	Defined bool
	// Steps are in definition order, compensations after.
	Steps []WorkflowStep
}

// WorkflowStep is one step (or compensation) of an instance.
type WorkflowStep struct {
	// ID is the step's id; Kind "step" or "compensation"; Status its
	// state (pending, running, retrying, done, failed, paused, canceled…).
	ID, Kind, Status string
	Attempts         int
	// EpisodeID is the step's current (or last) episode; uuid.Nil before
	// it has one.
	EpisodeID uuid.UUID
	// Actor, DependsOn, Compensate and OnFailure ("abort", "retry",
	// "pause") come from the published definition (empty without one).
	Actor      string
	DependsOn  []string
	Compensate string
	OnFailure  string
	// ErrorClass and Error are the step's last failure; DueAt a retry's
	// due time.
	ErrorClass string
	Error      json.RawMessage
	DueAt      *time.Time
}

// Workflows lists workflow instances, newest first.
func (i *Inspector) Workflows(ctx context.Context, f WorkflowFilter) ([]WorkflowSummary, error) {
	limit := f.Limit
	switch {
	case limit < 0:
		return nil, fmt.Errorf("%w: WorkflowFilter.Limit is %d; use 0 for the default (%d) or up to %d", dbx.ErrInvalidInput, limit, WorkflowLimitDefault, WorkflowLimitMax)
	case limit == 0:
		limit = WorkflowLimitDefault
	case limit > WorkflowLimitMax:
		limit = WorkflowLimitMax
	}
	rows, err := i.st.WorkflowList(ctx, i.db, &store.WorkflowListParams{WorkflowID: f.WorkflowID, Status: f.Status, Limit: limit})
	if err != nil {
		return nil, fmt.Errorf("listing workflow instances: %w", dbx.Explain(err))
	}
	out := make([]WorkflowSummary, len(rows))
	for k, r := range rows {
		out[k] = WorkflowSummary(r)
	}
	return out, nil
}

// Workflow reads one instance with its steps, and the DAG of its
// workflow as published by the nodes that registered it. An unknown id
// is an error wrapping episodes.ErrNotFound.
func (i *Inspector) Workflow(ctx context.Context, id uuid.UUID) (*WorkflowDetail, error) {
	loaded, err := i.st.WorkflowGet(ctx, i.db, id)
	if errors.Is(err, dbx.ErrNotFound) {
		return nil, fmt.Errorf("workflow instance %s: %w", id, dbx.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("workflow instance %s: %w", id, dbx.Explain(err))
	}
	in := loaded.Instance
	d := &WorkflowDetail{Error: in.Error, WorkflowSummary: WorkflowSummary{ID: in.ID, WorkflowID: in.WorkflowID,
		Status: in.Status, Subject: in.Subject, Stack: in.Stack, Env: in.Env, Compensating: in.Compensating,
		CreatedAt: in.CreatedAt, FinishedAt: in.FinishedAt, StepCounts: map[string]int{}}}
	// The instance's last change is only in the list's columns.
	if sum, err := i.st.WorkflowList(ctx, i.db, &store.WorkflowListParams{ID: id, Limit: 1}); err == nil && len(sum) == 1 {
		d.UpdatedAt = sum[0].UpdatedAt
	}
	shape := map[string]store.WorkflowShapeStep{}
	raw, err := i.st.WorkflowShape(ctx, i.db, in.WorkflowID, in.Stack, in.Env)
	if err != nil {
		// Drawn without its edges: the states are what matters most.
		i.logger.WarnContext(ctx, "revenant: reading a workflow's shape failed; shown without its DAG",
			slog.String("workflow", in.WorkflowID), slog.Any("error", dbx.Explain(err)))
	}
	if len(raw) > 0 {
		var ws store.WorkflowShape
		if err := json.Unmarshal(raw, &ws); err != nil {
			i.logger.WarnContext(ctx, "revenant: a workflow's shape cannot be read; shown without its DAG",
				slog.String("workflow", in.WorkflowID), slog.Any("error", err))
		} else {
			d.Defined = true
			for _, s := range ws.Steps {
				shape[s.ID] = s
			}
		}
	}
	for _, s := range loaded.Steps {
		d.StepCounts[s.Status]++
		st := WorkflowStep{ID: s.ID, Kind: s.Kind, Status: s.Status, Attempts: s.Attempts, EpisodeID: s.EpisodeID,
			ErrorClass: s.ErrorClass, Error: s.Error, DueAt: s.DueAt}
		if sh, ok := shape[s.ID]; ok && s.Kind != "compensation" {
			st.Actor, st.DependsOn, st.Compensate, st.OnFailure = sh.Actor, sh.DependsOn, sh.Compensate, sh.OnFailure
		}
		d.Steps = append(d.Steps, st)
	}
	return d, nil
}
