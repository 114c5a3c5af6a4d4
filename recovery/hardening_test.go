package recovery_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant"
	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/internal/testdb"
	"github.com/revenant-go/revenant/journal"
	"github.com/revenant-go/revenant/recovery"
	"github.com/revenant-go/revenant/runner"
)

// An orphan whose claim token is at the bigint maximum cannot be
// recovered (the token bump would overflow): it is skipped and reported by
// id, and every other orphan is recovered.
func TestExhaustedOrphanIsSkippedAndReported(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		b := setup(t, driver)
		ctx := context.Background()
		dead := b.deadNode(t, "", "")
		var eps []*episodes.Episode
		for range 3 {
			eps = append(eps, b.running(t, dead, episodes.CreateParams{}))
		}
		_, err := b.db.Exec(`UPDATE revenant_episodes SET claim_token = 9223372036854775807 WHERE id = $1`, eps[1].ID)
		require.NoError(t, err)
		reg := registry{"mailer": recovery.Restart}

		plan, err := recovery.Sweep(ctx, b.db, &recovery.Options{Registry: reg, DryRun: true})
		require.NoError(t, err)
		require.Equal(t, 2, plan.Restarted)
		require.Equal(t, 1, plan.Skipped)

		for _, opts := range []*recovery.Options{
			{Registry: reg},
			{ResolvePolicy: func(context.Context, *episodes.Episode) (recovery.Policy, error) { return recovery.Restart, nil }},
		} {
			res, err := recovery.Sweep(ctx, b.db, opts)
			require.NoError(t, err)
			require.Equal(t, 1, res.Skipped)
			require.Len(t, res.Errors, 1)
			require.Equal(t, eps[1].ID, res.Errors[0].EpisodeID)
			require.ErrorIs(t, res.Errors[0].Err, recovery.ErrExhausted)
		}
		require.Equal(t, episodes.StatusPending, b.get(t, eps[0].ID).Status)
		require.Equal(t, episodes.StatusPending, b.get(t, eps[2].ID).Status)
		require.Equal(t, episodes.StatusRunning, b.get(t, eps[1].ID).Status)

		// The Sweeper reports exhausted open episodes, pending ones too.
		_, err = b.db.Exec(`UPDATE revenant_episodes SET attempts = 2147483647 WHERE id = $1`, eps[0].ID)
		require.NoError(t, err)
		sw, err := recovery.NewSweeper(b.db, &recovery.SweeperConfig{Options: recovery.Options{Registry: reg}, Interval: time.Hour})
		require.NoError(t, err)
		require.NoError(t, sw.Start(ctx))
		defer func() { _ = sw.Stop(context.Background()) }()
		require.Eventually(t, func() bool { return len(sw.Stats().Exhausted) == 2 }, 10*time.Second, 10*time.Millisecond)
	})
}

// A panic in ResolvePolicy is that episode's error: it is left untouched
// and reported, and the others are recovered.
func TestPanickingResolvePolicyIsLocal(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		b := setup(t, driver)
		dead := b.deadNode(t, "", "")
		bad := b.running(t, dead, episodes.CreateParams{ActorID: "bad"})
		good := b.running(t, dead, episodes.CreateParams{ActorID: "good"})
		var events atomic.Int32
		res, err := recovery.Sweep(context.Background(), b.db, &recovery.Options{
			ResolvePolicy: func(_ context.Context, ep *episodes.Episode) (recovery.Policy, error) {
				if ep.ActorID == "bad" {
					panic("policy store exploded")
				}
				return recovery.Restart, nil
			},
			OnEvent: func(context.Context, recovery.Event) { events.Add(1); panic("hook exploded") },
		})
		require.NoError(t, err)
		require.Equal(t, 1, res.Restarted)
		require.Equal(t, 1, res.Skipped)
		require.Equal(t, bad.ID, res.Errors[0].EpisodeID)
		require.ErrorContains(t, res.Errors[0].Err, "policy store exploded")
		require.Equal(t, episodes.StatusPending, b.get(t, good.ID).Status)
		require.Equal(t, episodes.StatusRunning, b.get(t, bad.ID).Status)
		require.Equal(t, int32(1), events.Load())
	})
}

// panickyReconciler panics on its first call.
type panickyReconciler struct{ calls atomic.Int32 }

func (p *panickyReconciler) ReconcileWorkflows(context.Context, recovery.Scope) (*recovery.ReconcileResult, error) {
	if p.calls.Add(1) == 1 {
		panic("reconciler exploded")
	}
	return &recovery.ReconcileResult{}, nil
}

// A panic in one pass of the Sweeper's loop is logged with its stack and
// the loop goes on.
func TestSweeperLoopSurvivesAPanic(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		b := setup(t, driver)
		logs, logger := testdb.NewLogs()
		rec := &panickyReconciler{}
		sw, err := recovery.NewSweeper(b.db, &recovery.SweeperConfig{Options: recovery.Options{Logger: logger},
			Interval: 20 * time.Millisecond, Workflows: rec})
		require.NoError(t, err)
		require.NoError(t, sw.Start(context.Background()))
		defer func() { _ = sw.Stop(context.Background()) }()
		require.Eventually(t, func() bool { return rec.calls.Load() >= 3 }, 10*time.Second, 10*time.Millisecond)
		require.Equal(t, 1, logs.Count("reconciler exploded"))
		require.Contains(t, logs.String(), "goroutine", "the stack is logged")
	})
}

// Pass may be called while the Sweeper's own loop runs: they take turns on
// the reserved connection.
func TestPassIsSafeBesideTheLoop(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		b := setup(t, driver)
		ctx := context.Background()
		sw, err := recovery.NewSweeper(b.db, &recovery.SweeperConfig{Options: recovery.Options{Registry: registry{"mailer": recovery.Restart}},
			Interval: 10 * time.Millisecond, FailureCheckInterval: 10 * time.Millisecond})
		require.NoError(t, err)
		require.NoError(t, sw.Start(ctx))
		defer func() { _ = sw.Stop(context.Background()) }()
		dead := b.deadNode(t, "", "")
		for range 20 {
			b.running(t, dead, episodes.CreateParams{})
		}
		var wg sync.WaitGroup
		var failed atomic.Int32
		for range 8 {
			wg.Go(func() {
				for range 20 {
					if _, err := sw.Pass(ctx); err != nil {
						failed.Add(1)
						t.Log(err)
					}
				}
			})
		}
		wg.Wait()
		require.Zero(t, failed.Load())
		require.Zero(t, sw.Stats().Failures)
	})
}

// A Sweeper that cannot get its connection fails Start, holds nothing, and
// Stop returns at once: a closed handle, a database that is down, a pool
// too small for what revenant reserves.
func TestSweeperStartFailsLoudly(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		s := testdb.New(t, &testdb.Options{Driver: driver})
		ctx := context.Background()

		closed, err := sqlx.Open(s.DB.DriverName(), s.DSN)
		require.NoError(t, err)
		if s.IsSQLite() {
			closed = sqlx.NewDb(closed.DB, "sqlite")
		}
		require.NoError(t, closed.Close())
		sw, err := recovery.NewSweeper(closed, nil)
		require.NoError(t, err)
		require.Error(t, sw.Start(ctx))
		began := time.Now()
		_ = sw.Stop(context.Background())
		require.Less(t, time.Since(began), time.Second)
		if s.IsSQLite() {
			return
		}

		// Postgres down at boot: Start fails, and succeeds once it is back.
		proxy := testdb.NewProxy(t)
		db, err := sqlx.Open("postgres", proxy.DSN(s.DSN))
		require.NoError(t, err)
		defer db.Close()
		proxy.Cut()
		sw, err = recovery.NewSweeper(db, nil)
		require.NoError(t, err)
		err = sw.Start(ctx)
		require.True(t, revenant.IsRetryable(err), "%v", err)
		require.Zero(t, db.Stats().InUse)
		proxy.Restore()
		require.NoError(t, sw.Start(ctx))
		require.Eventually(t, func() bool { return !sw.Stats().LastSuccess.IsZero() }, 10*time.Second, 10*time.Millisecond)
		_ = sw.Stop(context.Background())
	})
}

// The pool must hold what revenant reserves (a runner's lock connection on
// Postgres, a Sweeper's connection) plus one for everything else; Start
// says so with numbers instead of everything stalling later.
func TestPoolTooSmallIsRefusedAtStart(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		s := testdb.New(t, &testdb.Options{Driver: driver})
		ctx := context.Background()
		runnerHolds := 1
		if s.IsSQLite() {
			runnerHolds = 0 // no advisory lock
		}
		newRunner := func() *runner.Runner {
			r, err := runner.New(s.DB, &runner.Config{Name: "pool", HeartbeatInterval: 100 * time.Millisecond, NodeTTL: time.Second, PollInterval: 20 * time.Millisecond})
			require.NoError(t, err)
			require.NoError(t, r.Register(runner.Actor{ID: "a", Run: func(ctx context.Context, ep *episodes.Episode, j *journal.Journal) (any, error) {
				return journal.StepTx(ctx, j, "tx", func(ctx context.Context, tx *sqlx.Tx) (int, error) { return 1, nil })
			}}))
			return r
		}
		// Too small for the runner and the Sweeper together.
		s.DB.SetMaxOpenConns(runnerHolds + 1)
		r := newRunner()
		require.NoError(t, r.Start(ctx))
		sw, err := recovery.NewSweeper(s.DB, &recovery.SweeperConfig{Options: recovery.Options{Node: r}})
		require.NoError(t, err)
		err = sw.Start(ctx)
		require.ErrorIs(t, err, revenant.ErrInvalidInput)
		require.ErrorContains(t, err, "SetMaxOpenConns to at least")
		_ = sw.Stop(context.Background())
		require.NoError(t, r.StopAndCancel(ctx))
		if !s.IsSQLite() {
			s.DB.SetMaxOpenConns(1)
			err = newRunner().Start(ctx)
			require.ErrorContains(t, err, "at least 2")
		}

		// Just enough: both start and an episode with a transactional step
		// completes.
		s.DB.SetMaxOpenConns(runnerHolds + 2)
		r = newRunner()
		require.NoError(t, r.Start(ctx))
		defer func() { _ = r.StopAndCancel(ctx) }()
		sw, err = recovery.NewSweeper(s.DB, &recovery.SweeperConfig{Options: recovery.Options{Node: r}})
		require.NoError(t, err)
		require.NoError(t, sw.Start(ctx))
		defer func() { _ = sw.Stop(context.Background()) }()
		res, err := r.Enqueue(ctx, episodes.CreateParams{ActorID: "a"})
		require.NoError(t, err)
		require.Eventually(t, func() bool {
			ep, err := r.Store().Get(ctx, res.Episode.ID)
			return err == nil && ep.Status == episodes.StatusDone
		}, 10*time.Second, 10*time.Millisecond)
	})
}

// Durations that would turn a timeout off or spin a loop are refused.
func TestSweeperDurationRanges(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		b := setup(t, driver)
		for name, cfg := range map[string]recovery.SweeperConfig{
			"sub-ms statement timeout": {StatementTimeout: 500 * time.Microsecond},
			"nanosecond interval":      {Interval: 3},
			"nanosecond check":         {FailureCheckInterval: 3},
			"huge statement timeout":   {StatementTimeout: 30 * 24 * time.Hour},
			"negative batch":           {Options: recovery.Options{BatchSize: -1}},
		} {
			_, err := recovery.NewSweeper(b.db, &cfg)
			require.ErrorIs(t, err, revenant.ErrInvalidInput, name)
		}
		_, err := recovery.NewSweeper(b.db, &recovery.SweeperConfig{FailureCheckInterval: -1})
		require.NoError(t, err, "a negative failure check disables it")
		_, err = recovery.Sweep(context.Background(), b.db, &recovery.Options{StaleAfter: time.Nanosecond})
		require.True(t, errors.Is(err, revenant.ErrInvalidInput))
	})
}
