package inspect_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/inspect"
	"github.com/revenant-go/revenant/internal/store"
	"github.com/revenant-go/revenant/internal/store/backend"
	"github.com/revenant-go/revenant/internal/testdb"
	"github.com/revenant-go/revenant/journal"
	"github.com/revenant-go/revenant/recovery"
	"github.com/revenant-go/revenant/runner"
)

func TestMain(m *testing.M) { testdb.Main(m) }

func noop(context.Context, *episodes.Episode, *journal.Journal) (any, error) { return "ok", nil }

func byID(nodes []inspect.Node) map[string]inspect.Node {
	out := map[string]inspect.Node{}
	for _, n := range nodes {
		out[n.ID] = n
	}
	return out
}

// Nodes tells alive, dead (and by which rule) and stopped nodes apart,
// with what they run, as the sweep's rules see them.
func TestNodesLiveness(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		s := testdb.New(t, &testdb.Options{Driver: driver})
		ctx := context.Background()
		st := backend.For(s.DB)
		cfg := &runner.Config{Name: "live", HeartbeatInterval: 100 * time.Millisecond, NodeTTL: time.Minute}
		live, err := runner.New(s.DB, cfg)
		require.NoError(t, err)
		require.NoError(t, live.Register(runner.Actor{ID: "mailer", Run: noop, Recovery: recovery.Restart,
			ExpectationRecovery: map[string]recovery.Policy{"bulk": recovery.Fail}}))
		require.NoError(t, live.Start(ctx))
		t.Cleanup(func() { _ = live.StopAndCancel(context.Background()) })

		gone, err := runner.New(s.DB, &runner.Config{Name: "gone"})
		require.NoError(t, err)
		require.NoError(t, gone.Register(runner.Actor{ID: "mailer", Run: noop}))
		require.NoError(t, gone.Start(ctx))
		require.NoError(t, gone.Stop(ctx))

		// A node whose heartbeat lapsed while it ran an episode.
		require.NoError(t, st.NodeRegister(ctx, s.DB, &store.NodeRegisterParams{ID: "expired-1", Name: "expired", Actors: []string{"billing"}, TTL: -time.Minute}))
		eps, err := episodes.New(s.DB, nil)
		require.NoError(t, err)
		res, err := eps.Create(ctx, episodes.CreateParams{ActorID: "billing"})
		require.NoError(t, err)
		_, err = eps.Claim(ctx, res.Episode.ID, "expired-1")
		require.NoError(t, err)
		if !s.IsSQLite() {
			// A node whose session lock is gone (no session holds 4242).
			require.NoError(t, st.NodeRegister(ctx, s.DB, &store.NodeRegisterParams{ID: "killed-1", Name: "killed", LockKey: int64(4242), TTL: time.Minute}))
		}

		in, err := inspect.New(s.DB, nil)
		require.NoError(t, err)
		nodes, err := in.Nodes(ctx)
		require.NoError(t, err)
		got := byID(nodes)

		a := got[live.NodeID()]
		require.Equal(t, inspect.Alive, a.Liveness)
		require.Equal(t, "live", a.Name)
		require.Empty(t, a.DeadBy)
		require.Equal(t, []string{"mailer"}, a.Actors)
		require.Equal(t, inspect.ActorPolicy{Recovery: recovery.Restart, Expectations: map[string]recovery.Policy{"bulk": recovery.Fail}}, a.Policies["mailer"])
		require.Less(t, a.HeartbeatAge, time.Minute)
		require.Equal(t, !s.IsSQLite(), a.HasLock)
		require.Equal(t, !s.IsSQLite(), a.LockHeld, "a live node's lock is held")

		g := got[gone.NodeID()]
		require.Equal(t, inspect.Stopped, g.Liveness, "a clean stop is not a death")
		require.NotNil(t, g.StoppedAt)

		e := got["expired-1"]
		require.Equal(t, inspect.Dead, e.Liveness)
		require.Equal(t, recovery.ReasonOwnerExpired, e.DeadBy)
		require.Equal(t, 1, e.Running, "its episode is an orphan")
		if !s.IsSQLite() {
			k := got["killed-1"]
			require.Equal(t, inspect.Dead, k.Liveness)
			require.Equal(t, recovery.ReasonOwnerLockGone, k.DeadBy)
			require.True(t, k.HasLock)
			require.False(t, k.LockHeld)
		}

		// A sweep recovers the orphan and marks the node stopped: still
		// dead, by the same rule, owning nothing now.
		_, err = recovery.Sweep(ctx, s.DB, &recovery.Options{DefaultPolicy: recovery.Restart})
		require.NoError(t, err)
		nodes, err = in.Nodes(ctx)
		require.NoError(t, err)
		e = byID(nodes)["expired-1"]
		require.Equal(t, inspect.Dead, e.Liveness)
		require.Equal(t, recovery.ReasonOwnerExpired, e.DeadBy)
		require.NotNil(t, e.StoppedAt)
		require.Zero(t, e.Running)
		require.NotEqual(t, uuid.Nil, res.Episode.ID)
	})
}

// Backlog counts due, scheduled, running, blocked and dead-lettered
// episodes per actor and scope, and says which a live node can claim.
func TestBacklog(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		s := testdb.New(t, &testdb.Options{Driver: driver})
		ctx := context.Background()
		st := backend.For(s.DB)
		require.NoError(t, st.NodeRegister(ctx, s.DB, &store.NodeRegisterParams{ID: "web-1", Name: "web", Stack: "shop", Env: "prod",
			Actors: []string{"mailer"}, TTL: time.Minute}))
		eps, err := episodes.New(s.DB, nil)
		require.NoError(t, err)
		create := func(p episodes.CreateParams) uuid.UUID {
			res, err := eps.Create(ctx, p)
			require.NoError(t, err)
			return res.Episode.ID
		}
		prod := func(p episodes.CreateParams) episodes.CreateParams {
			p.SourceStack, p.SourceEnv = "shop", "prod"
			return p
		}
		create(prod(episodes.CreateParams{ActorID: "mailer"}))
		create(prod(episodes.CreateParams{ActorID: "mailer"}))
		create(prod(episodes.CreateParams{ActorID: "mailer", Delay: time.Hour}))
		running := create(prod(episodes.CreateParams{ActorID: "mailer"}))
		_, err = eps.Claim(ctx, running, "web-1")
		require.NoError(t, err)
		failed := create(prod(episodes.CreateParams{ActorID: "mailer"}))
		claimed, err := eps.Claim(ctx, failed, "web-1")
		require.NoError(t, err)
		_, err = eps.Fail(ctx, failed, claimed.ClaimToken, "error", nil)
		require.NoError(t, err)
		create(episodes.CreateParams{ActorID: "mailer", SourceEnv: "staging"}) // no node in staging
		create(prod(episodes.CreateParams{ActorID: "mialer"}))                 // a typo

		in, err := inspect.New(s.DB, nil)
		require.NoError(t, err)
		got, err := in.Backlog(ctx)
		require.NoError(t, err)
		require.Len(t, got, 3)
		byKey := map[string]inspect.Backlog{}
		for _, b := range got {
			byKey[b.ActorID+"/"+b.Stack+"/"+b.Env] = b
		}
		m := byKey["mailer/shop/prod"]
		require.Equal(t, 2, m.Due, "the claimed and the failed ones are not pending")
		require.Equal(t, 1, m.Scheduled)
		require.Equal(t, 1, m.Running)
		require.Equal(t, 1, m.Failed)
		require.True(t, m.Claimable)
		require.GreaterOrEqual(t, m.OldestDueWait, time.Duration(0))
		require.False(t, byKey["mailer//staging"].Claimable, "no live node in staging")
		require.Equal(t, 1, byKey["mailer//staging"].Due)
		require.False(t, byKey["mialer/shop/prod"].Claimable, "nobody registered the typo")
	})
}

// Episode shows the journal (sizes always, outputs on request), the error
// of a failed attempt, the requeue history and, for a step, its workflow.
func TestEpisodeDetail(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		s := testdb.New(t, &testdb.Options{Driver: driver})
		ctx := context.Background()
		r, err := runner.New(s.DB, &runner.Config{Name: "n", HeartbeatInterval: 100 * time.Millisecond, NodeTTL: time.Minute, PollInterval: 20 * time.Millisecond})
		require.NoError(t, err)
		require.NoError(t, r.Register(runner.Actor{ID: "charger", MaxAttempts: 1,
			Run: func(ctx context.Context, ep *episodes.Episode, j *journal.Journal) (any, error) {
				if _, err := journal.Step(ctx, j, "quote", func(context.Context) (string, error) { return "carte é", nil }); err != nil {
					return nil, err
				}
				return nil, errors.New("card declined")
			}}))
		require.NoError(t, r.Start(ctx))
		t.Cleanup(func() { _ = r.StopAndCancel(context.Background()) })
		res, err := r.Enqueue(ctx, episodes.CreateParams{ActorID: "charger", Input: map[string]string{"email": "a@example.com"}})
		require.NoError(t, err)
		id := res.Episode.ID
		require.Eventually(t, func() bool {
			ep, err := r.Store().Get(ctx, id)
			require.NoError(t, err)
			return ep.Status == episodes.StatusFailed
		}, 10*time.Second, 10*time.Millisecond)
		require.NoError(t, r.StopAndCancel(ctx)) // nothing runs the requeued episode
		_, err = r.Store().Requeue(ctx, id, episodes.RequeueOptions{By: "ops", Reason: "retry by hand"})
		require.NoError(t, err)

		in, err := inspect.New(s.DB, nil)
		require.NoError(t, err)
		d, err := in.Episode(ctx, id, inspect.EpisodeOptions{})
		require.NoError(t, err)
		require.Nil(t, d.Episode.Input, "personal data stays hidden by default")
		require.Equal(t, "error", d.Episode.ErrorClass)
		require.Contains(t, string(d.Episode.ErrorDetail), "card declined")
		require.Len(t, d.Episode.Requeues, 1)
		require.Equal(t, "ops", d.Episode.Requeues[0].By)
		require.Len(t, d.Steps, 1)
		require.Equal(t, "quote", d.Steps[0].Name)
		require.Equal(t, "done", d.Steps[0].Status)
		require.Equal(t, len(`"carte é"`), d.Steps[0].OutputBytes, "bytes, not characters")
		require.Nil(t, d.Steps[0].Output)
		require.Nil(t, d.Workflow)

		d, err = in.Episode(ctx, id, inspect.EpisodeOptions{Data: true})
		require.NoError(t, err)
		require.JSONEq(t, `{"email": "a@example.com"}`, string(d.Episode.Input))
		require.JSONEq(t, `"carte é"`, string(d.Steps[0].Output))

		_, err = in.Episode(ctx, uuid.New(), inspect.EpisodeOptions{})
		require.ErrorIs(t, err, episodes.ErrNotFound)
	})
}
