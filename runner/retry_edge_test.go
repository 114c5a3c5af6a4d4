package runner_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant/bus"
	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/internal/testdb"
	"github.com/revenant-go/revenant/journal"
	"github.com/revenant-go/revenant/runner"
)

// heldBus holds the publication of episode.retrying until release closes:
// the failed attempt's run is still winding down when its retry, already
// committed, is claimed again on the same node.
type heldBus struct{ release chan struct{} }

func (b heldBus) Publish(_ context.Context, evs ...bus.Event) error {
	for _, e := range evs {
		if e.Type == bus.EpisodeRetrying {
			select {
			case <-b.release:
			case <-time.After(30 * time.Second):
			}
		}
	}
	return nil
}

func (heldBus) PublishTx(context.Context, bus.Executor, ...bus.Event) error { return nil }

// heartbeatAt reads a node's last heartbeat (no require: it runs inside an
// actor, off the test's goroutine).
func heartbeatAt(s *testdb.Schema, node string) (time.Time, error) {
	var at time.Time
	err := s.DB.Get(&at, `SELECT heartbeat_at FROM revenant_nodes WHERE node_id = $1`, node)
	return at, err
}

// A retry claimed on the node whose failed attempt is still winding down
// runs once: the old run's end must not untrack the new one (the heartbeat
// would then hand it back and it would run a third time).
func TestRetryClaimedWhileTheFailedRunWindsDownRunsOnce(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		s := testdb.New(t, &testdb.Options{Driver: driver})
		logs, logger := testdb.NewLogs()
		release := make(chan struct{})
		cfg := fastConfig(s, "a")
		cfg.Bus, cfg.Logger = heldBus{release: release}, logger
		var runs atomic.Int32
		var releaseOnce sync.Once
		var r *runner.Runner
		r = start(t, s, cfg, runner.Actor{
			ID: "x", MaxAttempts: 5, Retry: &episodes.RetryPolicy{Backoff: func(int) time.Duration { return 0 }},
			Run: func(ctx context.Context, ep *episodes.Episode, j *journal.Journal) (any, error) {
				if runs.Add(1) == 1 {
					return nil, errors.New("boom")
				}
				// The first run is still publishing; let it end, then give
				// the heartbeat three beats to (wrongly) hand this run back.
				releaseOnce.Do(func() { close(release) })
				node := r.NodeID()
				last, err := heartbeatAt(s, node)
				tick := time.NewTicker(5 * time.Millisecond) // checks the condition; no fixed wait
				defer tick.Stop()
				for beats := 0; beats < 3 && err == nil; {
					select {
					case <-ctx.Done():
						return nil, ctx.Err()
					case <-tick.C:
					}
					var now time.Time
					if now, err = heartbeatAt(s, node); err == nil && !now.Equal(last) {
						last, beats = now, beats+1
					}
				}
				if err != nil {
					return nil, err
				}
				if r.Running() != 1 {
					return nil, fmt.Errorf("the retry's run is no longer tracked (running %d)", r.Running())
				}
				return "ok", ctx.Err()
			},
		})
		res, err := r.Enqueue(context.Background(), episodes.CreateParams{ActorID: "x"})
		require.NoError(t, err)
		var ep *episodes.Episode
		require.Eventually(t, func() bool {
			ep, err = r.Store().Get(context.Background(), res.Episode.ID)
			require.NoError(t, err)
			return ep.Status == episodes.StatusDone
		}, time.Minute, 10*time.Millisecond, "never done: runs %d, episode %+v\n%s", runs.Load(), ep, logs.String())
		require.Equal(t, 2, ep.Attempts, logs.String())
		require.Equal(t, int32(2), runs.Load())
		require.Zero(t, logs.Count("not running"), "no hand-back of a tracked run")
	})
}

// A breaker's probe that claims an unreadable row fails that row (it
// stands) instead of rolling back and trying again every few
// milliseconds; the next probe runs the good episode and closes the
// breaker.
func TestProbeOverAnUnreadableRowMovesOn(t *testing.T) {
	testdb.Each(t, []string{testdb.SQLite}, func(t *testing.T, driver string) {
		s := testdb.New(t, &testdb.Options{Driver: driver})
		st, err := episodes.New(s.DB, nil)
		require.NoError(t, err)
		ctx := context.Background()
		var ids []uuid.UUID
		for range 2 {
			res, err := st.Create(ctx, episodes.CreateParams{ActorID: "a"})
			require.NoError(t, err)
			ids = append(ids, res.Episode.ID)
		}
		_, err = s.DB.Exec(`UPDATE revenant_episodes SET cancel_requested_at = 'not a time' WHERE id = $1`, ids[0])
		require.NoError(t, err)
		_, err = s.DB.Exec(`INSERT INTO revenant_breakers (actor_id, state, cool_down_ms, reopen_at) VALUES ('a', 'open', 100, '2000-01-01 00:00:00.000')`)
		require.NoError(t, err)
		logs, logger := testdb.NewLogs()
		cfg := fastConfig(s, "n")
		cfg.Logger = logger
		r := start(t, s, cfg, doneActor("a", nil))
		waitStatus(t, r, ids[1], episodes.StatusDone)
		status, class := rawStatus(t, s.DB, ids[0])
		require.Equal(t, "failed", status)
		require.Equal(t, "corrupt_row", class)
		require.Equal(t, 1, logs.Count("cannot be read"), "the unreadable row is claimed and failed once")
	})
}
