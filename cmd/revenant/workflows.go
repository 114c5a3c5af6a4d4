package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/revenant-go/revenant/inspect"
	"github.com/revenant-go/revenant/workflow"
)

// WaitDefault is how long workflows resume and cancel wait for a live
// node to apply the request (--wait).
const WaitDefault = 10 * time.Second

// workflowPoll is how often a waiting request reads the instance again.
const workflowPoll = 100 * time.Millisecond

type workflowSummaryJSON struct {
	ID           string         `json:"id"`
	WorkflowID   string         `json:"workflow_id"`
	Status       string         `json:"status"`
	Subject      string         `json:"subject,omitempty"`
	Stack        string         `json:"stack"`
	Env          string         `json:"env"`
	Compensating bool           `json:"compensating"`
	CreatedAt    time.Time      `json:"created_at"`
	UpdatedAt    time.Time      `json:"updated_at"`
	FinishedAt   *time.Time     `json:"finished_at,omitempty"`
	StepCounts   map[string]int `json:"step_counts"`
}

func toWorkflowSummaryJSON(w inspect.WorkflowSummary) workflowSummaryJSON {
	out := workflowSummaryJSON{ID: w.ID.String(), WorkflowID: w.WorkflowID, Status: w.Status, Subject: w.Subject, Stack: w.Stack, Env: w.Env,
		Compensating: w.Compensating, CreatedAt: w.CreatedAt, UpdatedAt: w.UpdatedAt, FinishedAt: w.FinishedAt, StepCounts: w.StepCounts}
	if out.StepCounts == nil {
		out.StepCounts = map[string]int{}
	}
	return out
}

type workflowStepJSON struct {
	ID         string          `json:"id"`
	Kind       string          `json:"kind"`
	Status     string          `json:"status"`
	Attempts   int             `json:"attempts"`
	EpisodeID  string          `json:"episode_id,omitempty"`
	Actor      string          `json:"actor,omitempty"`
	DependsOn  []string        `json:"depends_on"`
	Compensate string          `json:"compensate,omitempty"`
	OnFailure  string          `json:"on_failure,omitempty"`
	ErrorClass string          `json:"error_class,omitempty"`
	Error      json.RawMessage `json:"error,omitempty"`
	DueAt      *time.Time      `json:"due_at,omitempty"`
}

type edgeJSON struct {
	From string `json:"from"`
	To   string `json:"to"`
}

type workflowDetailJSON struct {
	workflowSummaryJSON
	Error json.RawMessage `json:"error,omitempty"`
	// Defined is false when no node published the workflow's shape: the
	// steps' actors and edges are then unknown.
	Defined bool               `json:"defined"`
	Steps   []workflowStepJSON `json:"steps"`
	// Edges are the DAG's dependencies: From must be done before To.
	Edges []edgeJSON `json:"edges"`
}

func toWorkflowDetailJSON(d *inspect.WorkflowDetail) workflowDetailJSON {
	out := workflowDetailJSON{workflowSummaryJSON: toWorkflowSummaryJSON(d.WorkflowSummary), Error: d.Error, Defined: d.Defined,
		Steps: []workflowStepJSON{}, Edges: []edgeJSON{}}
	for _, s := range d.Steps {
		deps := s.DependsOn
		if deps == nil {
			deps = []string{}
		}
		out.Steps = append(out.Steps, workflowStepJSON{ID: s.ID, Kind: s.Kind, Status: s.Status, Attempts: s.Attempts, EpisodeID: idString(s.EpisodeID),
			Actor: s.Actor, DependsOn: deps, Compensate: s.Compensate, OnFailure: s.OnFailure, ErrorClass: s.ErrorClass, Error: s.Error, DueAt: s.DueAt})
		for _, dep := range s.DependsOn {
			out.Edges = append(out.Edges, edgeJSON{From: dep, To: s.ID})
		}
	}
	return out
}

func (a *app) workflowsCommand() *cobra.Command {
	return group("workflows", "List, show, resume and cancel workflow instances",
		a.workflowsListCommand(), a.workflowsShowCommand(), a.workflowRequestCommand(true), a.workflowRequestCommand(false))
}

func (a *app) workflowsListCommand() *cobra.Command {
	var workflowID, status string
	var limit int
	c := &cobra.Command{
		Use:   "list",
		Short: "List workflow instances, newest first, with their steps counted by status",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch status {
			case "", workflow.StatusRunning, workflow.StatusBlocked, workflow.StatusDone, workflow.StatusFailed, workflow.StatusCanceled:
			default:
				return usagef("unknown workflow status %q: use running, blocked, done, failed or canceled", status)
			}
			if limit < 1 {
				return usagef("--limit must be positive")
			}
			ctx, cancel := a.timed(cmd.Context(), 0)
			defer cancel()
			in, err := a.inspector(ctx)
			if err != nil {
				return err
			}
			list, err := in.Workflows(ctx, inspect.WorkflowFilter{WorkflowID: workflowID, Status: status, Limit: limit})
			if err != nil {
				return fmt.Errorf("listing workflow instances: %w", err)
			}
			out := []workflowSummaryJSON{}
			for _, w := range list {
				if a.inScope(w.Stack, w.Env) {
					out = append(out, toWorkflowSummaryJSON(w))
				}
			}
			if a.jsonOut {
				return a.printJSON(struct {
					Instances []workflowSummaryJSON `json:"instances"`
				}{out})
			}
			if len(out) == 0 {
				_, _ = fmt.Fprintln(a.stdout, "no workflow instances")
				return nil
			}
			t := newTable(a.stdout, "INSTANCE", "WORKFLOW", "STATUS", "SUBJECT", "SCOPE", "STEPS", "CREATED", "UPDATED")
			for _, w := range out {
				st := w.Status
				if w.Compensating {
					st += " (compensating)"
				}
				t.row(w.ID, w.WorkflowID, st, dash(w.Subject), scope(w.Stack, w.Env), counts(w.StepCounts), ago(w.CreatedAt), ago(w.UpdatedAt))
			}
			return t.flush()
		},
	}
	f := c.Flags()
	f.StringVar(&workflowID, "workflow", "", "keep instances of this workflow")
	f.StringVar(&status, "status", "", "keep instances in this status: running, blocked, done, failed or canceled")
	f.IntVar(&limit, "limit", 100, "at most this many")
	return c
}

func (a *app) workflowsShowCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "show ID",
		Short: "Show a workflow instance: its steps, their states, and its DAG's edges",
		Args:  exactArgs(1, "a workflow instance id"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseID(args[0], "a workflow instance")
			if err != nil {
				return err
			}
			ctx, cancel := a.timed(cmd.Context(), 0)
			defer cancel()
			in, err := a.inspector(ctx)
			if err != nil {
				return err
			}
			d, err := in.Workflow(ctx, id)
			if err != nil {
				return err
			}
			out := toWorkflowDetailJSON(d)
			if a.jsonOut {
				return a.printJSON(out)
			}
			return a.printWorkflow(out)
		},
	}
}

func (a *app) printWorkflow(w workflowDetailJSON) error {
	t := newTable(a.stdout)
	t.row("instance", w.ID)
	t.row("workflow", w.WorkflowID)
	st := w.Status
	if w.Compensating {
		st += " (compensating)"
	}
	t.row("status", st)
	t.row("subject", dash(w.Subject))
	t.row("scope", fmt.Sprintf("stack %s, env %s", dash(w.Stack), dash(w.Env)))
	t.row("created", ago(w.CreatedAt))
	t.row("updated", ago(w.UpdatedAt))
	if w.FinishedAt != nil {
		t.row("finished", ago(*w.FinishedAt))
	}
	if len(w.Error) > 0 {
		t.row("error", compactJSON(w.Error, 300))
	}
	if err := t.flush(); err != nil {
		return err
	}
	_, _ = fmt.Fprintf(a.stdout, "\nSTEPS (%d)\n", len(w.Steps))
	t = newTable(a.stdout, "STEP", "KIND", "STATUS", "ATTEMPTS", "ACTOR", "DEPENDS ON", "ON FAILURE", "EPISODE", "ERROR CLASS", "DUE")
	for _, s := range w.Steps {
		due := "-"
		if s.DueAt != nil {
			due = ago(*s.DueAt)
		}
		t.row(s.ID, s.Kind, s.Status, fmt.Sprint(s.Attempts), dash(s.Actor), dash(strings.Join(s.DependsOn, ",")), dash(s.OnFailure),
			dash(s.EpisodeID), dash(s.ErrorClass), due)
	}
	if err := t.flush(); err != nil {
		return err
	}
	_, _ = fmt.Fprintln(a.stdout, "\nDAG")
	if !w.Defined {
		_, _ = fmt.Fprintln(a.stdout, "  unknown: no node published this workflow's definition (a node that registers it does, when it starts)")
		return nil
	}
	for _, line := range renderDAG(w.Steps) {
		_, _ = fmt.Fprintln(a.stdout, "  "+line)
	}
	return nil
}

// renderDAG draws the instance's DAG as text: its steps by level (a
// step's level is one more than its deepest dependency's), then each
// edge "a -> b", and each compensation "a ~> actor".
func renderDAG(steps []workflowStepJSON) []string {
	status := map[string]string{}
	var order []string
	deps := map[string][]string{}
	for _, s := range steps {
		if s.Kind == "compensation" {
			continue
		}
		status[s.ID] = s.Status
		order = append(order, s.ID)
		deps[s.ID] = s.DependsOn
	}
	level := map[string]int{}
	var depth func(id string, seen map[string]bool) int
	depth = func(id string, seen map[string]bool) int {
		if l, ok := level[id]; ok {
			return l
		}
		if seen[id] { // a cycle cannot be registered; do not loop on a bad row
			return 0
		}
		seen[id] = true
		l := 0
		for _, d := range deps[id] {
			if _, known := status[d]; known {
				l = max(l, depth(d, seen)+1)
			}
		}
		level[id] = l
		return l
	}
	levels := [][]string{}
	for _, id := range order {
		l := depth(id, map[string]bool{})
		for len(levels) <= l {
			levels = append(levels, nil)
		}
		levels[l] = append(levels[l], fmt.Sprintf("%s [%s]", id, status[id]))
	}
	var out []string
	for i, l := range levels {
		out = append(out, fmt.Sprintf("level %d: %s", i, strings.Join(l, "  ")))
	}
	for _, s := range steps {
		if s.Kind == "compensation" {
			continue
		}
		for _, d := range s.DependsOn {
			out = append(out, fmt.Sprintf("%s -> %s", d, s.ID))
		}
	}
	for _, s := range steps {
		if s.Kind != "compensation" && s.Compensate != "" {
			out = append(out, fmt.Sprintf("%s ~> %s (compensation, if the instance aborts)", s.ID, s.Compensate))
		}
	}
	return out
}

type workflowRequestJSON struct {
	InstanceID   string `json:"instance_id"`
	WorkflowID   string `json:"workflow_id"`
	Request      string `json:"request"`
	Applied      bool   `json:"applied"`
	StatusBefore string `json:"status_before"`
	Status       string `json:"status"`
	Message      string `json:"message"`
}

// workflowRequestCommand is "resume" (or, with resume false, "cancel").
func (a *app) workflowRequestCommand(resume bool) *cobra.Command {
	var reason string
	var wait time.Duration
	verb, short, want := "cancel", "Cancel a workflow instance (applied by a live node running the workflow)", "running or blocked"
	if resume {
		verb, short, want = "resume", "Resume a blocked workflow instance (applied by a live node running the workflow)", "blocked"
	}
	c := &cobra.Command{
		Use:   verb + " ID",
		Short: short,
		Long: fmt.Sprintf(`%s a workflow instance. The CLI does not have the workflow's code, so it
records a request that a live node running the workflow applies; it then waits
up to --wait for the instance's status to change and reports whether it was
applied. Not applied in time exits 6: is a node that registered the workflow
running, in the instance's stack and env? Asks for confirmation unless --yes.`, strings.ToUpper(verb[:1])+verb[1:]),
		Args: exactArgs(1, "a workflow instance id"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseID(args[0], "a workflow instance")
			if err != nil {
				return err
			}
			if wait < 0 {
				return usagef("--wait must not be negative")
			}
			ctx, cancel := a.timed(cmd.Context(), wait)
			defer cancel()
			client, err := a.admin(ctx)
			if err != nil {
				return err
			}
			in := client.Inspect()
			before, err := in.Workflow(ctx, id)
			if err != nil {
				return err
			}
			if !requestable(resume, before.Status) {
				return fmt.Errorf("workflow instance %s is %s: only a %s instance can be %sd", id, before.Status, want, verb)
			}
			if err := a.confirm(fmt.Sprintf("%s workflow instance %s (%s, %s)", verb, id, before.WorkflowID, before.Status)); err != nil {
				return err
			}
			if resume {
				err = client.ResumeWorkflow(ctx, id)
			} else {
				err = client.CancelWorkflow(ctx, id, reason)
			}
			if err != nil {
				return fmt.Errorf("%s workflow instance %s: %w", verb, id, err)
			}
			after, applied, err := a.awaitWorkflow(ctx, in, before, resume, wait)
			if err != nil {
				return err
			}
			out := workflowRequestJSON{InstanceID: id.String(), WorkflowID: before.WorkflowID, Request: verb, Applied: applied,
				StatusBefore: before.Status, Status: after.Status}
			if applied {
				out.Message = fmt.Sprintf("applied: instance %s is %s (was %s)", id, after.Status, before.Status)
			} else {
				out.Message = fmt.Sprintf("requested; no live node applied it yet (is a node running workflow %s?)", before.WorkflowID)
			}
			if a.jsonOut {
				err = a.printJSON(out)
			} else {
				_, err = fmt.Fprintln(a.stdout, out.Message)
			}
			if err == nil && !applied {
				return silent(exitNotApplied)
			}
			return err
		},
	}
	c.Flags().DurationVar(&wait, "wait", WaitDefault, "how long to wait for a live node to apply the request")
	if !resume {
		c.Flags().StringVar(&reason, "reason", "", "why, recorded with the cancellation")
	}
	return c
}

// requestable reports whether an instance in status can be resumed (or
// canceled).
func requestable(resume bool, status string) bool {
	if resume {
		return status == workflow.StatusBlocked
	}
	return status == workflow.StatusRunning || status == workflow.StatusBlocked
}

// awaitWorkflow reads the instance until the request shows (a resumed
// instance is no longer blocked, or moved on; a canceled one is
// finished) or wait passes.
func (a *app) awaitWorkflow(ctx context.Context, in *inspect.Inspector, before *inspect.WorkflowDetail, resume bool, wait time.Duration) (*inspect.WorkflowDetail, bool, error) {
	deadline := time.Now().Add(wait)
	for {
		now, err := in.Workflow(ctx, before.ID)
		if err != nil {
			return nil, false, fmt.Errorf("reading workflow instance %s: %w", before.ID, err)
		}
		if isApplied(resume, before, now) {
			return now, true, nil
		}
		if !time.Now().Before(deadline) {
			return now, false, nil
		}
		select {
		case <-ctx.Done():
			return now, false, fmt.Errorf("waiting for workflow instance %s: %w", before.ID, ctx.Err())
		case <-time.After(min(workflowPoll, time.Until(deadline))):
		}
	}
}

// isApplied reports whether the instance shows the request applied. A
// resumed instance leaves blocked; it may be blocked again by the time
// it is read (its step paused again), which its paused steps' attempts
// or states show.
func isApplied(resume bool, before, now *inspect.WorkflowDetail) bool {
	if !resume {
		return !requestable(false, now.Status)
	}
	if now.Status != workflow.StatusBlocked {
		return true
	}
	was := map[string]inspect.WorkflowStep{}
	for _, s := range before.Steps {
		was[s.ID] = s
	}
	for _, s := range now.Steps {
		if b, ok := was[s.ID]; ok && (b.Attempts != s.Attempts || b.Status != s.Status) {
			return true
		}
	}
	return false
}
