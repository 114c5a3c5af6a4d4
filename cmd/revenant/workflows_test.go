package main

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant"
	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/internal/testdb"
	"github.com/revenant-go/revenant/journal"
	"github.com/revenant-go/revenant/runner"
	"github.com/revenant-go/revenant/workflow"
)

// workflows list and show (the DAG's edges), and resume and cancel: the
// CLI records requests that a live node running the workflow applies,
// and says so; with no such node, it exits 6.
func TestWorkflows(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		f := newFixture(t, driver)
		ctx := context.Background()
		node, err := revenant.New(f.s.DB, fastConfig("wf-node"))
		require.NoError(t, err)
		t.Cleanup(func() { _ = node.StopAndCancel(context.Background()) })
		var failures atomic.Int32
		failures.Store(3) // each instance's "pay" fails once: Pause blocks it
		noop := func(context.Context, *episodes.Episode, *journal.Journal) (any, error) { return "ok", nil }
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
		var ids []uuid.UUID
		for i := range 3 {
			id, err := node.StartWorkflow(ctx, "order", map[string]int{"n": i}, &workflow.StartOptions{Subject: "order-" + string(rune('a'+i))})
			require.NoError(t, err)
			ids = append(ids, id)
		}
		resumed, canceled, orphaned := ids[0], ids[1], ids[2]
		// status never fails the test itself: it also runs inside
		// require.Eventually, whose condition is not the test goroutine.
		status := func(id uuid.UUID) string {
			d, err := node.Inspect().Workflow(ctx, id)
			if err != nil {
				return "unreadable: " + err.Error()
			}
			return d.Status
		}
		require.Eventually(t, func() bool {
			return status(resumed) == workflow.StatusBlocked && status(canceled) == workflow.StatusBlocked && status(orphaned) == workflow.StatusBlocked
		}, 30*time.Second, 10*time.Millisecond, "every instance paused")

		var list struct {
			Instances []workflowSummaryJSON `json:"instances"`
		}
		requireExit(t, 0, cliJSON(t, f.dsn(), &list, "workflows", "list", "--workflow", "order", "--status", "blocked"))
		require.Len(t, list.Instances, 3)
		require.Equal(t, orphaned.String(), list.Instances[0].ID, "newest first")
		require.Equal(t, 1, list.Instances[0].StepCounts["paused"])
		text := cli(t, f.dsn(), "workflows", "list")
		requireExit(t, 0, text)
		require.Contains(t, text.stdout, "order-a")
		require.Contains(t, text.stdout, "paused 1")

		var show workflowDetailJSON
		requireExit(t, 0, cliJSON(t, f.dsn(), &show, "workflows", "show", resumed.String()))
		require.True(t, show.Defined)
		require.Equal(t, []edgeJSON{{From: "pay", To: "ship"}}, show.Edges)
		require.Equal(t, "paused", show.Steps[0].Status)
		require.Equal(t, "pause", show.Steps[0].OnFailure)
		text = cli(t, f.dsn(), "workflows", "show", resumed.String())
		requireExit(t, 0, text)
		for _, s := range []string{"pay -> ship", "level 0: pay [paused]", "level 1: ship [pending]", "blocked"} {
			require.Contains(t, text.stdout, s)
		}

		requireExit(t, exitDeclined, cli(t, f.dsn(), "workflows", "resume", resumed.String()))
		var req workflowRequestJSON
		requireExit(t, 0, cliJSON(t, f.dsn(), &req, "workflows", "resume", resumed.String(), "--yes", "--wait", "30s"))
		require.True(t, req.Applied, "%+v", req)
		require.Equal(t, "blocked", req.StatusBefore)
		require.NotEqual(t, "blocked", req.Status)
		require.Eventually(t, func() bool { return status(resumed) == workflow.StatusDone }, 30*time.Second, 10*time.Millisecond)

		text = cli(t, f.dsn(), "workflows", "cancel", canceled.String(), "--yes", "--reason", "customer left", "--wait", "30s")
		requireExit(t, 0, text)
		require.Contains(t, text.stdout, "applied: instance "+canceled.String()+" is canceled")
		require.Equal(t, workflow.StatusCanceled, status(canceled))

		// A finished instance cannot be resumed.
		r := cli(t, f.dsn(), "workflows", "resume", resumed.String(), "--yes")
		requireExit(t, exitError, r)
		require.Contains(t, r.stderr, "only a blocked instance can be resumed")

		// No live node runs the workflow: the request waits, exit 6.
		require.NoError(t, node.Stop(ctx))
		text = cli(t, f.dsn(), "workflows", "resume", orphaned.String(), "--yes", "--wait", "300ms")
		requireExit(t, exitNotApplied, text)
		require.Contains(t, text.stdout, "requested; no live node applied it yet (is a node running workflow order?)")
		require.Equal(t, workflow.StatusBlocked, status(orphaned))

		requireExit(t, exitNotFound, cli(t, f.dsn(), "workflows", "show", uuid.NewString()))
	})
}
