package runner_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant"
	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/internal/store/backend"
	"github.com/revenant-go/revenant/internal/testdb"
	"github.com/revenant-go/revenant/journal"
	"github.com/revenant-go/revenant/recovery"
	"github.com/revenant-go/revenant/runner"
)

func TestMain(m *testing.M) { testdb.Main(m) }

func fastConfig(s *testdb.Schema, name string) *runner.Config {
	listen := s.DSN
	if s.IsSQLite() {
		listen = "" // no LISTEN/NOTIFY: runners poll
	}
	return &runner.Config{
		Name: name, HeartbeatInterval: 100 * time.Millisecond, NodeTTL: time.Second,
		PollInterval: 50 * time.Millisecond, ListenDSN: listen, ShutdownTimeout: 2 * time.Second,
	}
}

func start(t *testing.T, s *testdb.Schema, cfg *runner.Config, actors ...runner.Actor) *runner.Runner {
	t.Helper()
	r, err := runner.New(s.DB, cfg)
	require.NoError(t, err)
	for _, a := range actors {
		require.NoError(t, r.Register(a))
	}
	require.NoError(t, r.Start(context.Background()))
	t.Cleanup(func() { _ = r.StopAndCancel(context.Background()) })
	return r
}

func status(t *testing.T, r *runner.Runner, id uuid.UUID) episodes.Status {
	t.Helper()
	ep, err := r.Store().Get(context.Background(), id)
	require.NoError(t, err)
	return ep.Status
}

func waitStatus(t *testing.T, r *runner.Runner, id uuid.UUID, want episodes.Status) *episodes.Episode {
	t.Helper()
	var ep *episodes.Episode
	require.Eventually(t, func() bool {
		var err error
		ep, err = r.Store().Get(context.Background(), id)
		require.NoError(t, err)
		return ep.Status == want
	}, 10*time.Second, 10*time.Millisecond, "episode %s never reached %s", id, want)
	return ep
}

func TestRunsEpisodesWithJournalAndResult(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		s := testdb.New(t, &testdb.Options{Driver: driver, MaxOpenConns: 16})
		var runs atomic.Int32
		r := start(t, s, fastConfig(s, "a"), runner.Actor{
			ID: "doubler", MaxConcurrent: 4,
			Run: func(ctx context.Context, ep *episodes.Episode, j *journal.Journal) (any, error) {
				runs.Add(1)
				var in int
				if err := jsonUnmarshal(ep.Input, &in); err != nil {
					return nil, err
				}
				return journal.Step(ctx, j, "double", func(context.Context) (int, error) { return in * 2, nil })
			},
		})
		ctx := context.Background()
		var ids []uuid.UUID
		for i := range 20 {
			res, err := r.Enqueue(ctx, episodes.CreateParams{ActorID: "doubler", Input: i})
			require.NoError(t, err)
			ids = append(ids, res.Episode.ID)
		}
		for i, id := range ids {
			ep := waitStatus(t, r, id, episodes.StatusDone)
			require.JSONEq(t, fmt.Sprint(i*2), string(ep.Result))
			require.Equal(t, 1, ep.Attempts)
			require.Equal(t, r.NodeID(), ep.OwnerNode)
		}
		require.Equal(t, int32(20), runs.Load())
	})
}

func TestPanicFailsTheEpisodeAndTheRunnerGoesOn(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		s := testdb.New(t, &testdb.Options{Driver: driver})
		r := start(t, s, fastConfig(s, "a"), runner.Actor{
			ID: "fragile", Retry: &episodes.RetryPolicy{MinBackoff: 10 * time.Millisecond}, // errors retry until attempts run out
			Run: func(ctx context.Context, ep *episodes.Episode, j *journal.Journal) (any, error) {
				switch string(ep.Input) {
				case `"panic"`:
					panic("kaboom")
				case `"error"`:
					return nil, classed{errors.New("upstream said no")}
				}
				return "fine", nil
			},
		})
		ctx := context.Background()
		p, err := r.Enqueue(ctx, episodes.CreateParams{ActorID: "fragile", Input: "panic"})
		require.NoError(t, err)
		e, err := r.Enqueue(ctx, episodes.CreateParams{ActorID: "fragile", Input: "error"})
		require.NoError(t, err)
		ok, err := r.Enqueue(ctx, episodes.CreateParams{ActorID: "fragile", Input: "ok"})
		require.NoError(t, err)

		pe := waitStatus(t, r, p.Episode.ID, episodes.StatusFailed)
		require.Equal(t, "panic", pe.ErrorClass)
		require.Contains(t, string(pe.ErrorDetail), "kaboom")
		require.Contains(t, string(pe.ErrorDetail), "runner_test.go", "the stack is recorded")
		ee := waitStatus(t, r, e.Episode.ID, episodes.StatusFailed)
		require.Equal(t, "upstream", ee.ErrorClass)
		waitStatus(t, r, ok.Episode.ID, episodes.StatusDone)
	})
}

type classed struct{ error }

func (classed) ErrorClass() string { return "upstream" }

func TestCancelFromAnotherNodeStopsTheRun(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		s := testdb.New(t, &testdb.Options{Driver: driver, MaxOpenConns: 16})
		started := make(chan struct{}, 1)
		stoppedBy := make(chan error, 1)
		worker := start(t, s, fastConfig(s, "worker"), runner.Actor{
			ID: "long",
			Run: func(ctx context.Context, ep *episodes.Episode, j *journal.Journal) (any, error) {
				started <- struct{}{}
				<-ctx.Done()
				stoppedBy <- context.Cause(ctx)
				return nil, ctx.Err()
			},
		})
		other := start(t, s, fastConfig(s, "api"))
		res, err := worker.Enqueue(context.Background(), episodes.CreateParams{ActorID: "long"})
		require.NoError(t, err)
		<-started
		_, err = other.Cancel(context.Background(), res.Episode.ID, "user clicked cancel")
		require.NoError(t, err)
		select {
		case cause := <-stoppedBy:
			require.ErrorIs(t, cause, runner.ErrCanceled)
		case <-time.After(5 * time.Second):
			t.Fatal("the run was not canceled")
		}
		require.Equal(t, episodes.StatusCanceled, status(t, worker, res.Episode.ID))
	})
}

func TestCancelWithoutNotificationsReachesTheRunAtHeartbeat(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		s := testdb.New(t, &testdb.Options{Driver: driver})
		cfg := fastConfig(s, "poller")
		cfg.ListenDSN = "" // polling only
		stoppedBy := make(chan error, 1)
		started := make(chan struct{}, 1)
		r := start(t, s, cfg, runner.Actor{
			ID: "long",
			Run: func(ctx context.Context, ep *episodes.Episode, j *journal.Journal) (any, error) {
				started <- struct{}{}
				<-ctx.Done()
				stoppedBy <- context.Cause(ctx)
				return nil, nil
			},
		})
		res, err := r.Enqueue(context.Background(), episodes.CreateParams{ActorID: "long"})
		require.NoError(t, err)
		<-started
		// Canceled with the plain store (no notification sent).
		_, err = r.Store().Cancel(context.Background(), res.Episode.ID, "")
		require.NoError(t, err)
		select {
		case cause := <-stoppedBy:
			require.ErrorIs(t, cause, runner.ErrCanceled, "the heartbeat reports a cancel as a cancel")
		case <-time.After(5 * time.Second):
			t.Fatal("the heartbeat's lease check did not cancel the run")
		}
	})
}

func TestGracefulStopHandsEpisodesBackAtOnce(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		s := testdb.New(t, &testdb.Options{Driver: driver, MaxOpenConns: 16})
		ctx := context.Background()
		var started atomic.Int32
		blocker := runner.Actor{
			ID: "slow", MaxConcurrent: 3, Recovery: recovery.Restart,
			Run: func(ctx context.Context, ep *episodes.Episode, j *journal.Journal) (any, error) {
				started.Add(1)
				<-ctx.Done()
				return nil, ctx.Err()
			},
		}
		a, err := runner.New(s.DB, fastConfig(s, "a"))
		require.NoError(t, err)
		require.NoError(t, a.Register(blocker))
		require.NoError(t, a.Start(ctx))
		var ids []uuid.UUID
		for range 3 {
			res, err := a.Enqueue(ctx, episodes.CreateParams{ActorID: "slow"})
			require.NoError(t, err)
			ids = append(ids, res.Episode.ID)
		}
		require.Eventually(t, func() bool { return started.Load() == 3 }, 5*time.Second, 10*time.Millisecond)
		require.NoError(t, a.StopAndCancel(ctx))
		for _, id := range ids {
			ep, err := a.Store().Get(ctx, id)
			require.NoError(t, err)
			require.Equal(t, episodes.StatusPending, ep.Status, "handed back, not left for a sweep")
			require.Equal(t, 0, ep.Attempts, "a clean stop gives the attempt back")
		}
		var stopped bool
		require.NoError(t, s.DB.Get(&stopped, `SELECT stopped_at IS NOT NULL FROM revenant_nodes WHERE node_id = $1`, a.NodeID()))
		require.True(t, stopped)

		// Another node picks them up.
		b := start(t, s, fastConfig(s, "b"), runner.Actor{ID: "slow", MaxConcurrent: 3,
			Run: func(ctx context.Context, ep *episodes.Episode, j *journal.Journal) (any, error) { return "ok", nil }})
		for _, id := range ids {
			waitStatus(t, b, id, episodes.StatusDone)
		}
	})
}

func TestNodeDeathSeenAtOnceThroughTheAdvisoryLock(t *testing.T) {
	t.Parallel()
	s := testdb.New(t, &testdb.Options{MaxOpenConns: 16})
	ctx := context.Background()
	started := make(chan uuid.UUID, 4)
	victim := start(t, s, fastConfig(s, "victim"), runner.Actor{
		ID: "work", Recovery: recovery.Restart,
		Run: func(ctx context.Context, ep *episodes.Episode, j *journal.Journal) (any, error) {
			started <- ep.ID
			<-ctx.Done()
			return nil, ctx.Err()
		},
	})
	res, err := victim.Enqueue(ctx, episodes.CreateParams{ActorID: "work"})
	require.NoError(t, err)
	<-started

	victimID := victim.NodeID()
	dead, err := backend.For(s.DB).NodeDeadOwnersExist(ctx, s.DB)
	require.NoError(t, err)
	require.False(t, dead, "a live node is not dead")
	// The victim's process "dies": its lock session ends. (The real
	// SIGKILL version is the cross-process crash test.)
	var n int
	require.NoError(t, s.DB.Get(&n, `SELECT count(pg_terminate_backend(l.pid)) FROM pg_locks l
		JOIN revenant_nodes nd ON nd.lock_key = ((l.classid::bigint << 32) | l.objid::bigint)
		WHERE l.locktype = 'advisory' AND nd.node_id = $1`, victim.NodeID()))
	require.Equal(t, 1, n)
	require.Eventually(t, func() bool {
		dead, err := backend.For(s.DB).NodeDeadOwnersExist(ctx, s.DB)
		require.NoError(t, err)
		return dead
	}, 5*time.Second, 10*time.Millisecond)

	sres, err := recovery.Sweep(ctx, s.DB, &recovery.Options{Registry: victim})
	require.NoError(t, err)
	require.Equal(t, 1, sres.Restarted)
	require.Contains(t, sres.DeadNodes, victimID)
	// The restarted episode is claimed and run again (here by the same
	// process, which is still alive and re-registers under a new id). If
	// the re-claim races with that re-registration, a Sweeper recovers it
	// once more, as it would in production.
	sw, err := recovery.NewSweeper(s.DB, &recovery.SweeperConfig{Options: recovery.Options{Registry: victim}, FailureCheckInterval: 50 * time.Millisecond})
	require.NoError(t, err)
	require.NoError(t, sw.Start(ctx))
	defer func() { _ = sw.Stop(context.Background()) }()
	// Under load the victim's re-registration and the re-claim can take a
	// few heartbeats each; a minute is the bound for "never".
	select {
	case id := <-started:
		require.Equal(t, res.Episode.ID, id)
	case <-time.After(time.Minute):
		ep, err := victim.Store().Get(ctx, res.Episode.ID)
		require.NoError(t, err)
		t.Fatalf("the restarted episode was not run again within a minute: status %s, owner %q (node now %q), attempts %d, token %d",
			ep.Status, ep.OwnerNode, victim.NodeID(), ep.Attempts, ep.ClaimToken)
	}
	ep, err := victim.Store().Get(ctx, res.Episode.ID)
	require.NoError(t, err)
	require.GreaterOrEqual(t, ep.Attempts, 2)
	require.GreaterOrEqual(t, ep.ClaimToken, int64(3), "claim, recovery, claim")
}

func TestRegistrationAndConfigErrors(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		_, err := runner.New(nil, nil)
		require.ErrorIs(t, err, revenant.ErrInvalidInput)
		s := testdb.New(t, &testdb.Options{Driver: driver})
		if s.IsSQLite() {
			_, err = runner.New(s.DB, &runner.Config{ListenDSN: "postgres://x"})
			require.ErrorContains(t, err, "no LISTEN/NOTIFY")
		}
		_, err = runner.New(s.DB, &runner.Config{HeartbeatInterval: -time.Second})
		require.ErrorIs(t, err, revenant.ErrInvalidInput)
		_, err = runner.New(s.DB, &runner.Config{HeartbeatInterval: 5 * time.Second, NodeTTL: 6 * time.Second})
		require.ErrorContains(t, err, "NodeTTL")

		r, err := runner.New(s.DB, nil)
		require.NoError(t, err)
		run := func(context.Context, *episodes.Episode, *journal.Journal) (any, error) { return nil, nil }
		require.NoError(t, r.Register(runner.Actor{ID: "a", Run: run}))
		require.ErrorIs(t, r.Register(runner.Actor{ID: "a", Run: run}), runner.ErrAlreadyExists)
		require.ErrorIs(t, r.Register(runner.Actor{ID: "b"}), revenant.ErrInvalidInput)
		require.ErrorIs(t, r.Register(runner.Actor{Run: run}), revenant.ErrInvalidInput)
		require.ErrorContains(t, r.Register(runner.Actor{ID: "c", Run: run, Recovery: "reboot"}), "recovery.Restart")
		require.ErrorIs(t, r.Register(runner.Actor{ID: "d", Run: run, MaxConcurrent: -1}), revenant.ErrInvalidInput)
		_, ok := r.RecoveryPolicy("a", "")
		require.False(t, ok, "an actor registered without a policy states none: a sweep falls through to its definition")
		require.NoError(t, r.Stop(context.Background()), "Stop before Start does nothing")
	})
}

func TestEpisodesOfUnregisteredActorsStayPendingAndAreReported(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		s := testdb.New(t, &testdb.Options{Driver: driver})
		r := start(t, s, fastConfig(s, "a"), runner.Actor{ID: "known",
			Run: func(context.Context, *episodes.Episode, *journal.Journal) (any, error) { return nil, nil }})
		ctx := context.Background()
		res, err := r.Enqueue(ctx, episodes.CreateParams{ActorID: "unknown"})
		require.NoError(t, err)
		// Claim passes ran after the enqueue: later episodes of the known
		// actor were claimed and finished.
		for range 3 {
			probe, err := r.Enqueue(ctx, episodes.CreateParams{ActorID: "known"})
			require.NoError(t, err)
			waitStatus(t, r, probe.Episode.ID, episodes.StatusDone)
		}
		require.Equal(t, episodes.StatusPending, status(t, r, res.Episode.ID))
		backlog, err := recovery.Unclaimable(ctx, s.DB, &recovery.Options{Node: r})
		require.NoError(t, err)
		require.Equal(t, []recovery.Backlog{{ActorID: "unknown", Pending: 1}}, backlog)
	})
}

func TestNodeDeclaredDeadReRegistersAndCancelsItsRuns(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		s := testdb.New(t, &testdb.Options{Driver: driver})
		stoppedBy := make(chan error, 1)
		started := make(chan struct{}, 1)
		r := start(t, s, fastConfig(s, "a"), runner.Actor{ID: "long",
			Run: func(ctx context.Context, ep *episodes.Episode, j *journal.Journal) (any, error) {
				started <- struct{}{}
				<-ctx.Done()
				stoppedBy <- context.Cause(ctx)
				return nil, nil
			}})
		_, err := r.Enqueue(context.Background(), episodes.CreateParams{ActorID: "long"})
		require.NoError(t, err)
		<-started
		old := r.NodeID()
		_, err = s.DB.Exec(`UPDATE revenant_nodes SET stopped_at = `+s.NowPlus(0)+` WHERE node_id = $1`, old)
		require.NoError(t, err)
		select {
		case cause := <-stoppedBy:
			require.ErrorIs(t, cause, runner.ErrIdentityLost)
		case <-time.After(5 * time.Second):
			t.Fatal("runs were not canceled")
		}
		require.NotEqual(t, old, r.NodeID())
	})
}

// Regression: the claim's LIMIT … FOR UPDATE subquery, once inlined into a
// nested loop, was rescanned per row and claimed far past MaxConcurrent.
func TestClaimsNeverExceedMaxConcurrent(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		s := testdb.New(t, &testdb.Options{Driver: driver})
		ctx := context.Background()
		store, err := episodes.New(s.DB, nil)
		require.NoError(t, err)
		for range 60 {
			_, err := store.Create(ctx, episodes.CreateParams{ActorID: "capped"})
			require.NoError(t, err)
		}
		var peak atomic.Int32
		var now atomic.Int32
		release := make(chan struct{})
		probe := runner.Actor{ID: "probe", Run: func(context.Context, *episodes.Episode, *journal.Journal) (any, error) { return nil, nil }}
		r := start(t, s, fastConfig(s, "a"), probe, runner.Actor{ID: "capped", MaxConcurrent: 3,
			Run: func(ctx context.Context, ep *episodes.Episode, j *journal.Journal) (any, error) {
				n := now.Add(1)
				defer now.Add(-1)
				for {
					p := peak.Load()
					if n <= p || peak.CompareAndSwap(p, n) {
						break
					}
				}
				<-release
				return nil, nil
			}})
		// All three are inside Run (Running counts them from the claim,
		// before the journal is open).
		require.Eventually(t, func() bool { return r.Running() == 3 && now.Load() == 3 }, 5*time.Second, 10*time.Millisecond)
		// Several claim passes run while the three are held: each probe
		// episode is claimed and finished by a later pass.
		for range 3 {
			res, err := r.Enqueue(ctx, episodes.CreateParams{ActorID: "probe"})
			require.NoError(t, err)
			waitStatus(t, r, res.Episode.ID, episodes.StatusDone)
		}
		var running int
		require.NoError(t, s.DB.Get(&running, `SELECT count(*) FROM revenant_episodes WHERE status = 'running'`))
		require.Equal(t, 3, running, "claimed in the database: exactly MaxConcurrent")
		close(release)
		require.Eventually(t, func() bool {
			var done int
			require.NoError(t, s.DB.Get(&done, `SELECT count(*) FROM revenant_episodes WHERE status = 'done' AND actor_id = 'capped'`))
			return done == 60
		}, 20*time.Second, 20*time.Millisecond)
		require.Equal(t, int32(3), peak.Load())
	})
}

// A run whose claim was taken over (token bumped, as a sweep does to a node
// judged dead) is stopped at the next heartbeat with ErrLeaseLost.
func TestHeartbeatStopsRunsWhoseLeaseWasTakenOver(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		s := testdb.New(t, &testdb.Options{Driver: driver})
		cfg := fastConfig(s, "a")
		cfg.ListenDSN = ""
		stoppedBy := make(chan error, 1)
		started := make(chan struct{}, 1)
		r := start(t, s, cfg, runner.Actor{ID: "long",
			Run: func(ctx context.Context, ep *episodes.Episode, j *journal.Journal) (any, error) {
				started <- struct{}{}
				<-ctx.Done()
				stoppedBy <- context.Cause(ctx)
				return nil, nil
			}})
		res, err := r.Enqueue(context.Background(), episodes.CreateParams{ActorID: "long"})
		require.NoError(t, err)
		<-started
		_, err = s.DB.Exec(`UPDATE revenant_episodes SET claim_token = claim_token + 1, owner_node = 'rescuer' WHERE id = $1`, res.Episode.ID)
		require.NoError(t, err)
		select {
		case cause := <-stoppedBy:
			require.ErrorIs(t, cause, runner.ErrLeaseLost)
		case <-time.After(5 * time.Second):
			t.Fatal("the run was not stopped")
		}
	})
}
