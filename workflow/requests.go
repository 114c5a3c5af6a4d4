package workflow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"

	"github.com/google/uuid"

	"github.com/revenant-go/revenant/bus"
	"github.com/revenant-go/revenant/internal/dbx"
	"github.com/revenant-go/revenant/internal/store"
)

// publishShapes writes each registered definition's DAG for the engine's
// scope, so that tools without the workflow's code (the CLI, a dashboard)
// can draw its instances. It is for operators only: a failure is logged
// and Start goes on.
func (e *Engine) publishShapes(ctx context.Context, nodeID string) {
	e.mu.Lock()
	defs := make([]*Definition, 0, len(e.defs))
	for _, d := range e.defs {
		defs = append(defs, d)
	}
	e.mu.Unlock()
	sort.Slice(defs, func(i, j int) bool { return defs[i].ID < defs[j].ID })
	for _, d := range defs {
		shape := store.WorkflowShape{Steps: make([]store.WorkflowShapeStep, 0, len(d.Steps))}
		for _, st := range d.Steps {
			shape.Steps = append(shape.Steps, store.WorkflowShapeStep{ID: st.ID, Actor: st.Actor, DependsOn: st.DependsOn,
				Compensate: st.Compensate, OnFailure: st.OnFailure.Kind.String()})
		}
		body, err := json.Marshal(shape)
		if err == nil {
			err = e.st.WorkflowShapeUpsert(ctx, e.db, &store.WorkflowShapeParams{WorkflowID: d.ID, Stack: e.config.Stack,
				Env: e.config.Env, Shape: body, NodeID: nodeID})
		}
		if err != nil {
			e.logger.Warn("revenant: publishing a workflow's shape for operators' tools failed", slog.String("workflow", d.ID),
				slog.Any("error", dbx.Explain(err)))
		}
	}
}

// Request asks, through the engine's bus, that a node which registered the
// instance's workflow resume it (bus.WorkflowResumeRequested) or cancel it
// (bus.WorkflowCancelRequested): the way a process without the
// definition (the CLI, a dashboard) acts on an instance. Every started
// engine that registered the workflow handles the request; the first
// applies it and the others find nothing left to do. The caller watches
// the instance's status to see it applied. An unknown instance is
// ErrNotFound.
func (e *Engine) Request(ctx context.Context, kind string, id uuid.UUID, req bus.WorkflowRequest) error {
	p := e.config.Bus
	if kind != bus.WorkflowResumeRequested && kind != bus.WorkflowCancelRequested {
		return fmt.Errorf("%w: unknown workflow request %q", dbx.ErrInvalidInput, kind)
	}
	if p == nil {
		return fmt.Errorf("%w: a workflow request needs the engine's Config.Bus (an outbox bus, so that other nodes see it)", dbx.ErrInvalidInput)
	}
	if _, err := e.st.WorkflowGet(ctx, e.db, id); err != nil {
		if errors.Is(err, dbx.ErrNotFound) {
			return fmt.Errorf("workflow instance %s: %w", id, ErrNotFound)
		}
		return dbx.Explain(err)
	}
	payload, err := json.Marshal(req)
	if err != nil {
		return err
	}
	return p.Publish(ctx, bus.Event{Type: kind, WorkflowInstanceID: id, Payload: payload})
}

// handleRequest applies a resume or cancel request to an instance of a
// workflow this engine registered; others ignore it.
func (e *Engine) handleRequest(ctx context.Context, ev bus.Event) error {
	var req bus.WorkflowRequest
	if len(ev.Payload) > 0 {
		if err := json.Unmarshal(ev.Payload, &req); err != nil {
			e.logger.Warn("revenant: ignoring an unreadable workflow request", slog.String("instance", ev.WorkflowInstanceID.String()))
			return nil
		}
	}
	var err error
	switch ev.Type {
	case bus.WorkflowResumeRequested:
		err = e.Resume(ctx, ev.WorkflowInstanceID)
	case bus.WorkflowCancelRequested:
		err = e.Cancel(ctx, ev.WorkflowInstanceID, req.Reason)
	default:
		return nil
	}
	switch {
	case err == nil:
		e.logger.Info("revenant: applied a workflow request", slog.String("request", ev.Type),
			slog.String("instance", ev.WorkflowInstanceID.String()), slog.String("by", req.By))
		return nil
	case errors.Is(err, ErrUnknownWorkflow), errors.Is(err, ErrIllegalTransition), errors.Is(err, ErrNotFound):
		// Not this node's workflow, or another node applied it first.
		return nil
	default:
		return err
	}
}
