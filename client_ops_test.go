package revenant_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant"
	"github.com/revenant-go/revenant/bus"
	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/inspect"
	"github.com/revenant-go/revenant/internal/store"
	"github.com/revenant-go/revenant/internal/store/backend"
	"github.com/revenant-go/revenant/internal/testdb"
	"github.com/revenant-go/revenant/journal"
	"github.com/revenant-go/revenant/recovery"
	"github.com/revenant-go/revenant/runner"
	"github.com/revenant-go/revenant/workflow"
)

// Ready says not started, ready, not ready while the database says the
// node is stopped (until its heartbeat re-registers it), and stopping.
func TestReadyFollowsTheNodesLife(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		s := testdb.New(t, &testdb.Options{Driver: driver})
		ctx := context.Background()
		// A TTL a loaded machine's late heartbeat does not lapse: this test
		// is about the states, not the timing.
		cfg := fast(revenant.Config{Name: "ready"})
		cfg.NodeTTL = 10 * time.Second
		c, err := revenant.New(s.DB, cfg)
		require.NoError(t, err)
		t.Cleanup(func() { _ = c.StopAndCancel(context.Background()) })
		require.NoError(t, c.Register(runner.Actor{ID: "a", Run: noop}))
		err = c.Ready(ctx)
		require.ErrorIs(t, err, revenant.ErrNotReady)
		require.ErrorContains(t, err, "not started")

		require.NoError(t, c.Start(ctx))
		require.NoError(t, c.Ready(ctx))

		// A sweep found it dead (marked stopped): unready until the
		// heartbeat notices and the node re-registers.
		id := c.NodeID()
		require.NoError(t, backend.For(s.DB).NodeStop(ctx, s.DB, id))
		if err := c.Ready(ctx); err != nil { // the heartbeat may already have re-registered it
			require.ErrorIs(t, err, revenant.ErrNotReady)
			// Marked stopped, or, once the heartbeat noticed, not yet
			// registered under its new id.
			require.Regexp(t, "marked stopped|not registered", err.Error())
		}
		waitFor(t, "ready again under a new node id", func() bool { return c.NodeID() != id && c.Ready(ctx) == nil })

		require.NoError(t, c.Stop(ctx))
		err = c.Ready(ctx)
		require.ErrorIs(t, err, revenant.ErrNotReady)
		require.ErrorContains(t, err, "stopp")
	})
}

// A process without the workflow's definition (the CLI, a dashboard)
// resumes and cancels instances through requests that a node which
// registered the workflow applies; inspect shows the instances with their
// published DAG, and each node's last sweep.
func TestWorkflowRequestsAndWorkflowInspection(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		s := testdb.New(t, &testdb.Options{Driver: driver})
		ctx := context.Background()
		node := newClient(t, s.DB, revenant.Config{Name: "wf-node"})
		var failures atomic.Int32
		failures.Store(2) // each instance's "pay" fails once
		require.NoError(t, node.Register(runner.Actor{ID: "ship", Run: noop}))
		require.NoError(t, node.Register(runner.Actor{ID: "pay", Run: func(context.Context, *episodes.Episode, *journal.Journal) (any, error) {
			if failures.Add(-1) >= 0 {
				return nil, errors.New("card declined")
			}
			return "paid", nil
		}}))
		require.NoError(t, node.RegisterWorkflow(workflow.Definition{ID: "order", Steps: []workflow.Step{
			{ID: "pay", Actor: "pay", OnFailure: workflow.Pause()},
			{ID: "ship", Actor: "ship", DependsOn: []string{"pay"}},
		}}))
		require.NoError(t, node.Start(ctx))

		admin, err := revenant.New(s.DB, &revenant.Config{Name: "admin", SkipMigrate: true})
		require.NoError(t, err)
		insp := admin.Inspect()

		resumed, err := node.StartWorkflow(ctx, "order", map[string]int{"n": 1}, nil)
		require.NoError(t, err)
		canceled, err := node.StartWorkflow(ctx, "order", map[string]int{"n": 2}, nil)
		require.NoError(t, err)
		statusOf := func(id uuid.UUID) string {
			d, err := insp.Workflow(ctx, id)
			require.NoError(t, err)
			return d.Status
		}
		waitFor(t, "both instances paused", func() bool {
			return statusOf(resumed) == workflow.StatusBlocked && statusOf(canceled) == workflow.StatusBlocked
		})

		d, err := insp.Workflow(ctx, resumed)
		require.NoError(t, err)
		require.True(t, d.Defined, "the node published the workflow's shape at Start")
		require.Len(t, d.Steps, 2)
		require.Equal(t, "pay", d.Steps[0].ID)
		require.Equal(t, "paused", d.Steps[0].Status)
		require.Equal(t, "pause", d.Steps[0].OnFailure)
		require.Equal(t, []string{"pay"}, d.Steps[1].DependsOn)
		require.Equal(t, "ship", d.Steps[1].Actor)
		require.Equal(t, 1, d.StepCounts["paused"])
		require.False(t, d.UpdatedAt.Before(d.CreatedAt), "updated %s, created %s", d.UpdatedAt, d.CreatedAt)

		list, err := insp.Workflows(ctx, inspect.WorkflowFilter{WorkflowID: "order", Status: workflow.StatusBlocked})
		require.NoError(t, err)
		require.Len(t, list, 2)
		require.Equal(t, canceled, list[0].ID, "newest first")

		require.NoError(t, admin.ResumeWorkflow(ctx, resumed))
		require.NoError(t, admin.CancelWorkflow(ctx, canceled, "operator said so"))
		waitFor(t, "the node applied both requests", func() bool {
			return statusOf(resumed) == workflow.StatusDone && statusOf(canceled) == workflow.StatusCanceled
		})
		_, err = insp.Workflow(ctx, uuid.New())
		require.ErrorIs(t, err, revenant.ErrNotFound)
		require.ErrorIs(t, admin.ResumeWorkflow(ctx, uuid.New()), revenant.ErrNotFound)

		// The node's Sweeper recorded its passes.
		nodes, err := insp.Nodes(ctx)
		require.NoError(t, err)
		var found bool
		for _, n := range nodes {
			if n.ID == node.NodeID() {
				found = true
				require.NotNil(t, n.LastSweep, "the startup sweep is recorded")
				require.Empty(t, n.LastSweep.Error)
				require.False(t, n.LastSweep.At.IsZero())
			}
		}
		require.True(t, found)
	})
}

// The events a sweep publishes say why the episode was an orphan and whose
// it was.
func TestRecoveryEventsCarryReasonAndPreviousOwner(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		s := testdb.New(t, &testdb.Options{Driver: driver})
		ctx := context.Background()
		orphans := deadNode(t, s, "gone-1", nil, "mailer")
		c := newClient(t, s.DB, revenant.Config{Name: "survivor", DefaultPolicy: recovery.Restart})
		require.NoError(t, c.Register(runner.Actor{ID: "mailer", Run: noop}))
		got := make(chan bus.Event, 4)
		c.Subscribe(bus.EpisodeRecovered, func(_ context.Context, ev bus.Event) error {
			got <- ev
			return nil
		})
		require.NoError(t, c.Start(ctx))
		var ev bus.Event
		waitFor(t, "the recovery event", func() bool {
			select {
			case ev = <-got:
				return true
			default:
				return false
			}
		})
		require.Equal(t, orphans["mailer"], ev.EpisodeID)
		rec, ok := ev.Recovery()
		require.True(t, ok)
		require.Equal(t, "gone-1", rec.PreviousOwner)
		require.Equal(t, recovery.ReasonOwnerExpired, rec.Reason)
		_, ok = bus.Event{Type: bus.EpisodeCompleted}.Recovery()
		require.False(t, ok)
	})
}

// On Postgres the client's Sweeper has no poll of its own: the heartbeat's
// statement asks whether a node died owning episodes. With no periodic
// pass (and the failure watcher's and LISTEN's connection cut, though a
// node that dies by its TTL is the heartbeat's to see anyway), a dead
// node's orphan is still recovered, through the heartbeat.
func TestHeartbeatFindsDeadOwnersWithoutTheWatcher(t *testing.T) {
	testdb.Require(t)
	t.Parallel()
	s := testdb.New(t, nil)
	ctx := context.Background()
	proxy := testdb.NewProxy(t)
	cfg := fast(revenant.Config{Name: "hb-check", ListenDSN: proxy.DSN(s.DSN), DefaultPolicy: recovery.Restart})
	cfg.SweepInterval = time.Hour // only the start-up pass
	c, err := revenant.New(s.DB, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.StopAndCancel(context.Background()) })
	require.NoError(t, c.Register(runner.Actor{ID: "mailer", Run: noop}))
	require.NoError(t, c.Start(ctx))
	proxy.Cut()
	// A node that died owning an episode, created and claimed in one
	// transaction so that the live node cannot claim it first.
	st := backend.For(s.DB)
	require.NoError(t, st.NodeRegister(ctx, s.DB, &store.NodeRegisterParams{ID: "gone-hb", Name: "gone", Actors: []string{"mailer"}, TTL: time.Minute}))
	eps, err := episodes.New(s.DB, nil)
	require.NoError(t, err)
	tx, err := s.DB.Beginx()
	require.NoError(t, err)
	res, err := eps.CreateTx(ctx, tx, episodes.CreateParams{ActorID: "mailer"})
	require.NoError(t, err)
	_, err = eps.ClaimTx(ctx, tx, res.Episode.ID, "gone-hb")
	require.NoError(t, err)
	require.NoError(t, tx.Commit())
	_, err = s.DB.Exec(`UPDATE revenant_nodes SET expires_at = ` + s.NowPlus(-time.Minute) + ` WHERE node_id = 'gone-hb'`)
	require.NoError(t, err)
	waitFor(t, "the orphan recovered and run", func() bool { return status(t, s.DB, res.Episode.ID) == episodes.StatusDone })
}
