package ops

import (
	"context"
	"fmt"
	"net/http"
	"net/url"

	"github.com/google/uuid"

	"github.com/revenant-go/revenant/inspect"
	"github.com/revenant-go/revenant/workflow"
)

var workflowStatuses = []string{workflow.StatusRunning, workflow.StatusBlocked, workflow.StatusDone, workflow.StatusFailed,
	workflow.StatusCanceled}

type workflowsData struct {
	Filter    inspect.WorkflowFilter
	Statuses  []string
	Workflows []inspect.WorkflowSummary
	// Full is true when the page holds as many rows as it may: there may
	// be older ones.
	Full bool
}

// workflowsPage lists workflow instances, newest first.
func (h *Handler) workflowsPage(ctx context.Context, r *http.Request, v *view) error {
	v.Title = "Workflows"
	q := r.URL.Query()
	f := inspect.WorkflowFilter{WorkflowID: q.Get("workflow"), Status: q.Get("status"), Limit: h.cfg.PageSize}
	if f.Status != "" && !contains(workflowStatuses, f.Status) {
		return fmt.Errorf("%w: unknown workflow status %q; choose one of running, blocked, done, failed, canceled", errBadRequest, f.Status)
	}
	ws, err := h.c.Inspect().Workflows(ctx, f)
	if err != nil {
		return fmt.Errorf("listing workflow instances: %w", err)
	}
	v.Data = &workflowsData{Filter: f, Statuses: workflowStatuses, Workflows: ws, Full: len(ws) >= f.Limit}
	return nil
}

type workflowData struct {
	W   *inspect.WorkflowDetail
	DAG *dag
	// CanResume and CanCancel say which buttons apply.
	CanResume, CanCancel bool
	// Episodes lists the instance's episodes.
	Episodes string
}

// workflowPage shows one instance: its DAG, its steps and their episodes.
func (h *Handler) workflowPage(ctx context.Context, r *http.Request, v *view) error {
	id, err := uuid.Parse(r.PathValue("id"))
	if err != nil {
		return fmt.Errorf("%w: %q is not a workflow instance id (a UUID)", errBadRequest, r.PathValue("id"))
	}
	v.Title = "Workflow instance " + id.String()
	w, err := h.c.Inspect().Workflow(ctx, id)
	if err != nil {
		return fmt.Errorf("reading workflow instance %s: %w", id, err)
	}
	v.Data = &workflowData{W: w, DAG: layoutDAG(w),
		CanResume: w.Status == workflow.StatusBlocked,
		CanCancel: w.Status == workflow.StatusRunning || w.Status == workflow.StatusBlocked,
		Episodes:  "episodes?" + url.Values{"workflow": {id.String()}}.Encode()}
	return nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
