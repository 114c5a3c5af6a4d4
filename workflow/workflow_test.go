package workflow_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant/bus"
	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/internal/testdb"
	"github.com/revenant-go/revenant/internal/testhook"
	"github.com/revenant-go/revenant/journal"
	"github.com/revenant-go/revenant/recovery"
	"github.com/revenant-go/revenant/runner"
	"github.com/revenant-go/revenant/workflow"
)

func TestMain(m *testing.M) { testdb.Main(m) }

const effectsSchema = `CREATE TABLE wf_effects (instance_id text, step_id text, attempt int, UNIQUE (instance_id, step_id, attempt))`

// node is one process's worth of revenant: a runner, a Postgres bus and a
// workflow engine.
type node struct {
	runner *runner.Runner
	bus    *bus.Outbox
	engine *workflow.Engine
}

type nodeOpts struct {
	actors      []runner.Actor
	defs        []workflow.Definition
	dropNotify  func() bool
	noEngineSub bool // the engine does not listen: events are missed
	logger      *slog.Logger
}

func startNode(t *testing.T, s *testdb.Schema, o nodeOpts) *node {
	t.Helper()
	ctx := context.Background()
	listen := s.DSN
	if s.IsSQLite() {
		listen = "" // no LISTEN/NOTIFY: buses and runners poll
	}
	b, err := bus.NewOutbox(s.DB, &bus.OutboxConfig{Logger: o.logger, ListenDSN: listen, PollInterval: 200 * time.Millisecond})
	require.NoError(t, err)
	if o.dropNotify != nil {
		testhook.DropOutboxNotifications(b, o.dropNotify)
	}
	require.NoError(t, b.Start(ctx))
	t.Cleanup(func() { _ = b.Stop(context.Background()) })
	r, err := runner.New(s.DB, &runner.Config{Name: "n", Bus: b, ListenDSN: listen, HeartbeatInterval: 200 * time.Millisecond,
		NodeTTL: 2 * time.Second, PollInterval: 100 * time.Millisecond})
	require.NoError(t, err)
	for _, a := range o.actors {
		require.NoError(t, r.Register(a))
	}
	require.NoError(t, r.Start(ctx))
	t.Cleanup(func() { _ = r.StopAndCancel(context.Background()) })
	var engBus bus.Bus = b
	if o.noEngineSub {
		engBus = nil
	}
	eng, err := workflow.NewEngine(s.DB, &workflow.Config{Logger: o.logger, Bus: engBus, RetryPollInterval: 50 * time.Millisecond})
	require.NoError(t, err)
	for _, d := range o.defs {
		require.NoError(t, eng.Register(d))
	}
	require.NoError(t, eng.Start(ctx))
	t.Cleanup(func() { _ = eng.Stop(context.Background()) })
	return &node{runner: r, bus: b, engine: eng}
}

// effectActor records its side effect inside the step's transaction and
// returns its input's results plus its own name.
func effectActor(id string, failures func(ep *episodes.Episode) error) runner.Actor {
	return runner.Actor{ID: id, MaxConcurrent: 16, Recovery: recovery.Restart,
		Run: func(ctx context.Context, ep *episodes.Episode, j *journal.Journal) (any, error) {
			if failures != nil {
				if err := failures(ep); err != nil {
					return nil, err
				}
			}
			return journal.StepTx(ctx, j, "effect", func(ctx context.Context, tx *sqlx.Tx) (map[string]any, error) {
				var in workflow.StepInput
				_ = json.Unmarshal(ep.Input, &in)
				var attempt int
				_ = tx.GetContext(ctx, &attempt, `SELECT count(*) + 1 FROM wf_effects WHERE instance_id = $1 AND step_id = $2`,
					ep.WorkflowInstanceID, ep.WorkflowStepID)
				_, err := tx.ExecContext(ctx, `INSERT INTO wf_effects (instance_id, step_id, attempt) VALUES ($1, $2, $3)`,
					ep.WorkflowInstanceID, ep.WorkflowStepID, attempt)
				deps := []string{}
				for k := range in.Results {
					deps = append(deps, k)
				}
				return map[string]any{"step": ep.WorkflowStepID, "saw": deps}, err
			})
		}}
}

func fanOutFanIn(id string) workflow.Definition {
	return workflow.Definition{ID: id, Steps: []workflow.Step{
		{ID: "fetch", Actor: "work"},
		{ID: "resize", Actor: "work", DependsOn: []string{"fetch"}},
		{ID: "thumbnail", Actor: "work", DependsOn: []string{"fetch"}},
		{ID: "scan", Actor: "work", DependsOn: []string{"fetch"}},
		{ID: "publish", Actor: "work", DependsOn: []string{"resize", "thumbnail", "scan"}},
	}}
}

func waitInstance(t *testing.T, e *workflow.Engine, id uuid.UUID, status string) *workflow.Instance {
	t.Helper()
	var inst *workflow.Instance
	require.Eventually(t, func() bool {
		var err error
		inst, err = e.Get(context.Background(), id)
		require.NoError(t, err)
		return inst.Status == status
	}, 20*time.Second, 20*time.Millisecond, "instance %s never reached %s", id, status)
	return inst
}

func setup(t *testing.T, driver string) *testdb.Schema {
	t.Helper()
	s := testdb.New(t, &testdb.Options{Driver: driver, MaxOpenConns: 24})
	_, err := s.DB.Exec(effectsSchema)
	require.NoError(t, err)
	return s
}

func TestFanOutFanIn(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		s := setup(t, driver)
		n := startNode(t, s, nodeOpts{actors: []runner.Actor{effectActor("work", nil)}, defs: []workflow.Definition{fanOutFanIn("media")}})
		id, err := n.engine.StartInstance(context.Background(), "media", map[string]string{"url": "s3://x"}, nil)
		require.NoError(t, err)
		inst := waitInstance(t, n.engine, id, workflow.StatusDone)
		require.NotNil(t, inst.FinishedAt)
		require.Len(t, inst.Steps, 5)
		for _, st := range inst.Steps {
			require.Equal(t, workflow.StepDone, st.Status, st.ID)
			require.Equal(t, 1, st.Attempts)
		}
		var out struct{ Saw []string }
		require.NoError(t, json.Unmarshal(inst.Step("publish").Result, &out))
		require.ElementsMatch(t, []string{"resize", "thumbnail", "scan"}, out.Saw, "the fan-in step got its dependencies' results")
		var effects int
		require.NoError(t, s.DB.Get(&effects, `SELECT count(*) FROM wf_effects WHERE instance_id = $1`, id))
		require.Equal(t, 5, effects)
	})
}

func TestRetryPolicyAndSkippedErrorClasses(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		s := setup(t, driver)
		var calls sync.Map
		flaky := effectActor("flaky", func(ep *episodes.Episode) error {
			v, _ := calls.LoadOrStore(ep.WorkflowInstanceID, new(atomic.Int32))
			n := v.(*atomic.Int32).Add(1)
			var in struct{ Trigger string }
			_ = json.Unmarshal(ep.Input, &in)
			if in.Trigger == "fatal" {
				return classed{"validation"}
			}
			if n < 3 {
				return errors.New("transient")
			}
			return nil
		})
		def := workflow.Definition{ID: "retrying", Steps: []workflow.Step{
			{ID: "call", Actor: "flaky", OnFailure: workflow.Retry(3, 30*time.Millisecond, "validation")},
		}}
		n := startNode(t, s, nodeOpts{actors: []runner.Actor{flaky}, defs: []workflow.Definition{def}})
		ctx := context.Background()
		ok, err := n.engine.StartInstance(ctx, "retrying", "ok", nil)
		require.NoError(t, err)
		inst := waitInstance(t, n.engine, ok, workflow.StatusDone)
		require.Equal(t, 3, inst.Step("call").Attempts, "two durable retries, then success")

		fatal, err := n.engine.StartInstance(ctx, "retrying", "fatal", nil)
		require.NoError(t, err)
		inst = waitInstance(t, n.engine, fatal, workflow.StatusFailed)
		require.Equal(t, 1, inst.Step("call").Attempts, "a class in SkipRetryOn is not retried")
		require.Equal(t, "validation", inst.Step("call").ErrorClass)
	})
}

type classed struct{ class string }

func (c classed) Error() string      { return c.class }
func (c classed) ErrorClass() string { return c.class }

func TestAbortCancelsRunningStepsAndCompensatesInReverse(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		s := setup(t, driver)
		var compensated []string
		var mu sync.Mutex
		slowStarted := make(chan struct{}, 1)
		actors := []runner.Actor{
			effectActor("work", nil),
			{ID: "boom", Run: func(ctx context.Context, ep *episodes.Episode, j *journal.Journal) (any, error) {
				// Fail only once the other branch runs, so that the abort
				// has a running step to cancel (under load the abort could
				// otherwise come before "watch" was ever claimed).
				select {
				case <-slowStarted:
				case <-ctx.Done():
					return nil, ctx.Err()
				}
				return nil, classed{"card_declined"}
			}},
			{ID: "slow", Run: func(ctx context.Context, ep *episodes.Episode, j *journal.Journal) (any, error) {
				slowStarted <- struct{}{}
				<-ctx.Done()
				return nil, ctx.Err()
			}},
			{ID: "undo", Run: func(ctx context.Context, ep *episodes.Episode, j *journal.Journal) (any, error) {
				var in struct{ Step string }
				require.NoError(t, json.Unmarshal(ep.Input, &in))
				mu.Lock()
				compensated = append(compensated, in.Step)
				mu.Unlock()
				return "undone", nil
			}},
		}
		def := workflow.Definition{ID: "saga", Steps: []workflow.Step{
			{ID: "reserve", Actor: "work", Compensate: "undo"},
			{ID: "hold", Actor: "work", DependsOn: []string{"reserve"}, Compensate: "undo"},
			{ID: "watch", Actor: "slow", DependsOn: []string{"reserve"}},
			{ID: "charge", Actor: "boom", DependsOn: []string{"hold"}},
		}}
		n := startNode(t, s, nodeOpts{actors: actors, defs: []workflow.Definition{def}})
		id, err := n.engine.StartInstance(context.Background(), "saga", nil, nil)
		require.NoError(t, err)
		inst := waitInstance(t, n.engine, id, workflow.StatusFailed)
		require.False(t, inst.Compensating)
		require.Equal(t, workflow.StepFailed, inst.Step("charge").Status)
		require.Equal(t, workflow.StepCanceled, inst.Step("watch").Status)
		ep, err := n.runner.Store().Get(context.Background(), inst.Step("watch").EpisodeID)
		require.NoError(t, err)
		require.Equal(t, episodes.StatusCanceled, ep.Status, "abort canceled the other running step's episode")
		require.Equal(t, []string{"hold", "reserve"}, compensated, "compensations ran once each, newest first")
		require.Equal(t, workflow.StepDone, inst.Step("compensate:hold").Status)
		require.Contains(t, string(inst.Error), "card_declined")
	})
}

func TestPauseResumeAndCancel(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		s := setup(t, driver)
		var attempts atomic.Int32
		hold := make(chan struct{})
		actors := []runner.Actor{
			{ID: "picky", Run: func(ctx context.Context, ep *episodes.Episode, j *journal.Journal) (any, error) {
				if attempts.Add(1) == 1 {
					return nil, errors.New("needs a human")
				}
				return "ok", nil
			}},
			{ID: "forever", Run: func(ctx context.Context, ep *episodes.Episode, j *journal.Journal) (any, error) {
				select {
				case <-hold:
				case <-ctx.Done():
				}
				return nil, ctx.Err()
			}},
		}
		defs := []workflow.Definition{
			{ID: "approval", Steps: []workflow.Step{{ID: "review", Actor: "picky", OnFailure: workflow.Pause()}}},
			{ID: "long", Steps: []workflow.Step{{ID: "wait", Actor: "forever"}, {ID: "after", Actor: "forever", DependsOn: []string{"wait"}}}},
		}
		n := startNode(t, s, nodeOpts{actors: actors, defs: defs})
		ctx := context.Background()
		id, err := n.engine.StartInstance(ctx, "approval", nil, nil)
		require.NoError(t, err)
		inst := waitInstance(t, n.engine, id, workflow.StatusBlocked)
		require.Equal(t, workflow.StepPaused, inst.Step("review").Status)
		require.NoError(t, n.engine.Resume(ctx, id))
		inst = waitInstance(t, n.engine, id, workflow.StatusDone)
		require.Equal(t, 2, inst.Step("review").Attempts)
		require.ErrorIs(t, n.engine.Resume(ctx, id), workflow.ErrIllegalTransition)

		long, err := n.engine.StartInstance(ctx, "long", nil, &workflow.StartOptions{Subject: "order-7"})
		require.NoError(t, err)
		_, err = n.engine.StartInstance(ctx, "long", nil, &workflow.StartOptions{Subject: "order-7"})
		require.ErrorIs(t, err, workflow.ErrDuplicateInFlight)
		waitStep(t, n.engine, long, "wait", workflow.StepRunning)
		require.NoError(t, n.engine.Cancel(ctx, long, "customer left"))
		inst = waitInstance(t, n.engine, long, workflow.StatusCanceled)
		require.Equal(t, workflow.StepCanceled, inst.Step("wait").Status)
		require.Equal(t, workflow.StepCanceled, inst.Step("after").Status)
		ep, err := n.runner.Store().Get(ctx, inst.Step("wait").EpisodeID)
		require.NoError(t, err)
		require.Equal(t, episodes.StatusCanceled, ep.Status)
		// The subject is free again once the instance is no longer in flight.
		_, err = n.engine.StartInstance(ctx, "long", nil, &workflow.StartOptions{Subject: "order-7"})
		require.NoError(t, err)
		close(hold)
	})
}

func waitStep(t *testing.T, e *workflow.Engine, id uuid.UUID, step, status string) {
	t.Helper()
	require.Eventually(t, func() bool {
		inst, err := e.Get(context.Background(), id)
		require.NoError(t, err)
		return inst.Step(step).Status == status
	}, 10*time.Second, 10*time.Millisecond)
}

// Three nodes drive 200 fan-out/fan-in instances (60 on SQLite, whose one
// writer at a time makes 1,000 step episodes take minutes under -race on a
// loaded machine) while a third of the notifications are dropped: every
// instance completes and no step's side effect happens twice.
func TestThreeEnginesManyInstancesWithDroppedNotifications(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		s := setup(t, driver)
		drop := func() bool { return rand.IntN(3) == 0 }
		logger, warnings := countingLogger()
		var nodes []*node
		for range 3 {
			nodes = append(nodes, startNode(t, s, nodeOpts{actors: []runner.Actor{effectActor("work", nil)},
				defs: []workflow.Definition{fanOutFanIn("media")}, dropNotify: drop, logger: logger}))
		}
		ctx := context.Background()
		instances := 200
		if s.IsSQLite() {
			instances = 60
		}
		ids := make([]uuid.UUID, instances)
		for i := range instances {
			id, err := nodes[i%3].engine.StartInstance(ctx, "media", i, nil)
			require.NoError(t, err)
			ids[i] = id
		}
		testdb.WaitDrained(t, time.Minute, 5*time.Minute, func() (int, error) {
			var open int
			err := s.DB.Get(&open, `SELECT count(*) FROM revenant_workflow_instances WHERE status <> 'done'`)
			return open, err
		})
		var effects, distinct, episodesN int
		require.NoError(t, s.DB.QueryRow(`SELECT count(*), (SELECT count(*) FROM (SELECT DISTINCT instance_id, step_id FROM wf_effects) d) FROM wf_effects`).Scan(&effects, &distinct))
		require.Equal(t, instances*5, effects, "no step's side effect happened twice")
		require.Equal(t, instances*5, distinct)
		require.NoError(t, s.DB.Get(&episodesN, `SELECT count(*) FROM revenant_episodes WHERE workflow_instance_id IS NOT NULL`))
		require.Equal(t, instances*5, episodesN, "exactly one episode per step")
		inst, err := nodes[1].engine.Get(ctx, ids[0])
		require.NoError(t, err)
		require.Equal(t, workflow.StatusDone, inst.Status)
		// Regression: an engine that waited for an instance's lock used to act
		// on a stale snapshot of its steps (READ COMMITTED re-reads only the
		// locked row) and tried to start a step twice.
		require.Zero(t, warnings.Load(), "no engine failed to apply an event")
	})
}

func TestReconcileAdvancesInstancesThatMissedEvents(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		s := setup(t, driver)
		// The engine is deaf: every terminal event is missed, as if the engine
		// were down while the episodes finished.
		n := startNode(t, s, nodeOpts{actors: []runner.Actor{effectActor("work", nil)},
			defs: []workflow.Definition{fanOutFanIn("media")}, noEngineSub: true})
		ctx := context.Background()
		var completed atomic.Int32
		n.bus.Subscribe(bus.EpisodeCompleted, func(context.Context, bus.Event) error { completed.Add(1); return nil })
		var ids []uuid.UUID
		for i := range 10 {
			id, err := n.engine.StartInstance(ctx, "media", i, nil)
			require.NoError(t, err)
			ids = append(ids, id)
		}
		// The root steps' episodes finish and their events are delivered,
		// but nobody advances the instances.
		require.Eventually(t, func() bool { return completed.Load() == 10 }, 10*time.Second, 20*time.Millisecond)
		inst, err := n.engine.Get(ctx, ids[0])
		require.NoError(t, err)
		require.Equal(t, workflow.StepRunning, inst.Step("fetch").Status, "stuck: the completion was missed")

		// Reconcile until done (each pass advances one level of the DAG).
		require.Eventually(t, func() bool {
			res, err := recovery.ReconcileWorkflows(ctx, s.DB, &recovery.ReconcileOptions{Engine: n.engine, Node: n.runner})
			require.NoError(t, err)
			require.Zero(t, res.Skipped)
			var open int
			require.NoError(t, s.DB.Get(&open, `SELECT count(*) FROM revenant_workflow_instances WHERE status <> 'done'`))
			return open == 0
		}, 30*time.Second, 100*time.Millisecond)
		res, err := recovery.ReconcileWorkflows(ctx, s.DB, &recovery.ReconcileOptions{Engine: n.engine, Node: n.runner})
		require.NoError(t, err)
		require.Equal(t, recovery.ReconcileResult{}, *res, "a second run changes nothing")

		// A pending step whose dependencies are all done (the engine died
		// between recording a completion and starting the next step) and a due
		// retry are repaired too. (The engine's own retry loop is stopped, so
		// that only the reconciler can repair them.)
		_ = n.engine.Stop(context.Background())
		id := ids[0]
		_, err = s.DB.Exec(`UPDATE revenant_workflow_instances SET status = 'running', finished_at = NULL WHERE id = $1`, id)
		require.NoError(t, err)
		_, err = s.DB.Exec(`UPDATE revenant_workflow_steps SET status = 'pending', attempts = 0, episode_id = NULL WHERE instance_id = $1 AND step_id = 'publish'`, id)
		require.NoError(t, err)
		_, err = s.DB.Exec(`UPDATE revenant_workflow_steps SET status = 'retrying', due_at = `+s.NowPlus(-time.Second)+` WHERE instance_id = $1 AND step_id = 'scan'`, id)
		require.NoError(t, err)
		res, err = recovery.ReconcileWorkflows(ctx, s.DB, &recovery.ReconcileOptions{Engine: n.engine, Node: n.runner})
		require.NoError(t, err)
		require.Equal(t, 1, res.Replayed)
		inst, err = n.engine.Get(ctx, id)
		require.NoError(t, err)
		require.Equal(t, workflow.StepRunning, inst.Step("scan").Status, "the due retry started")
		require.Equal(t, 2, inst.Step("scan").Attempts)
		require.Equal(t, workflow.StepDone, inst.Step("resize").Status)
		require.Equal(t, workflow.StepPending, inst.Step("publish").Status, "publish waits for the retried scan")
	})
}

func TestBadInput(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		bad := []struct {
			def  workflow.Definition
			want string
		}{
			{workflow.Definition{ID: "c", Steps: []workflow.Step{{ID: "a", Actor: "x", DependsOn: []string{"b"}}, {ID: "b", Actor: "x", DependsOn: []string{"a"}}}}, "cycle through step"},
			{workflow.Definition{ID: "d", Steps: []workflow.Step{{ID: "a", Actor: "x", DependsOn: []string{"ghost"}}}}, `step "a" depends on unknown step "ghost"`},
			{workflow.Definition{ID: "u", Steps: []workflow.Step{{ID: "a", Actor: "x"}, {ID: "a", Actor: "x"}}}, `step id "a" is used twice`},
			{workflow.Definition{ID: "n", Steps: []workflow.Step{{ID: "a"}}}, `step "a" has no Actor`},
			{workflow.Definition{ID: "s", Steps: []workflow.Step{{ID: "a", Actor: "x", DependsOn: []string{"a"}}}}, "depends on itself"},
			{workflow.Definition{Steps: []workflow.Step{{ID: "a", Actor: "x"}}}, "ID is required"},
		}
		for _, c := range bad {
			err := c.def.Validate()
			require.ErrorIs(t, err, workflow.ErrInvalidDefinition)
			require.ErrorContains(t, err, c.want)
		}

		s := setup(t, driver)
		n := startNode(t, s, nodeOpts{actors: []runner.Actor{effectActor("work", nil)}, defs: []workflow.Definition{fanOutFanIn("media")}})
		ctx := context.Background()
		_, err := n.engine.StartInstance(ctx, "nope", nil, nil)
		require.ErrorIs(t, err, workflow.ErrUnknownWorkflow)
		_, err = n.engine.StartInstance(ctx, "media", make(chan int), nil)
		require.Error(t, err)
		require.ErrorContains(t, err, "trigger")
		var count int
		require.NoError(t, s.DB.Get(&count, `SELECT count(*) FROM revenant_workflow_instances`))
		require.Zero(t, count, "nothing was written")
		require.Error(t, n.engine.Register(fanOutFanIn("media")), "registered twice")

		// An instance of a workflow this engine does not know: its events are
		// ignored (nothing lost), and reconcile reports it as skipped.
		other, err := workflow.NewEngine(s.DB, nil)
		require.NoError(t, err)
		require.NoError(t, other.Register(workflow.Definition{ID: "elsewhere", Steps: []workflow.Step{{ID: "x", Actor: "nobody"}}}))
		foreign, err := other.StartInstance(ctx, "elsewhere", nil, nil)
		require.NoError(t, err)
		inst, err := other.Get(ctx, foreign)
		require.NoError(t, err)
		require.NoError(t, n.engine.HandleEvent(ctx, bus.Event{Type: bus.EpisodeCompleted, WorkflowInstanceID: foreign,
			WorkflowStepID: "x", EpisodeID: inst.Step("x").EpisodeID}))

		// A corrupt step row is reported, never guessed at.
		ok, err := n.engine.StartInstance(ctx, "media", nil, nil)
		require.NoError(t, err)
		waitInstance(t, n.engine, ok, workflow.StatusDone)
		id, err := n.engine.StartInstance(ctx, "media", nil, nil)
		require.NoError(t, err)
		_, err = s.DB.Exec(`UPDATE revenant_workflow_steps SET status = 'exploded' WHERE instance_id = $1 AND step_id = 'publish'`, id)
		require.NoError(t, err)
		_, err = n.engine.Get(ctx, id)
		require.ErrorIs(t, err, workflow.ErrCorruptRow)
		res, err := recovery.ReconcileWorkflows(ctx, s.DB, &recovery.ReconcileOptions{Engine: n.engine, AllStacks: true, AllEnvs: true})
		require.NoError(t, err)
		require.Equal(t, 2, res.Skipped, "the corrupt instance and the unregistered workflow's")
		msgs := fmt.Sprint(res.Errors)
		require.Contains(t, msgs, "exploded")
		require.Contains(t, msgs, "elsewhere")

		_, err = recovery.ReconcileWorkflows(ctx, s.DB, nil)
		require.Error(t, err)
		_, err = workflow.NewEngine(nil, nil)
		require.Error(t, err)
	})
}

// countingHandler counts warnings and errors (and prints them).
type countingHandler struct {
	slog.Handler
	n *atomic.Int32
}

func (h countingHandler) Handle(ctx context.Context, r slog.Record) error {
	h.n.Add(1)
	return h.Handler.Handle(ctx, r)
}

func countingLogger() (*slog.Logger, *atomic.Int32) {
	n := &atomic.Int32{}
	return slog.New(countingHandler{Handler: slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}), n: n}), n
}

// A Sweeper given the engine reconciles after each full pass, so a node
// that misses every event still completes its instances.
func TestSweeperReconcilesWorkflows(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		s := setup(t, driver)
		n := startNode(t, s, nodeOpts{actors: []runner.Actor{effectActor("work", nil)},
			defs: []workflow.Definition{fanOutFanIn("media")}, noEngineSub: true})
		sw, err := recovery.NewSweeper(s.DB, &recovery.SweeperConfig{Options: recovery.Options{Node: n.runner},
			Interval: 200 * time.Millisecond, Workflows: n.engine})
		require.NoError(t, err)
		require.NoError(t, sw.Start(context.Background()))
		defer func() { _ = sw.Stop(context.Background()) }()
		for i := range 3 {
			_, err := n.engine.StartInstance(context.Background(), "media", i, nil)
			require.NoError(t, err)
		}
		require.Eventually(t, func() bool {
			var open int
			require.NoError(t, s.DB.Get(&open, `SELECT count(*) FROM revenant_workflow_instances WHERE status <> 'done'`))
			return open == 0
		}, 30*time.Second, 50*time.Millisecond)
	})
}
