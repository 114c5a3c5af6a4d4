package revenant

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"

	"github.com/revenant-go/revenant/bus"
	"github.com/revenant-go/revenant/internal/dbx"
	"github.com/revenant-go/revenant/internal/store/backend"
	"github.com/revenant-go/revenant/migrations"
	"github.com/revenant-go/revenant/recovery"
	"github.com/revenant-go/revenant/workflow"
)

// ErrNotReady is wrapped by Ready's errors: the node should not get
// traffic now. The message says why.
var ErrNotReady = errors.New("revenant: node not ready")

// Ready reports whether the node is ready, for a readiness probe: nil
// when the database answers, its schema is current, the node is started,
// registered and its heartbeat fresh (its TTL has not lapsed), and it is
// not stopping. Otherwise the error wraps ErrNotReady and says why; it
// never holds a DSN. Bound it with ctx: a database that does not answer
// makes Ready wait as long as ctx allows.
func (c *Client) Ready(ctx context.Context) error {
	c.mu.Lock()
	state := c.state
	c.mu.Unlock()
	switch state {
	case clientNew:
		return fmt.Errorf("%w: not started", ErrNotReady)
	case clientStopped:
		return fmt.Errorf("%w: stopping or stopped", ErrNotReady)
	}
	m, err := c.schema()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrNotReady, err)
	}
	pending, err := m.Pending(ctx)
	if err != nil {
		return fmt.Errorf("%w: database unreachable or unreadable: %w", ErrNotReady, dbx.Explain(err))
	}
	if len(pending) > 0 {
		return fmt.Errorf("%w: the schema lacks %d migration(s) (next: %d_%s); run migrations (revenant migrate up)",
			ErrNotReady, len(pending), pending[0].Version, pending[0].Name)
	}
	id := c.runner.NodeID()
	nr, err := backend.For(c.db).NodeReadiness(ctx, c.db, id)
	switch {
	case err != nil:
		return fmt.Errorf("%w: database unreachable or unreadable: %w", ErrNotReady, dbx.Explain(err))
	case !nr.Found:
		return fmt.Errorf("%w: node %s is not registered (re-registering?)", ErrNotReady, id)
	case nr.Stopped:
		return fmt.Errorf("%w: node %s is marked stopped (%s); it re-registers at its next heartbeat", ErrNotReady, id, nr.StopReason)
	case nr.Expired:
		return fmt.Errorf("%w: node %s's heartbeat is %s old, past its TTL", ErrNotReady, id, nr.HeartbeatAge.Round(1e6))
	}
	return nil
}

// schema returns the client's migrator, built on first use.
func (c *Client) schema() (*migrations.Migrator, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.migrator == nil {
		m, err := migrations.New(c.db, nil)
		if err != nil {
			return nil, err
		}
		c.migrator = m
	}
	return c.migrator, nil
}

// ResumeWorkflow resumes a blocked workflow instance (paused by a step's
// Pause policy, or blocked by a definition change). When this client
// registered the workflow it is applied at once; otherwise (the CLI, a
// dashboard process) it is recorded as a request on the bus, which a live
// node that registered the workflow applies: watch the instance's status
// (Inspect().Workflow) to see it happen.
func (c *Client) ResumeWorkflow(ctx context.Context, id uuid.UUID) error {
	err := c.engine.Resume(ctx, id)
	if errors.Is(err, workflow.ErrUnknownWorkflow) {
		return c.engine.Request(ctx, bus.WorkflowResumeRequested, id, bus.WorkflowRequest{By: c.runner.NodeID()})
	}
	return err
}

// CancelWorkflow cancels a running or blocked workflow instance: its
// running steps' episodes are canceled. Like ResumeWorkflow, it is a
// request applied by another node when this client did not register the
// workflow.
func (c *Client) CancelWorkflow(ctx context.Context, id uuid.UUID, reason string) error {
	err := c.engine.Cancel(ctx, id, reason)
	if errors.Is(err, workflow.ErrUnknownWorkflow) {
		return c.engine.Request(ctx, bus.WorkflowCancelRequested, id, bus.WorkflowRequest{Reason: reason, By: c.runner.NodeID()})
	}
	return err
}

// SweeperStats reports the node's Sweeper: passes, failures, the last
// result and totals since Start (zero before Start).
func (c *Client) SweeperStats() recovery.Stats {
	c.mu.Lock()
	sw := c.sweeper
	c.mu.Unlock()
	if sw == nil {
		return recovery.Stats{}
	}
	return sw.Stats()
}
