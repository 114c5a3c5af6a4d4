package revenant_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant"
	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/internal/testdb"
	"github.com/revenant-go/revenant/recovery"
	"github.com/revenant-go/revenant/runner"
)

// EnqueueMany's episodes are claimed and run like Enqueue's; an unknown
// actor is flagged per element, and StrictActors refuses the whole batch.
func TestEnqueueManyRunsEverything(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		s := testdb.New(t, &testdb.Options{Driver: driver})
		ctx := context.Background()
		// A TTL a loaded machine's late heartbeat does not lapse, and a
		// restart policy: this test is about EnqueueMany, not failover.
		cfg := fast(revenant.Config{Name: "bulk"})
		cfg.NodeTTL = 10 * time.Second
		c, err := revenant.New(s.DB, cfg)
		require.NoError(t, err)
		t.Cleanup(func() { _ = c.StopAndCancel(context.Background()) })
		require.NoError(t, c.Register(runner.Actor{ID: "mailer", Run: noop, Recovery: recovery.Restart}))
		require.NoError(t, c.Start(ctx))

		ps := make([]episodes.CreateParams, 200)
		for i := range ps {
			ps[i] = episodes.CreateParams{ActorID: "mailer", Input: i}
		}
		ps = append(ps, episodes.CreateParams{ActorID: "mialer"})
		res, err := c.EnqueueMany(ctx, ps)
		require.NoError(t, err)
		require.Len(t, res, len(ps))
		require.False(t, res[0].UnknownActor)
		require.True(t, res[len(res)-1].UnknownActor, "a typo is flagged")
		waitFor(t, "all 200 done", func() bool {
			for _, r := range res[:200] {
				if status(t, s.DB, r.Episode.ID) != episodes.StatusDone {
					return false
				}
			}
			return true
		})

		strict := newClient(t, s.DB, revenant.Config{Name: "strict", StrictActors: true})
		_, err = strict.EnqueueMany(ctx, []episodes.CreateParams{{ActorID: "mailer"}, {ActorID: "nobody"}})
		require.ErrorIs(t, err, revenant.ErrUnknownActor)
	})
}
