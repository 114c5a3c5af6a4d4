package inspect_test

import (
	"context"
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
