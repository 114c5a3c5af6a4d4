package runner_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant/breakers"
	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/internal/testdb"
	"github.com/revenant-go/revenant/journal"
	"github.com/revenant-go/revenant/runner"
)

// attemptLog records each attempt's start by the database clock.
func attemptLog(t *testing.T, s *testdb.Schema) func(id uuid.UUID, attempt int) {
	t.Helper()
	ddl := `CREATE TABLE attempt_log (episode text, attempt integer, at timestamptz NOT NULL DEFAULT now())`
	if s.IsSQLite() {
		ddl = `CREATE TABLE attempt_log (episode text, attempt integer, at timestamp NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')))`
	}
	_, err := s.DB.Exec(ddl)
	require.NoError(t, err)
	return func(id uuid.UUID, attempt int) {
		_, err := s.DB.Exec(`INSERT INTO attempt_log (episode, attempt) VALUES ($1, $2)`, id.String(), attempt)
		require.NoError(t, err)
	}
}

func attemptTimes(t *testing.T, s *testdb.Schema, id uuid.UUID) []time.Time {
	t.Helper()
	var at []time.Time
	require.NoError(t, s.DB.Select(&at, `SELECT at FROM attempt_log WHERE episode = $1 ORDER BY attempt`, id.String()))
	return at
}

func TestTransientErrorsAreRetriedWithBackoff(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		s := testdb.New(t, &testdb.Options{Driver: driver})
		logAttempt := attemptLog(t, s)
		var prepared atomic.Int32
		var seen []journal.Attempt
		const minBackoff = 200 * time.Millisecond
		r := start(t, s, fastConfig(s, "a"), runner.Actor{
			ID:    "flaky",
			Retry: &episodes.RetryPolicy{MinBackoff: minBackoff, MaxBackoff: 10 * time.Second},
			Run: func(ctx context.Context, ep *episodes.Episode, j *journal.Journal) (any, error) {
				logAttempt(ep.ID, ep.Attempts)
				seen = append(seen, j.Attempt()) // attempts never overlap
				if _, err := journal.Step(ctx, j, "prepare", func(context.Context) (int, error) {
					return int(prepared.Add(1)), nil
				}); err != nil {
					return nil, err
				}
				if ep.Attempts < 3 {
					return nil, classed{errors.New("upstream timed out")}
				}
				return "ok", nil
			},
		})
		res, err := r.Enqueue(context.Background(), episodes.CreateParams{ActorID: "flaky"})
		require.NoError(t, err)
		ep := waitStatus(t, r, res.Episode.ID, episodes.StatusDone)
		require.Equal(t, 3, ep.Attempts)
		require.Equal(t, int32(1), prepared.Load(), "a completed step is replayed, not run again")

		require.Len(t, seen, 3)
		require.Nil(t, seen[0].PreviousError)
		for i, a := range seen {
			require.Equal(t, i+1, a.Attempt)
			require.Equal(t, 3, a.MaxAttempts)
		}
		require.Equal(t, &journal.PreviousError{Class: "upstream", Message: "upstream timed out"}, seen[1].PreviousError)

		// The gaps between attempts, by the database clock, follow the
		// policy: at least 200 ms then 400 ms, less the 20% jitter. (How
		// soon after its due time a retry starts is measured by
		// BenchmarkScheduleLateness, not here: a loaded machine is late.)
		at := attemptTimes(t, s, ep.ID)
		require.Len(t, at, 3)
		for i, want := range []time.Duration{minBackoff, 2 * minBackoff} {
			gap := at[i+1].Sub(at[i])
			require.GreaterOrEqual(t, gap, want*8/10-2*time.Millisecond, "retry %d came before its backoff", i+1)
		}
	})
}

func TestPermanentErrorsAndNoRetryClassesAreNotRetried(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		s := testdb.New(t, &testdb.Options{Driver: driver})
		r := start(t, s, fastConfig(s, "a"),
			runner.Actor{ID: "permanent", Retry: &episodes.RetryPolicy{MinBackoff: 10 * time.Millisecond},
				Run: func(context.Context, *episodes.Episode, *journal.Journal) (any, error) {
					return nil, journal.Permanent(errors.New("the input is malformed"))
				}},
			runner.Actor{ID: "classed", Retry: &episodes.RetryPolicy{MinBackoff: 10 * time.Millisecond, NoRetry: []string{"upstream"}},
				Run: func(context.Context, *episodes.Episode, *journal.Journal) (any, error) {
					return nil, classed{errors.New("no")}
				}},
			runner.Actor{ID: "per-episode", Retry: &episodes.RetryPolicy{MinBackoff: 10 * time.Millisecond},
				Run: func(context.Context, *episodes.Episode, *journal.Journal) (any, error) {
					return nil, errors.New("no")
				}},
		)
		ctx := context.Background()
		for _, p := range []episodes.CreateParams{
			{ActorID: "permanent"}, {ActorID: "classed"},
			{ActorID: "per-episode", Retry: &episodes.RetryPolicy{Disabled: true}},
		} {
			res, err := r.Enqueue(ctx, p)
			require.NoError(t, err)
			ep := waitStatus(t, r, res.Episode.ID, episodes.StatusFailed)
			require.Equal(t, 1, ep.Attempts, "actor %s: the first error is final", p.ActorID)
		}
		// Without an override the same actor retries until its attempts
		// run out.
		res, err := r.Enqueue(ctx, episodes.CreateParams{ActorID: "per-episode", MaxAttempts: 2})
		require.NoError(t, err)
		require.Equal(t, 2, waitStatus(t, r, res.Episode.ID, episodes.StatusFailed).Attempts)
	})
}

func TestExhaustedEpisodeIsDeadLetteredThenRequeuedAndCompletes(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		s := testdb.New(t, &testdb.Options{Driver: driver})
		var fixed atomic.Bool
		var steps atomic.Int32
		r := start(t, s, fastConfig(s, "a"), runner.Actor{
			ID: "dlq", MaxAttempts: 2, Retry: &episodes.RetryPolicy{MinBackoff: 10 * time.Millisecond},
			Run: func(ctx context.Context, ep *episodes.Episode, j *journal.Journal) (any, error) {
				if _, err := journal.Step(ctx, j, "a", func(context.Context) (int, error) { return int(steps.Add(1)), nil }); err != nil {
					return nil, err
				}
				if !fixed.Load() {
					return nil, classed{errors.New("dependency down")}
				}
				return "ok", nil
			},
		})
		ctx := context.Background()
		res, err := r.Enqueue(ctx, episodes.CreateParams{ActorID: "dlq"})
		require.NoError(t, err)
		id := res.Episode.ID
		failed := waitStatus(t, r, id, episodes.StatusFailed)
		require.Equal(t, 2, failed.Attempts)

		dead, err := r.Store().DeadLetters(ctx, episodes.ListParams{ActorID: "dlq", ErrorClass: "upstream",
			FinishedAfter: time.Now().Add(-time.Hour)})
		require.NoError(t, err)
		require.Len(t, dead.Episodes, 1)
		require.Equal(t, id, dead.Episodes[0].ID)
		other, err := r.Store().DeadLetters(ctx, episodes.ListParams{ActorID: "dlq", ErrorClass: "timeout"})
		require.NoError(t, err)
		require.Empty(t, other.Episodes)

		fixed.Store(true)
		back, err := r.Requeue(ctx, id, episodes.RequeueOptions{By: "ops", Reason: "dependency fixed"})
		require.NoError(t, err)
		require.Equal(t, episodes.StatusPending, back.Status)
		require.Zero(t, back.Attempts, "a requeue gives fresh attempts")
		done := waitStatus(t, r, id, episodes.StatusDone)
		require.Equal(t, 1, done.Attempts)
		require.Equal(t, int32(1), steps.Load(), "the journal's completed step still counts after a requeue")
		require.Len(t, done.Requeues, 1)
		rq := done.Requeues[0]
		require.Equal(t, "ops", rq.By)
		require.Equal(t, "dependency fixed", rq.Reason)
		require.Equal(t, episodes.StatusFailed, rq.From)
		require.Equal(t, "upstream", rq.ErrorClass)
		require.Equal(t, 2, rq.Attempts)
		require.False(t, rq.At.IsZero())

		_, err = r.Requeue(ctx, id, episodes.RequeueOptions{})
		require.ErrorIs(t, err, episodes.ErrIllegalTransition, "a done episode is not requeued")
		_, err = r.Requeue(ctx, uuid.New(), episodes.RequeueOptions{})
		require.ErrorIs(t, err, episodes.ErrNotFound)
	})
}

func TestRequeueMatchingInBulk(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		s := testdb.New(t, &testdb.Options{Driver: driver})
		var fixed atomic.Bool
		var runs atomic.Int32
		r := start(t, s, fastConfig(s, "a"), runner.Actor{
			ID: "bulk", MaxAttempts: 1,
			Run: func(ctx context.Context, ep *episodes.Episode, j *journal.Journal) (any, error) {
				if _, err := journal.Step(ctx, j, "a", func(context.Context) (int, error) { return int(runs.Add(1)), nil }); err != nil {
					return nil, err
				}
				if string(ep.Input) == `"other"` {
					return nil, errors.New("something else")
				}
				if !fixed.Load() {
					return nil, classed{errors.New("dependency down")}
				}
				return "ok", nil
			},
		})
		ctx := context.Background()
		var upstream, others []uuid.UUID
		for i := range 7 {
			in := "upstream"
			if i >= 5 {
				in = "other"
			}
			res, err := r.Enqueue(ctx, episodes.CreateParams{ActorID: "bulk", Input: in})
			require.NoError(t, err)
			if in == "other" {
				others = append(others, res.Episode.ID)
			} else {
				upstream = append(upstream, res.Episode.ID)
			}
		}
		for _, id := range append(append([]uuid.UUID{}, upstream...), others...) {
			waitStatus(t, r, id, episodes.StatusFailed)
		}
		fixed.Store(true)
		eps, err := r.RequeueMatching(ctx, episodes.RequeueFilter{ActorID: "bulk", ErrorClass: "upstream", Limit: 3},
			episodes.RequeueOptions{Clean: true, Reason: "outage over"})
		require.NoError(t, err)
		require.Len(t, eps, 3, "Limit bounds one call")
		more, err := r.RequeueMatching(ctx, episodes.RequeueFilter{ActorID: "bulk", ErrorClass: "upstream"}, episodes.RequeueOptions{Clean: true})
		require.NoError(t, err)
		require.Len(t, more, 2)
		for _, id := range upstream {
			ep := waitStatus(t, r, id, episodes.StatusDone)
			require.Len(t, ep.Requeues, 1)
			require.True(t, ep.Requeues[0].Clean)
			require.Equal(t, r.NodeID(), ep.Requeues[0].By, "By defaults to the node's id")
		}
		require.Equal(t, int32(7+5), runs.Load(), "a clean requeue runs the steps again")
		for _, id := range others {
			require.Equal(t, episodes.StatusFailed, status(t, r, id), "another error class is left alone")
		}
	})
}

func TestScheduledEpisodesRunWhenDueAndCanBeCanceled(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		s := testdb.New(t, &testdb.Options{Driver: driver})
		var ran atomic.Int32
		cfg := fastConfig(s, "a")
		cfg.PollInterval = time.Hour // the runner must wake at the due time itself
		r := start(t, s, cfg, runner.Actor{ID: "later", Run: func(context.Context, *episodes.Episode, *journal.Journal) (any, error) {
			ran.Add(1)
			return "ok", nil
		}})
		ctx := context.Background()
		soon, err := r.Enqueue(ctx, episodes.CreateParams{ActorID: "later", Delay: 300 * time.Millisecond})
		require.NoError(t, err)
		require.Equal(t, episodes.StatusPending, soon.Episode.Status)
		require.GreaterOrEqual(t, soon.Episode.RunAt.Sub(soon.Episode.CreatedAt), 299*time.Millisecond)
		never, err := r.Enqueue(ctx, episodes.CreateParams{ActorID: "later", RunAt: time.Now().Add(time.Hour)})
		require.NoError(t, err)

		ep := waitStatus(t, r, soon.Episode.ID, episodes.StatusDone)
		require.False(t, ep.StartedAt.Before(ep.RunAt), "claimed at %s, before it was due at %s", ep.StartedAt, ep.RunAt)

		canceled, err := r.Cancel(ctx, never.Episode.ID, "not needed")
		require.NoError(t, err)
		require.Equal(t, episodes.StatusCanceled, canceled.Status)
		require.Equal(t, int32(1), ran.Load())

		_, err = r.Enqueue(ctx, episodes.CreateParams{ActorID: "later", Delay: time.Second, RunAt: time.Now()})
		require.ErrorIs(t, err, episodes.ErrInvalidInput)
		_, err = r.Enqueue(ctx, episodes.CreateParams{ActorID: "later", Retry: &episodes.RetryPolicy{Backoff: func(int) time.Duration { return 0 }}})
		require.ErrorIs(t, err, episodes.ErrInvalidInput, "a function cannot be stored with an episode")
	})
}

func TestTimeoutEndsTheAttemptAndRetries(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		s := testdb.New(t, &testdb.Options{Driver: driver})
		var second journal.Attempt
		r := start(t, s, fastConfig(s, "a"), runner.Actor{
			ID: "slow", Timeout: 100 * time.Millisecond, Retry: &episodes.RetryPolicy{MinBackoff: 10 * time.Millisecond},
			Run: func(ctx context.Context, ep *episodes.Episode, j *journal.Journal) (any, error) {
				if ep.Attempts == 1 {
					<-ctx.Done()
					return nil, ctx.Err()
				}
				second = j.Attempt()
				return "ok", nil
			},
		})
		res, err := r.Enqueue(context.Background(), episodes.CreateParams{ActorID: "slow"})
		require.NoError(t, err)
		ep := waitStatus(t, r, res.Episode.ID, episodes.StatusDone)
		require.Equal(t, 2, ep.Attempts)
		require.NotNil(t, second.PreviousError)
		require.Equal(t, "timeout", second.PreviousError.Class)
		require.Contains(t, second.PreviousError.Message, "Timeout (100ms)")
	})
}

func TestBreakerOpensForTheClusterAndTheProbeClosesIt(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		s := testdb.New(t, &testdb.Options{Driver: driver})
		var healthy atomic.Bool
		actor := runner.Actor{
			ID: "dep", MaxAttempts: 1, Breaker: &breakers.Policy{ConsecutiveFailures: 3, CoolDown: 500 * time.Millisecond},
			Run: func(context.Context, *episodes.Episode, *journal.Journal) (any, error) {
				if !healthy.Load() {
					return nil, errors.New("dependency down")
				}
				return "ok", nil
			},
		}
		a := start(t, s, fastConfig(s, "a"), actor)
		ctx := context.Background()
		for range 3 {
			res, err := a.Enqueue(ctx, episodes.CreateParams{ActorID: "dep"})
			require.NoError(t, err)
			waitStatus(t, a, res.Episode.ID, episodes.StatusFailed)
		}
		bs, err := breakers.New(s.DB, nil)
		require.NoError(t, err)
		key := breakers.Key{ActorID: "dep"}
		open, err := bs.Get(ctx, key)
		require.NoError(t, err)
		require.Equal(t, breakers.Open, open.State, "three failures in a row open the breaker")
		require.NotNil(t, open.ReopenAt)
		require.Contains(t, open.Reason, "3 failed attempts in a row")

		// Another node, healthy this time: it must not claim while the
		// breaker is open, and the probe after the cool-down closes it.
		healthy.Store(true)
		b := start(t, s, fastConfig(s, "b"), actor)
		res, err := b.Enqueue(ctx, episodes.CreateParams{ActorID: "dep"})
		require.NoError(t, err)
		ep := waitStatus(t, b, res.Episode.ID, episodes.StatusDone)
		require.False(t, ep.StartedAt.Before(*open.ReopenAt), "claimed at %s while the breaker was open until %s", ep.StartedAt, *open.ReopenAt)
		require.Eventually(t, func() bool {
			cur, err := bs.Get(ctx, key)
			require.NoError(t, err)
			return cur.State == breakers.Closed && cur.Failures == 0
		}, 10*time.Second, 10*time.Millisecond, "the probe's success closes the breaker")

		// By hand: an operator's open holds until an operator closes it.
		_, err = bs.Open(ctx, key, "maintenance")
		require.NoError(t, err)
		held, err := b.Enqueue(ctx, episodes.CreateParams{ActorID: "dep"})
		require.NoError(t, err)
		cur, err := bs.Get(ctx, key)
		require.NoError(t, err)
		require.True(t, cur.Manual)
		require.Nil(t, cur.ReopenAt, "no probe through a breaker opened by hand")
		_, err = bs.Close(ctx, key, "maintenance over")
		require.NoError(t, err)
		require.Equal(t, episodes.StatusDone, waitStatus(t, b, held.Episode.ID, episodes.StatusDone).Status)
		list, err := bs.List(ctx)
		require.NoError(t, err)
		require.Len(t, list, 1)
	})
}
