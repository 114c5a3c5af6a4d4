package recovery_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/internal/testdb"
	"github.com/revenant-go/revenant/recovery"
)

func TestSweeperRecoversAtOnceAndSurvivesFailingPasses(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		b := setup(t, driver)
		ctx := context.Background()
		sw, err := recovery.NewSweeper(b.db, &recovery.SweeperConfig{
			Options:              recovery.Options{Registry: registry{"mailer": recovery.Restart}},
			Interval:             time.Hour, // only the start-up pass and failure checks
			FailureCheckInterval: 50 * time.Millisecond,
		})
		require.NoError(t, err)
		for range 2 {
			_, err := b.store.Create(ctx, episodes.CreateParams{ActorID: "ghost"})
			require.NoError(t, err)
		}
		require.NoError(t, sw.Start(ctx))
		defer func() { _ = sw.Stop(context.Background()) }()
		require.Eventually(t, func() bool { return sw.Stats().Passes >= 1 }, 5*time.Second, 10*time.Millisecond)
		require.False(t, sw.Stats().LastSuccess.IsZero())
		require.Eventually(t, func() bool {
			u := sw.Stats().Unclaimable
			return len(u) == 1 && u[0] == recovery.Backlog{ActorID: "ghost", Pending: 2}
		}, 5*time.Second, 10*time.Millisecond, "pending work no node can run is reported")

		// A node dies owning an episode: the failure check triggers a pass.
		ep := b.running(t, b.deadNode(t, "", ""), episodes.CreateParams{})
		require.Eventually(t, func() bool { return b.get(t, ep.ID).Status == episodes.StatusPending }, 5*time.Second, 10*time.Millisecond)
		require.Eventually(t, func() bool { return sw.Stats().Restarted == 1 }, 5*time.Second, 10*time.Millisecond)

		// Break the database under the next pass: it fails, changes nothing,
		// and the next one succeeds once the database is back.
		ep2 := b.running(t, "someone", episodes.CreateParams{})
		_, err = b.db.Exec(`ALTER TABLE revenant_actor_definitions RENAME TO broken`)
		require.NoError(t, err)
		_, err = b.db.Exec(`UPDATE revenant_episodes SET owner_node = $2 WHERE id = $1`, ep2.ID, b.deadNode(t, "", ""))
		require.NoError(t, err)
		require.Eventually(t, func() bool { return sw.Stats().Failures >= 1 }, 5*time.Second, 10*time.Millisecond)
		require.Error(t, sw.Stats().LastError)
		require.Equal(t, episodes.StatusRunning, b.get(t, ep2.ID).Status)
		_, err = b.db.Exec(`ALTER TABLE broken RENAME TO revenant_actor_definitions`)
		require.NoError(t, err)
		require.Eventually(t, func() bool { return b.get(t, ep2.ID).Status == episodes.StatusPending }, 5*time.Second, 10*time.Millisecond)
		require.Eventually(t, func() bool { st := sw.Stats(); return st.Restarted == 2 && st.LastError == nil }, 5*time.Second, 10*time.Millisecond)
	})
}
