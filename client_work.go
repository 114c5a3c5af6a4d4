package revenant

import (
	"context"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"

	"github.com/revenant-go/revenant/bus"
	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/recovery"
	"github.com/revenant-go/revenant/workflow"
)

// Enqueue creates a pending episode in the node's scope and wakes runners
// when it commits. A duplicate dedupe key returns the existing episode.
// An actor that no live node in scope has registered, and that has no
// definition, is flagged (CreateResult.UnknownActor) and logged once, or
// refused with Config.StrictActors.
func (c *Client) Enqueue(ctx context.Context, p episodes.CreateParams) (*episodes.CreateResult, error) {
	return c.runner.Enqueue(ctx, p)
}

// EnqueueTx is Enqueue inside the caller's transaction: the episode
// exists, and runners are woken, only if it commits.
func (c *Client) EnqueueTx(ctx context.Context, tx Executor, p episodes.CreateParams) (*episodes.CreateResult, error) {
	return c.runner.EnqueueTx(ctx, tx, p)
}

// EnqueueMany creates many pending episodes in the node's scope at once:
// one statement per episodes.CreateManyBatch rows and one wake-up per
// batch, in one transaction. Every element is checked before anything is
// written; duplicates of a taken dedupe key return the episode holding it.
// Results are in the order of ps.
func (c *Client) EnqueueMany(ctx context.Context, ps []episodes.CreateParams) ([]*episodes.CreateResult, error) {
	return c.runner.EnqueueMany(ctx, ps)
}

// EnqueueManyTx is EnqueueMany inside the caller's transaction.
func (c *Client) EnqueueManyTx(ctx context.Context, tx Executor, ps []episodes.CreateParams) ([]*episodes.CreateResult, error) {
	return c.runner.EnqueueManyTx(ctx, tx, ps)
}

// Cancel cancels an episode from any node; its holder is fenced off at
// once and its run's context canceled.
func (c *Client) Cancel(ctx context.Context, id uuid.UUID, reason string) (*episodes.Episode, error) {
	return c.runner.Cancel(ctx, id, reason)
}

// StartWorkflow starts an instance of a registered workflow with trigger
// (any JSON value) and enqueues its root steps, in one transaction.
func (c *Client) StartWorkflow(ctx context.Context, workflowID string, trigger any, opts *workflow.StartOptions) (uuid.UUID, error) {
	return c.engine.StartInstance(ctx, workflowID, trigger, opts)
}

// StartWorkflowTx is StartWorkflow inside the caller's transaction.
func (c *Client) StartWorkflowTx(ctx context.Context, tx *sqlx.Tx, workflowID string, trigger any, opts *workflow.StartOptions) (uuid.UUID, error) {
	return c.engine.StartInstanceTx(ctx, tx, workflowID, trigger, opts)
}

// Subscribe calls h for each event of eventType ("" for all) that any node
// publishes, at least once (dedupe by Event.ID). Subscribe before Start to
// see the startup sweep's events. The returned function unsubscribes.
func (c *Client) Subscribe(eventType string, h bus.Handler) func() {
	return c.bus.Subscribe(eventType, h)
}

// Sweep runs one sweep now, with the node's scope and policies; with
// dryRun it changes nothing and reports, per orphan, the previous owner,
// why it is an orphan, the policy, its source and the action: the answer
// the real sweep acts on.
func (c *Client) Sweep(ctx context.Context, dryRun bool) (*recovery.Result, error) {
	opts := c.sweepOptions()
	opts.DryRun = dryRun
	return recovery.Sweep(ctx, c.db, &opts)
}

// Requeue puts a failed (or canceled) episode back to pending with fresh
// attempts: the way out of the dead-letter list (DeadLetters). Completed
// steps still count unless opts.Clean; the requeue is recorded in the
// episode's history (Episode.Requeues) with opts.By (defaulting to this
// node's id) and opts.Reason.
func (c *Client) Requeue(ctx context.Context, id uuid.UUID, opts episodes.RequeueOptions) (*episodes.Episode, error) {
	return c.runner.Requeue(ctx, id, opts)
}

// RequeueTx is Requeue inside the caller's transaction.
func (c *Client) RequeueTx(ctx context.Context, tx Executor, id uuid.UUID, opts episodes.RequeueOptions) (*episodes.Episode, error) {
	return c.runner.RequeueTx(ctx, tx, id, opts)
}

// RequeueMatching requeues up to filter.Limit failed episodes matching
// filter, in bulk; call again for more.
func (c *Client) RequeueMatching(ctx context.Context, filter episodes.RequeueFilter, opts episodes.RequeueOptions) ([]*episodes.Episode, error) {
	return c.runner.RequeueMatching(ctx, filter, opts)
}

// RequeueMatchingTx is RequeueMatching inside the caller's transaction.
func (c *Client) RequeueMatchingTx(ctx context.Context, tx Executor, filter episodes.RequeueFilter, opts episodes.RequeueOptions) ([]*episodes.Episode, error) {
	return c.runner.RequeueMatchingTx(ctx, tx, filter, opts)
}

// DeadLetters lists failed episodes (attempts exhausted, failed
// permanently, or dead-lettered by a sweep), filtered by p's actor, error
// class and finish time, a page at a time.
func (c *Client) DeadLetters(ctx context.Context, p episodes.ListParams) (*episodes.ListResult, error) {
	return c.Episodes().DeadLetters(ctx, p)
}

// Archive discards a finished episode: it leaves the dead-letter list and
// frees its dedupe key.
func (c *Client) Archive(ctx context.Context, id uuid.UUID) (*episodes.Episode, error) {
	return c.Episodes().Archive(ctx, id)
}
