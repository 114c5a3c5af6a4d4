package recovery

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/jmoiron/sqlx"

	"github.com/revenant-go/revenant/internal/dbx"
)

// Scope selects episodes or instances by source stack and env. Rows with no
// stack match any stack; env matches strictly (no env matches only no env);
// AllStacks and AllEnvs drop the filter. Sweeps, runners' claims and
// reconciliation all use these rules.
type Scope struct {
	Stack     string
	AllStacks bool
	Env       string
	AllEnvs   bool
}

// ReconcileResult is what a reconciliation did.
type ReconcileResult struct {
	// Replayed counts instances that were advanced (a missed terminal
	// event applied, a ready step started, a due retry run, a finished
	// instance closed).
	Replayed int
	// Blocked counts instances blocked because their steps no longer match
	// the registered definition (a step renamed or removed between
	// deploys); Errors says how they differ.
	Blocked int
	// Skipped counts instances that could not be handled; Errors says why.
	Skipped int
	Errors  []error
}

// WorkflowReconciler is implemented by *workflow.Engine.
type WorkflowReconciler interface {
	ReconcileWorkflows(ctx context.Context, scope Scope) (*ReconcileResult, error)
}

// ReconcileOptions configures ReconcileWorkflows.
type ReconcileOptions struct {
	// Engine is the workflow engine with every workflow registered.
	// Required.
	Engine WorkflowReconciler
	// Node supplies the default stack and env, as in Sweep.
	Node      Node
	Stack     string
	AllStacks bool
	Env       string
	AllEnvs   bool
	Logger    *slog.Logger
}

// ReconcileWorkflows repairs workflow instances that missed events: call
// it after Sweep and after workflow registration. See
// workflow.Engine.ReconcileWorkflows for what it repairs.
func ReconcileWorkflows(ctx context.Context, db *sqlx.DB, opts *ReconcileOptions) (*ReconcileResult, error) {
	if db == nil {
		return nil, ErrNilDB
	}
	if opts == nil || opts.Engine == nil {
		return nil, fmt.Errorf("%w: ReconcileOptions.Engine is required: pass the workflow engine after registering your workflows", dbx.ErrInvalidInput)
	}
	s := Scope{Stack: opts.Stack, AllStacks: opts.AllStacks, Env: opts.Env, AllEnvs: opts.AllEnvs}
	if opts.Node != nil {
		if s.Stack == "" {
			s.Stack = opts.Node.Stack()
		}
		if s.Env == "" {
			s.Env = opts.Node.Env()
		}
	}
	res, err := opts.Engine.ReconcileWorkflows(ctx, s)
	if err == nil && opts.Logger != nil {
		opts.Logger.InfoContext(ctx, "revenant: reconciled workflows", slog.Int("replayed", res.Replayed),
			slog.Int("blocked", res.Blocked), slog.Int("skipped", res.Skipped))
	}
	return res, err
}
