package revenant_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant"
	"github.com/revenant-go/revenant/bus"
	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/internal/store"
	"github.com/revenant-go/revenant/internal/store/backend"
	"github.com/revenant-go/revenant/internal/testdb"
	"github.com/revenant-go/revenant/journal"
	"github.com/revenant-go/revenant/recovery"
	"github.com/revenant-go/revenant/runner"
	"github.com/revenant-go/revenant/workflow"
)

func TestMain(m *testing.M) {
	if spec := os.Getenv(childEnv); spec != "" {
		runChild(spec)
		return
	}
	if spec := os.Getenv(retryChildEnv); spec != "" {
		if err := retryVictim(spec); err != nil {
			fmt.Fprintln(os.Stderr, "retry victim:", err)
			os.Exit(1)
		}
		return
	}
	testdb.Main(m)
}

// fast are timings that keep tests quick: a dead node is seen within a
// second even without advisory locks (SQLite).
func fast(cfg revenant.Config) *revenant.Config {
	cfg.HeartbeatInterval, cfg.NodeTTL, cfg.PollInterval = 50*time.Millisecond, 400*time.Millisecond, 20*time.Millisecond
	cfg.SweepInterval = 100 * time.Millisecond
	return &cfg
}

func newClient(t *testing.T, db *sqlx.DB, cfg revenant.Config) *revenant.Client {
	t.Helper()
	c, err := revenant.New(db, fast(cfg))
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.StopAndCancel(context.Background()) })
	return c
}

func noop(context.Context, *episodes.Episode, *journal.Journal) (any, error) { return "ok", nil }

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	require.Eventually(t, cond, 30*time.Second, 10*time.Millisecond, what)
}

func status(t *testing.T, db *sqlx.DB, id uuid.UUID) episodes.Status {
	t.Helper()
	s, err := episodes.New(db, nil)
	require.NoError(t, err)
	ep, err := s.Get(context.Background(), id)
	require.NoError(t, err)
	return ep.Status
}

// deadNode registers a node that published policies and claims one
// episode of each actor as that node, then lets its TTL lapse: its
// episodes are orphans, as after a crash.
func deadNode(t *testing.T, s *testdb.Schema, id string, policies map[string]store.ActorPolicy, actors ...string) map[string]uuid.UUID {
	t.Helper()
	db := s.DB
	ctx := context.Background()
	st := backend.For(db)
	require.NoError(t, st.NodeRegister(ctx, db, &store.NodeRegisterParams{ID: id, Name: id, Actors: actors, Policies: policies, TTL: time.Minute}))
	defer func() {
		// A minute ago by the database clock: "now" must not still equal it
		// (SQLite's clock has millisecond steps).
		_, err := db.Exec(`UPDATE revenant_nodes SET expires_at = `+s.NowPlus(-time.Minute)+` WHERE node_id = $1`, id)
		require.NoError(t, err)
	}()
	eps, err := episodes.New(db, nil)
	require.NoError(t, err)
	out := map[string]uuid.UUID{}
	for _, a := range actors {
		res, err := eps.Create(ctx, episodes.CreateParams{ActorID: a})
		require.NoError(t, err)
		_, err = eps.Claim(ctx, res.Episode.ID, id)
		require.NoError(t, err)
		out[a] = res.Episode.ID
	}
	return out
}

func actions(res *recovery.Result) map[uuid.UUID]string {
	out := map[uuid.UUID]string{}
	for _, p := range res.Plans {
		out[p.EpisodeID] = string(p.Action) + "/" + p.PolicySource
	}
	return out
}

// The dry run from any process, with or without a registry, gives the
// answer the real sweep acts on; an actor registered without a policy does
// not hide its definition; a dead owner's published policy is used by a
// node that does not run the actor.
func TestDryRunMatchesTheSweepWithAndWithoutARegistry(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		s := testdb.New(t, &testdb.Options{Driver: driver})
		ctx := context.Background()
		_, err := s.DB.Exec(`INSERT INTO revenant_actor_definitions (actor_id, recovery_policy) VALUES ('def', 'restart')`)
		require.NoError(t, err)
		ids := deadNode(t, s, "dead-1", map[string]store.ActorPolicy{
			"reg": {Recovery: "restart"}, "own": {Recovery: "restart"},
		}, "reg", "own", "def", "unk")

		c := newClient(t, s.DB, revenant.Config{SkipMigrate: true})
		require.NoError(t, c.Register(runner.Actor{ID: "reg", Run: noop, Recovery: recovery.Restart}))
		require.NoError(t, c.Register(runner.Actor{ID: "def", Run: noop})) // no policy: defers to the definition

		bare, err := recovery.Sweep(ctx, s.DB, &recovery.Options{DryRun: true})
		require.NoError(t, err)
		viaClient, err := c.Sweep(ctx, true)
		require.NoError(t, err)
		require.Equal(t, []string{"dead-1"}, bare.DeadNodes, "a dry run lists the dead nodes")
		want := map[uuid.UUID]string{
			ids["reg"]: "restart/owner", ids["own"]: "restart/owner", ids["def"]: "restart/actor_definitions", ids["unk"]: "fail/default",
		}
		require.Equal(t, want, actions(bare), "without a registry")
		want[ids["reg"]] = "restart/registry"
		require.Equal(t, want, actions(viaClient), "with the client's registry")
		for _, p := range viaClient.Plans {
			require.Equal(t, "dead-1", p.PreviousOwner)
			require.Equal(t, recovery.ReasonOwnerExpired, p.Reason)
		}

		var events []bus.Event
		done := make(chan struct{}, 8)
		c.Subscribe("", func(_ context.Context, ev bus.Event) error {
			if ev.Type == bus.EpisodeRecovered || ev.Type == bus.EpisodeFailed {
				events = append(events, ev)
				done <- struct{}{}
			}
			return nil
		})
		require.NoError(t, c.Start(ctx))
		up := c.Startup()
		require.NoError(t, up.SweepErr)
		require.Equal(t, 3, up.Sweep.Restarted)
		require.Equal(t, 1, up.Sweep.Failed)
		require.Equal(t, episodes.StatusFailed, status(t, s.DB, ids["unk"]))
		for _, a := range []string{"reg", "def"} { // this node runs them
			waitFor(t, a+" done", func() bool { return status(t, s.DB, ids[a]) == episodes.StatusDone })
		}
		require.Equal(t, episodes.StatusPending, status(t, s.DB, ids["own"]), "nobody here runs it; it waits, pending")

		// The startup sweep's events reach the node's own subscribers.
		for range 4 {
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				t.Fatalf("only %d of 4 recovery events arrived", len(events))
			}
		}
	})
}

func TestSkipDefaultLeavesUnknownOrphansRunning(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		s := testdb.New(t, &testdb.Options{Driver: driver})
		ids := deadNode(t, s, "dead-2", nil, "stranger")
		res, err := recovery.Sweep(context.Background(), s.DB, &recovery.Options{DefaultPolicy: recovery.Skip})
		require.NoError(t, err)
		require.Equal(t, 1, res.Skipped)
		require.Len(t, res.Errors, 1)
		require.ErrorIs(t, res.Errors[0].Err, recovery.ErrNoPolicy)
		require.Equal(t, episodes.StatusRunning, status(t, s.DB, ids["stranger"]))
		_, err = recovery.Sweep(context.Background(), s.DB, &recovery.Options{DefaultPolicy: "reboot"})
		require.ErrorContains(t, err, "recovery.Skip")
	})
}

func TestUnknownActorOnEnqueueIsFlagged(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		s := testdb.New(t, &testdb.Options{Driver: driver})
		ctx := context.Background()
		logs, logger := testdb.NewLogs()
		c := newClient(t, s.DB, revenant.Config{Logger: logger, Env: "prod"})
		require.NoError(t, c.Register(runner.Actor{ID: "inventory", Run: noop}))
		require.NoError(t, c.Start(ctx))

		ok, err := c.Enqueue(ctx, episodes.CreateParams{ActorID: "inventory"})
		require.NoError(t, err)
		require.False(t, ok.UnknownActor)
		for range 2 {
			typo, err := c.Enqueue(ctx, episodes.CreateParams{ActorID: "invntory"})
			require.NoError(t, err)
			require.True(t, typo.UnknownActor, "a typo is flagged")
		}
		// (The Sweeper's backlog warning names it too, on its own line.)
		require.Equal(t, 1, logs.Count("enqueued an episode of an actor that no live node"), "and logged once per actor")
		require.Contains(t, logs.String(), "actor=invntory")

		_, err = s.DB.Exec(`INSERT INTO revenant_actor_definitions (actor_id, recovery_policy) VALUES ('dynamic', 'restart')`)
		require.NoError(t, err)
		dyn, err := c.Enqueue(ctx, episodes.CreateParams{ActorID: "dynamic"})
		require.NoError(t, err)
		require.False(t, dyn.UnknownActor, "a defined actor is known")
		other, err := c.Enqueue(ctx, episodes.CreateParams{ActorID: "inventory", SourceEnv: "dev"})
		require.NoError(t, err)
		require.True(t, other.UnknownActor, "no node of env dev runs it")

		strict := newClient(t, s.DB, revenant.Config{StrictActors: true, Env: "prod"})
		_, err = strict.Enqueue(ctx, episodes.CreateParams{ActorID: "invntory", DedupeKey: "strict"})
		require.ErrorIs(t, err, revenant.ErrUnknownActor)
		require.ErrorContains(t, err, "check the spelling")
		var n int
		require.NoError(t, s.DB.Get(&n, `SELECT count(*) FROM revenant_episodes WHERE dedupe_key = 'strict'`))
		require.Zero(t, n, "nothing was written")
		_, err = strict.Enqueue(ctx, episodes.CreateParams{ActorID: "inventory"})
		require.NoError(t, err, "a live node of the scope runs it")
	})
}

// blocker is an actor whose runs wait for release (or their context).
type blocker struct {
	started chan uuid.UUID
	release chan struct{}
}

func newBlocker() *blocker {
	return &blocker{started: make(chan uuid.UUID, 4), release: make(chan struct{})}
}

func (b *blocker) run(ctx context.Context, ep *episodes.Episode, _ *journal.Journal) (any, error) {
	b.started <- ep.ID
	select {
	case <-b.release:
		return "finished", nil
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
}

func startBlocked(t *testing.T, s *testdb.Schema) (*revenant.Client, *blocker, uuid.UUID, *testdb.Logs) {
	t.Helper()
	logs, logger := testdb.NewLogs()
	b := newBlocker()
	c := newClient(t, s.DB, revenant.Config{Logger: logger})
	require.NoError(t, c.Register(runner.Actor{ID: "slow", Run: b.run, Recovery: recovery.Restart}))
	require.NoError(t, c.Start(context.Background()))
	res, err := c.Enqueue(context.Background(), episodes.CreateParams{ActorID: "slow"})
	require.NoError(t, err)
	select {
	case <-b.started:
	case <-time.After(30 * time.Second):
		t.Fatal("the episode did not start")
	}
	return c, b, res.Episode.ID, logs
}

func TestStopDrainsAndStopAndCancelHandsBack(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		t.Run("drain", func(t *testing.T) {
			s := testdb.New(t, &testdb.Options{Driver: driver})
			c, b, id, logs := startBlocked(t, s)
			stopped := make(chan error, 1)
			go func() { stopped <- c.Stop(context.Background()) }()
			waitFor(t, "draining", func() bool { return logs.Count("node draining") == 1 })
			select {
			case err := <-stopped:
				t.Fatalf("Stop returned while an episode was running: %v", err)
			default:
			}
			close(b.release)
			require.NoError(t, <-stopped)
			require.Equal(t, episodes.StatusDone, status(t, s.DB, id), "drain mode let it finish")
		})
		t.Run("drain deadline", func(t *testing.T) {
			s := testdb.New(t, &testdb.Options{Driver: driver})
			c, _, id, _ := startBlocked(t, s)
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			require.NoError(t, c.Stop(ctx))
			require.Equal(t, episodes.StatusPending, status(t, s.DB, id), "past the deadline it is handed back")
		})
		t.Run("cancel", func(t *testing.T) {
			s := testdb.New(t, &testdb.Options{Driver: driver})
			c, _, id, _ := startBlocked(t, s)
			require.NoError(t, c.StopAndCancel(context.Background()))
			require.Equal(t, episodes.StatusPending, status(t, s.DB, id), "cancel mode hands it back")
		})
	})
}

func TestScopeIsSharedThroughTheClientAndCheckedByHand(t *testing.T) {
	def := workflow.Definition{ID: "photo", Steps: []workflow.Step{
		{ID: "resize", Actor: "media"},
		{ID: "publish", Actor: "media", DependsOn: []string{"resize"}},
	}}
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		s := testdb.New(t, &testdb.Options{Driver: driver})
		ctx := context.Background()
		t.Run("client", func(t *testing.T) {
			c := newClient(t, s.DB, revenant.Config{Env: "dev", Stack: "shop"})
			require.NoError(t, c.Register(runner.Actor{ID: "media", Run: noop}))
			require.NoError(t, c.RegisterWorkflow(def))
			require.NoError(t, c.Start(ctx))
			id, err := c.StartWorkflow(ctx, "photo", map[string]string{"photo": "1"}, nil)
			require.NoError(t, err)
			waitFor(t, "the workflow completes", func() bool {
				in, err := c.Workflows().Get(ctx, id)
				require.NoError(t, err)
				return in.Status == workflow.StatusDone
			})
		})
		t.Run("by hand", func(t *testing.T) {
			logs, logger := testdb.NewLogs()
			r, err := runner.New(s.DB, &runner.Config{Env: "qa", Logger: logger})
			require.NoError(t, err)
			require.NoError(t, r.Register(runner.Actor{ID: "render", Run: noop}))
			require.NoError(t, r.Start(ctx))
			t.Cleanup(func() { _ = r.StopAndCancel(context.Background()) })
			eng, err := workflow.NewEngine(s.DB, &workflow.Config{Logger: logger}) // Env forgotten
			require.NoError(t, err)
			require.NoError(t, eng.Register(workflow.Definition{ID: "render", Steps: []workflow.Step{{ID: "one", Actor: "render"}}}))
			_, err = recovery.ReconcileWorkflows(ctx, s.DB, &recovery.ReconcileOptions{Engine: eng})
			require.NoError(t, err)
			require.Equal(t, 1, logs.Count("workflow steps run an actor that no live node"), "the mismatch is logged once")
			require.Contains(t, logs.String(), "actor=render", "naming the actor")
			require.Contains(t, logs.String(), "another Stack or Env")
		})
	})
}

func TestClientConfigAndLifecycleErrors(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		s := testdb.New(t, &testdb.Options{Driver: driver})
		ctx := context.Background()
		_, err := revenant.New(nil, nil)
		require.ErrorIs(t, err, revenant.ErrInvalidInput)
		_, err = revenant.New(s.DB, &revenant.Config{DefaultPolicy: "reboot"})
		require.ErrorContains(t, err, "DefaultPolicy")
		_, err = revenant.New(s.DB, &revenant.Config{HeartbeatInterval: time.Second, NodeTTL: time.Second})
		require.ErrorContains(t, err, "NodeTTL")

		c, err := revenant.New(s.DB, nil)
		require.NoError(t, err)
		require.NoError(t, c.Stop(ctx), "Stop before Start does nothing")
		c = newClient(t, s.DB, revenant.Config{})
		require.NoError(t, c.Start(ctx))
		require.ErrorIs(t, c.Register(runner.Actor{ID: "late", Run: noop}), revenant.ErrInvalidInput)
		require.ErrorIs(t, c.Start(ctx), revenant.ErrInvalidInput)
		require.NoError(t, c.Stop(ctx))
		require.NoError(t, c.Stop(ctx), "again")
	})
}

// A node that registered actors with policies is SIGKILLed; a process
// that never registered them recovers its episodes by the policies the
// dead node published.
func TestKilledOwnersPoliciesTravelWithIt(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		s := testdb.New(t, &testdb.Options{Driver: driver})
		ctx := context.Background()
		spec, err := json.Marshal(childSpec{Driver: driver, DSN: s.DSN})
		require.NoError(t, err)
		ids := runVictim(t, string(spec))

		// A dry run from a process without any registry already knows.
		var plans *recovery.Result
		waitFor(t, "the dead node's orphans are seen", func() bool {
			plans, err = recovery.Sweep(ctx, s.DB, &recovery.Options{DryRun: true})
			require.NoError(t, err)
			return len(plans.Plans) == 2
		})
		for _, p := range plans.Plans {
			require.Equal(t, recovery.SourceOwner, p.PolicySource)
		}
		c := newClient(t, s.DB, revenant.Config{SkipMigrate: true})
		require.NoError(t, c.Start(ctx))
		require.Equal(t, 1, c.Startup().Sweep.Restarted, "restarted by the owner's policy, not failed by default")
		require.Equal(t, episodes.StatusPending, status(t, s.DB, ids["owned-restart"]))
		require.Equal(t, episodes.StatusFailed, status(t, s.DB, ids["owned-fail"]))
		var detail string
		require.NoError(t, s.DB.Get(&detail, `SELECT error_detail FROM revenant_episodes WHERE id = $1`, ids["owned-fail"].String()))
		var d map[string]any
		require.NoError(t, json.Unmarshal([]byte(detail), &d))
		require.Equal(t, recovery.SourceOwner, d["policy_source"])
	})
}

// "attempts" has one meaning per noun: Episode.Attempts counts claims of
// one episode; Episode.StepAttempt counts a workflow step's tries.
func TestStepAttemptAndEpisodeAttemptsAreDistinct(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		s := testdb.New(t, &testdb.Options{Driver: driver})
		ctx := context.Background()
		seen := make(chan [2]int, 4)
		flaky := func(_ context.Context, ep *episodes.Episode, _ *journal.Journal) (any, error) {
			seen <- [2]int{ep.StepAttempt(), ep.Attempts}
			if ep.StepAttempt() == 1 {
				return nil, errors.New("flaky upstream")
			}
			return "ok", nil
		}
		c := newClient(t, s.DB, revenant.Config{})
		require.NoError(t, c.Register(runner.Actor{ID: "flaky", Run: flaky}))
		require.NoError(t, c.RegisterWorkflow(workflow.Definition{ID: "wf", Steps: []workflow.Step{
			{ID: "call", Actor: "flaky", OnFailure: workflow.Retry(3, 10*time.Millisecond)},
		}}))
		require.NoError(t, c.Start(ctx))
		id, err := c.StartWorkflow(ctx, "wf", nil, nil)
		require.NoError(t, err)
		waitFor(t, "the workflow completes", func() bool {
			in, err := c.Workflows().Get(ctx, id)
			require.NoError(t, err)
			return in.Status == workflow.StatusDone
		})
		require.Equal(t, [2]int{1, 1}, <-seen, "first try: step attempt 1, first claim of its episode")
		require.Equal(t, [2]int{2, 1}, <-seen, "the retry is a new episode: step attempt 2, its first claim")
		plain, err := c.Enqueue(ctx, episodes.CreateParams{ActorID: "flaky"})
		require.NoError(t, err)
		require.Zero(t, plain.Episode.StepAttempt(), "outside workflows")
	})
}

func TestWorkflowStepWithAnUnknownActorWarnsAtStart(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		s := testdb.New(t, &testdb.Options{Driver: driver})
		logs, logger := testdb.NewLogs()
		// A TTL long enough that a loaded machine's slow startup sweep
		// cannot find this very node dead (seen in CI with fast timings:
		// every actor then reads as unknown).
		cfg := fast(revenant.Config{Logger: logger})
		cfg.HeartbeatInterval, cfg.NodeTTL = time.Second, 30*time.Second
		c, err := revenant.New(s.DB, cfg)
		require.NoError(t, err)
		t.Cleanup(func() { _ = c.StopAndCancel(context.Background()) })
		require.NoError(t, c.Register(runner.Actor{ID: "inventory", Run: noop}))
		require.NoError(t, c.RegisterWorkflow(workflow.Definition{ID: "restock", Steps: []workflow.Step{
			{ID: "count", Actor: "inventory"},
			{ID: "order", Actor: "invntory", DependsOn: []string{"count"}},
		}}))
		require.NoError(t, c.Start(context.Background()))
		require.Equal(t, 1, logs.Count("workflow steps run an actor that no live node"), logs.String())
		require.Contains(t, logs.String(), "actor=invntory")
		require.Contains(t, logs.String(), "restock/order")
		require.Zero(t, logs.Count("actor=inventory "), "the registered actor is known")
	})
}
