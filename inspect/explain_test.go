package inspect_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant/breakers"
	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/inspect"
	"github.com/revenant-go/revenant/internal/store"
	"github.com/revenant-go/revenant/internal/store/backend"
	"github.com/revenant-go/revenant/internal/testdb"
	"github.com/revenant-go/revenant/recovery"
)

// Explain says, per episode, what the next real sweep then does.
func TestExplainMatchesTheSweep(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		s := testdb.New(t, &testdb.Options{Driver: driver})
		ctx := context.Background()
		st := backend.For(s.DB)
		eps, err := episodes.New(s.DB, nil)
		require.NoError(t, err)
		in, err := inspect.New(s.DB, nil)
		require.NoError(t, err)
		register := func(id string, ttl time.Duration, actors []string, pol map[string]store.ActorPolicy) {
			require.NoError(t, st.NodeRegister(ctx, s.DB, &store.NodeRegisterParams{ID: id, Name: id, Actors: actors, Policies: pol, TTL: ttl}))
		}
		runningOn := func(actor, node string) uuid.UUID {
			res, err := eps.Create(ctx, episodes.CreateParams{ActorID: actor})
			require.NoError(t, err)
			_, err = eps.Claim(ctx, res.Episode.ID, node)
			require.NoError(t, err)
			return res.Episode.ID
		}
		register("live-1", time.Minute, []string{"mailer"}, nil)
		register("dead-1", -time.Minute, []string{"mailer", "charger"},
			map[string]store.ActorPolicy{"mailer": {Recovery: "restart"}, "charger": {Recovery: "fail"}})
		alive := runningOn("mailer", "live-1")
		restart := runningOn("mailer", "dead-1")
		fail := runningOn("charger", "dead-1")
		exhausted := runningOn("charger", "dead-1")
		_, err = s.DB.Exec(`UPDATE revenant_episodes SET attempts = 2147483647 WHERE id = $1`, exhausted)
		require.NoError(t, err)
		ghost := runningOn("mailer", "ghost")

		x, err := in.Explain(ctx, alive, inspect.ExplainOptions{})
		require.NoError(t, err)
		require.Nil(t, x.Plan)
		require.Equal(t, inspect.Alive, x.Owner.Liveness)
		require.Contains(t, x.Summary, "alive")
		require.Contains(t, x.Summary, "A sweep leaves it alone.")

		x, err = in.Explain(ctx, restart, inspect.ExplainOptions{})
		require.NoError(t, err)
		require.Equal(t, inspect.Dead, x.Owner.Liveness)
		require.NotNil(t, x.Plan)
		require.Equal(t, recovery.ActionRestart, x.Plan.Action)
		require.Equal(t, recovery.SourceOwner, x.Plan.PolicySource)
		require.Equal(t, recovery.ReasonOwnerExpired, x.Plan.Reason)
		require.Equal(t, 2, x.AttemptsLeft)
		require.Contains(t, x.Summary, "restart it")
		t.Log(x.Summary)

		x, err = in.Explain(ctx, fail, inspect.ExplainOptions{})
		require.NoError(t, err)
		require.Equal(t, recovery.ActionFail, x.Plan.Action)
		require.Contains(t, x.Summary, "fail (orphaned) it")

		x, err = in.Explain(ctx, exhausted, inspect.ExplainOptions{})
		require.NoError(t, err)
		require.Equal(t, recovery.ActionSkip, x.Plan.Action)
		require.ErrorIs(t, x.Plan.Err, recovery.ErrExhausted)

		x, err = in.Explain(ctx, ghost, inspect.ExplainOptions{})
		require.NoError(t, err)
		require.Nil(t, x.Owner)
		require.Nil(t, x.Plan)
		require.Contains(t, x.Summary, "no journal activity for 2m0s")
		_, err = s.DB.Exec(`UPDATE revenant_episodes SET started_at = `+s.NowPlus(-time.Hour)+`, last_activity_at = `+s.NowPlus(-time.Hour)+` WHERE id = $1`, ghost)
		require.NoError(t, err)
		x, err = in.Explain(ctx, ghost, inspect.ExplainOptions{})
		require.NoError(t, err)
		require.NotNil(t, x.Plan)
		require.Equal(t, recovery.ReasonNoActivity, x.Plan.Reason)

		// The real sweep does what Explain said.
		_, err = recovery.Sweep(ctx, s.DB, nil)
		require.NoError(t, err)
		got, err := eps.Get(ctx, restart)
		require.NoError(t, err)
		require.Equal(t, episodes.StatusPending, got.Status, "restarted")
		got, err = eps.Get(ctx, fail)
		require.NoError(t, err)
		require.Equal(t, episodes.StatusFailed, got.Status)
		require.Equal(t, "orphaned", got.ErrorClass)
		got, err = eps.Get(ctx, alive)
		require.NoError(t, err)
		require.Equal(t, episodes.StatusRunning, got.Status, "left alone")

		// Pending: due, and who can claim it.
		x, err = in.Explain(ctx, restart, inspect.ExplainOptions{})
		require.NoError(t, err)
		require.Zero(t, x.DueIn)
		require.Equal(t, []string{"live-1"}, x.Claimers)
		require.Contains(t, x.Summary, "Pending and due; nodes live-1 can claim it.")

		later, err := eps.Create(ctx, episodes.CreateParams{ActorID: "mailer", Delay: time.Hour})
		require.NoError(t, err)
		x, err = in.Explain(ctx, later.Episode.ID, inspect.ExplainOptions{})
		require.NoError(t, err)
		require.Greater(t, x.DueIn, 59*time.Minute)
		require.Contains(t, x.Summary, "Pending, due in")

		typo, err := eps.Create(ctx, episodes.CreateParams{ActorID: "mialer"})
		require.NoError(t, err)
		x, err = in.Explain(ctx, typo.Episode.ID, inspect.ExplainOptions{})
		require.NoError(t, err)
		require.Empty(t, x.Claimers)
		require.Contains(t, x.Summary, `no live node in its scope`)

		bs, err := breakers.New(s.DB, nil)
		require.NoError(t, err)
		_, err = bs.Open(ctx, breakers.Key{ActorID: "mailer"}, "maintenance")
		require.NoError(t, err)
		x, err = in.Explain(ctx, restart, inspect.ExplainOptions{})
		require.NoError(t, err)
		require.Len(t, x.Breakers, 1)
		require.Contains(t, x.Summary, "breaker is open (maintenance)")

		x, err = in.Explain(ctx, fail, inspect.ExplainOptions{})
		require.NoError(t, err)
		require.Contains(t, x.Summary, "a dead letter")
	})
}
