package revenant

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/revenant-go/revenant/migrations"
	"github.com/revenant-go/revenant/recovery"
)

// Startup is what Start did before the node began claiming work.
type Startup struct {
	// Migrated lists the migrations Start applied (none with SkipMigrate).
	Migrated []int
	// Sweep is the startup sweep's result; nil if it failed (SweepErr).
	Sweep    *recovery.Result
	SweepErr error
	// Reconcile is the workflow reconciliation's result; nil without
	// registered workflows, or if it failed (ReconcileErr).
	Reconcile    *recovery.ReconcileResult
	ReconcileErr error
}

// Start brings the node up, in an order that loses nothing:
//
//  1. migrate (unless Config.SkipMigrate);
//  2. subscribe the workflow engine, then start the bus, so that the
//     engine and every subscriber see what the steps below publish;
//  3. register the node, with its actors and their recovery policies, and
//     start claiming;
//  4. the startup sweep: orphans of dead nodes are restarted or failed by
//     their policies, with their events on the bus;
//  5. reconcile workflows (when any is registered), which also warns about
//     step actors nobody runs;
//  6. start the Sweeper, which keeps sweeping (and reconciling) for the
//     life of the node.
//
// A failure in steps 1 to 3 stops what was started and is returned; create
// a new Client to try again. A failed startup sweep or reconciliation is
// logged and reported in Startup, and Start goes on: the Sweeper repeats
// both within SweepInterval.
func (c *Client) Start(ctx context.Context) error {
	c.mu.Lock()
	if c.state != clientNew {
		c.mu.Unlock()
		return fmt.Errorf("%w: the client was already started; create a new Client to start again", ErrInvalidInput)
	}
	c.state = clientStarted
	workflows := c.workflows > 0
	c.mu.Unlock()

	up := &Startup{}
	var undo []func(context.Context) error
	fail := func(step string, err error) error {
		stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.shutdownTimeout())
		defer cancel()
		for i := len(undo) - 1; i >= 0; i-- {
			_ = undo[i](stopCtx)
		}
		c.mu.Lock()
		c.state = clientStopped
		c.mu.Unlock()
		return fmt.Errorf("revenant: start: %s: %w", step, err)
	}
	if !c.config.SkipMigrate {
		res, err := migrations.Migrate(ctx, c.db)
		if err != nil {
			return fail("migrating", err)
		}
		for _, a := range res.Applied {
			up.Migrated = append(up.Migrated, a.Version)
		}
	}
	if workflows {
		if err := c.engine.Start(ctx); err != nil {
			return fail("starting the workflow engine", err)
		}
		undo = append(undo, c.engine.Stop)
	}
	if err := c.bus.Start(ctx); err != nil {
		return fail("starting the bus", err)
	}
	undo = append(undo, c.bus.Stop)
	if err := c.runner.Start(ctx); err != nil {
		return fail("registering the node", err)
	}
	undo = append(undo, c.runner.StopAndCancel)

	sw, err := c.newSweeper()
	if err != nil {
		return fail("building the Sweeper", err)
	}
	undo = append(undo, sw.Stop)
	// The startup sweep is the Sweeper's first pass, so that it does not
	// sweep (and reconcile) again at once when it starts.
	up.Sweep, up.SweepErr = sw.Pass(ctx)
	if up.SweepErr != nil {
		up.Sweep = nil
		c.logger.ErrorContext(ctx, "revenant: the startup sweep failed; the Sweeper retries it", slog.Any("error", up.SweepErr))
	}
	if workflows {
		up.Reconcile, up.ReconcileErr = recovery.ReconcileWorkflows(ctx, c.db, &recovery.ReconcileOptions{Engine: c.engine, Node: c.runner, Logger: c.logger})
		if up.ReconcileErr != nil {
			up.Reconcile = nil
			c.logger.ErrorContext(ctx, "revenant: reconciling workflows at start failed; the Sweeper retries it", slog.Any("error", up.ReconcileErr))
		}
	}
	if err := sw.Start(ctx); err != nil {
		return fail("starting the Sweeper", err)
	}
	c.mu.Lock()
	c.sweeper, c.startup = sw, up
	c.mu.Unlock()
	c.live.Store(sw)
	attrs := []any{slog.String("node", c.NodeID()), slog.Any("migrated", up.Migrated)}
	if up.Sweep != nil {
		attrs = append(attrs, slog.Int("restarted", up.Sweep.Restarted), slog.Int("failed", up.Sweep.Failed),
			slog.Int("dead_lettered", up.Sweep.DeadLettered), slog.Any("dead_nodes", up.Sweep.DeadNodes))
	}
	if up.Reconcile != nil {
		attrs = append(attrs, slog.Int("workflows_replayed", up.Reconcile.Replayed))
	}
	c.logger.InfoContext(ctx, "revenant: client started", attrs...)
	return nil
}

// Startup reports what Start did; nil before Start returns.
func (c *Client) Startup() *Startup {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.startup
}

func (c *Client) shutdownTimeout() time.Duration {
	if c.config.ShutdownTimeout > 0 {
		return c.config.ShutdownTimeout
	}
	return 10 * time.Second
}

// Stop shuts the node down gracefully: it stops claiming, lets running
// episodes finish until ctx ends (the node stays alive meanwhile), then
// hands the rest back to pending, marks the node stopped, and stops the
// Sweeper, the engine and the bus. Give ctx a deadline shorter than the
// time your platform allows for shutdown, or Stop waits as long as the
// runs take. It is safe before Start and when called again.
func (c *Client) Stop(ctx context.Context) error { return c.stop(ctx, true) }

// StopAndCancel shuts the node down at once: running episodes are canceled
// and handed back to pending (their journals keep the completed steps).
func (c *Client) StopAndCancel(ctx context.Context) error { return c.stop(ctx, false) }

func (c *Client) stop(ctx context.Context, drain bool) error {
	c.mu.Lock()
	if c.state != clientStarted || c.sweeper == nil {
		c.state = clientStopped
		c.mu.Unlock()
		return nil
	}
	c.state = clientStopped
	sw := c.sweeper
	c.mu.Unlock()
	var errs []error
	if drain {
		errs = append(errs, c.runner.Stop(ctx))
	} else {
		errs = append(errs, c.runner.StopAndCancel(ctx))
	}
	// The drain may have used up ctx; the rest only has to end loops.
	rest, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.shutdownTimeout())
	defer cancel()
	errs = append(errs, sw.Stop(rest), c.engine.Stop(rest), c.bus.Stop(rest))
	err := errors.Join(errs...)
	if err != nil {
		c.logger.WarnContext(ctx, "revenant: client stopped with errors", slog.Any("error", err))
	} else {
		c.logger.InfoContext(ctx, "revenant: client stopped", slog.String("node", c.NodeID()))
	}
	return err
}
