package workflow_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant"
	"github.com/revenant-go/revenant/bus"
	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/internal/testdb"
	"github.com/revenant-go/revenant/migrations"
	"github.com/revenant-go/revenant/recovery"
	"github.com/revenant-go/revenant/workflow"
)

// engineWith is a deploy: an engine with these definitions and no bus, so
// instances advance only when the test reconciles.
func engineWith(t *testing.T, s *testdb.Schema, defs ...workflow.Definition) *workflow.Engine {
	t.Helper()
	e, err := workflow.NewEngine(s.DB, nil)
	require.NoError(t, err)
	for _, d := range defs {
		require.NoError(t, e.Register(d))
	}
	return e
}

// finishStep completes the episode a step is running, as a runner would.
func finishStep(t *testing.T, s *testdb.Schema, e *workflow.Engine, id uuid.UUID, step string) {
	t.Helper()
	ctx := context.Background()
	inst, err := e.Get(ctx, id)
	require.NoError(t, err)
	st := inst.Step(step)
	require.NotNil(t, st, step)
	store, err := episodes.New(s.DB, nil)
	require.NoError(t, err)
	ep, err := store.Claim(ctx, st.EpisodeID, "n")
	require.NoError(t, err)
	_, err = store.Complete(ctx, ep.ID, ep.ClaimToken, map[string]string{"done": step})
	require.NoError(t, err)
}

// failStep fails the episode a step is running, as a runner would.
func failStep(t *testing.T, s *testdb.Schema, e *workflow.Engine, id uuid.UUID, step string) {
	t.Helper()
	ctx := context.Background()
	inst, err := e.Get(ctx, id)
	require.NoError(t, err)
	st := inst.Step(step)
	require.Equal(t, workflow.StepRunning, st.Status, step)
	store, err := episodes.New(s.DB, nil)
	require.NoError(t, err)
	ep, err := store.Claim(ctx, st.EpisodeID, "n")
	require.NoError(t, err)
	_, err = store.Fail(ctx, ep.ID, ep.ClaimToken, "boom", nil)
	require.NoError(t, err)
}

// A step renamed between deploys while instances are in flight: the
// instance is blocked with the reason, reported, and the others go on; the
// old definition deployed again resumes it.
func TestDefinitionChangedBetweenDeploysBlocksTheInstance(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		s := setup(t, driver)
		ctx := context.Background()
		v1 := workflow.Definition{ID: "order", Steps: []workflow.Step{
			{ID: "a", Actor: "work"}, {ID: "b", Actor: "work", DependsOn: []string{"a"}},
		}}
		v2 := workflow.Definition{ID: "order", Steps: []workflow.Step{
			{ID: "a", Actor: "work"}, {ID: "c", Actor: "work", DependsOn: []string{"a"}},
		}}
		other := workflow.Definition{ID: "other", Steps: []workflow.Step{
			{ID: "x", Actor: "work"}, {ID: "y", Actor: "work", DependsOn: []string{"x"}},
		}}
		deploy1 := engineWith(t, s, v1, other)
		// One instance further on: b runs, and its episode fails after the
		// deploy (the old code looked up b's failure policy in the new
		// definition and dereferenced nil).
		further, err := deploy1.StartInstance(ctx, "order", 3, nil)
		require.NoError(t, err)
		finishStep(t, s, deploy1, further, "a")
		_, err = deploy1.ReconcileWorkflows(ctx, recovery.Scope{})
		require.NoError(t, err)
		failStep(t, s, deploy1, further, "b")
		// One whose a finished but was not applied yet, and one of an
		// unchanged workflow.
		changed, err := deploy1.StartInstance(ctx, "order", 1, nil)
		require.NoError(t, err)
		fine, err := deploy1.StartInstance(ctx, "other", 2, nil)
		require.NoError(t, err)
		finishStep(t, s, deploy1, changed, "a")
		finishStep(t, s, deploy1, fine, "x")

		deploy2 := engineWith(t, s, v2, other)
		var res *recovery.ReconcileResult
		require.NotPanics(t, func() {
			res, err = recovery.ReconcileWorkflows(ctx, s.DB, &recovery.ReconcileOptions{Engine: deploy2})
		})
		require.NoError(t, err)
		require.Equal(t, 2, res.Blocked)
		require.Equal(t, 1, res.Replayed, "the other instance advanced")
		require.Len(t, res.Errors, 2)
		for _, e := range res.Errors {
			require.ErrorIs(t, e, workflow.ErrDefinitionChanged)
			require.ErrorContains(t, e, `step "b" is not in the registered definition`)
			require.ErrorContains(t, e, `step "c" of the registered definition`)
		}
		inst, err := deploy2.Get(ctx, further)
		require.NoError(t, err)
		require.Equal(t, workflow.StatusBlocked, inst.Status)
		inst, err = deploy2.Get(ctx, changed)
		require.NoError(t, err)
		require.Equal(t, workflow.StatusBlocked, inst.Status)
		var detail map[string]string
		require.NoError(t, json.Unmarshal(inst.Error, &detail))
		require.Equal(t, "definition_changed", detail["reason"])
		inst, err = deploy2.Get(ctx, fine)
		require.NoError(t, err)
		require.Equal(t, workflow.StepRunning, inst.Step("y").Status, "the other instance started its next step")

		// Reconciling again, an event, a Sweeper pass: nothing panics,
		// nothing changes.
		res, err = recovery.ReconcileWorkflows(ctx, s.DB, &recovery.ReconcileOptions{Engine: deploy2})
		require.NoError(t, err)
		require.Equal(t, 2, res.Blocked)
		require.NoError(t, deploy2.HandleEvent(ctx, bus.Event{Type: bus.EpisodeCompleted, WorkflowInstanceID: changed, WorkflowStepID: "a"}))
		sw, err := recovery.NewSweeper(s.DB, &recovery.SweeperConfig{Interval: 20 * time.Millisecond, Workflows: deploy2})
		require.NoError(t, err)
		require.NoError(t, sw.Start(ctx))
		require.Eventually(t, func() bool { return sw.Stats().Passes >= 3 }, 10*time.Second, 10*time.Millisecond)
		_ = sw.Stop(context.Background())

		// Resume refuses while the definition still differs; with the old
		// definition back it runs the instance on.
		require.ErrorIs(t, deploy2.Resume(ctx, changed), workflow.ErrDefinitionChanged)
		deploy3 := engineWith(t, s, v1, other)
		require.NoError(t, deploy3.Resume(ctx, changed))
		inst, err = deploy3.Get(ctx, changed)
		require.NoError(t, err)
		require.Equal(t, workflow.StatusRunning, inst.Status)
		require.Equal(t, workflow.StepRunning, inst.Step("b").Status)

		// Cancel works whatever the definition.
		require.NoError(t, deploy2.Cancel(ctx, changed, "retired"))
	})
}

// A panic while reconciling one instance (a step's Input function) is that
// instance's error: the others are reconciled and the caller survives.
func TestReconcileSurvivesAPanickingInputFunction(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		s := setup(t, driver)
		ctx := context.Background()
		def := workflow.Definition{ID: "p", Steps: []workflow.Step{
			{ID: "a", Actor: "work"},
			{ID: "b", Actor: "work", DependsOn: []string{"a"}, Input: func(in workflow.StepInput) (any, error) {
				if string(in.Trigger) == `"boom"` {
					panic("input builder exploded")
				}
				return in, nil
			}},
		}}
		e := engineWith(t, s, def)
		bad, err := e.StartInstance(ctx, "p", "boom", nil)
		require.NoError(t, err)
		good, err := e.StartInstance(ctx, "p", "fine", nil)
		require.NoError(t, err)
		finishStep(t, s, e, bad, "a")
		finishStep(t, s, e, good, "a")
		var res *recovery.ReconcileResult
		require.NotPanics(t, func() { res, err = e.ReconcileWorkflows(ctx, recovery.Scope{}) })
		require.NoError(t, err)
		require.Equal(t, 1, res.Replayed)
		require.Equal(t, 1, res.Skipped)
		require.ErrorContains(t, res.Errors[0], "input builder exploded")
		inst, err := e.Get(ctx, good)
		require.NoError(t, err)
		require.Equal(t, workflow.StepRunning, inst.Step("b").Status)
	})
}

// Start on a database that is not ready fails, leaves nothing running,
// and can be called again.
func TestEngineStartFailsOnUnmigratedDatabase(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		s := testdb.New(t, &testdb.Options{Driver: driver, NoMigrate: true})
		e, err := workflow.NewEngine(s.DB, nil)
		require.NoError(t, err)
		ctx := context.Background()
		err = e.Start(ctx)
		require.ErrorIs(t, err, revenant.ErrNotMigrated)
		began := time.Now()
		_ = e.Stop(context.Background())
		require.Less(t, time.Since(began), time.Second)
		_, err = migrations.Migrate(ctx, s.DB)
		require.NoError(t, err)
		require.NoError(t, e.Start(ctx))
		_ = e.Stop(context.Background())
	})
}

// Bad definitions and settings are refused with ErrInvalidInput on every
// backend, before the database.
func TestWorkflowValidation(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		s := setup(t, driver)
		ctx := context.Background()
		_, err := workflow.NewEngine(s.DB, &workflow.Config{RetryPollInterval: 3})
		require.ErrorIs(t, err, revenant.ErrInvalidInput)
		e := engineWith(t, s, workflow.Definition{ID: "ok", Steps: []workflow.Step{{ID: "a", Actor: "work"}}})
		for name, d := range map[string]workflow.Definition{
			"NUL in id":        {ID: "a\x00", Steps: []workflow.Step{{ID: "a", Actor: "w"}}},
			"bad UTF-8 step":   {ID: "d", Steps: []workflow.Step{{ID: "\xff", Actor: "w"}}},
			"long actor":       {ID: "d", Steps: []workflow.Step{{ID: "a", Actor: strings.Repeat("w", revenant.MaxNameBytes)}}},
			"huge max attempt": {ID: "d", Steps: []workflow.Step{{ID: "a", Actor: "w", MaxEpisodeAttempts: 1 << 40}}},
		} {
			err := e.Register(d)
			require.ErrorIs(t, err, workflow.ErrInvalidDefinition, name)
		}
		_, err = e.StartInstance(ctx, "ok", nil, &workflow.StartOptions{Subject: "s\x00"})
		require.ErrorIs(t, err, revenant.ErrInvalidInput)
		var tx *sqlx.Tx
		require.NotPanics(t, func() { _, err = e.StartInstanceTx(ctx, tx, "ok", nil, nil) })
		require.ErrorIs(t, err, revenant.ErrInvalidInput)
	})
}
