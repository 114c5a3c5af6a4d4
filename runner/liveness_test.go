package runner_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/internal/testdb"
	"github.com/revenant-go/revenant/journal"
	"github.com/revenant-go/revenant/runner"
)

// Liveness is one statement per interval per node, whatever the number of
// running episodes: the heartbeat renews the node row and checks every run's
// lease in the same statement.
func TestLivenessIsOneStatementPerIntervalWith10000RunningEpisodes(t *testing.T) {
	t.Parallel()
	s := testdb.New(t, nil)
	const running = 10_000
	_, err := s.DB.Exec(`INSERT INTO revenant_episodes (id, actor_id) SELECT gen_random_uuid(), 'parked' FROM generate_series(1, $1)`, running)
	require.NoError(t, err)

	db, statements := testdb.Counting(t, s.DSN, 10)

	const interval = 200 * time.Millisecond
	release := make(chan struct{})
	var entered atomic.Int32
	r, err := runner.New(db, &runner.Config{Name: "big", HeartbeatInterval: interval, NodeTTL: 2 * time.Second, PollInterval: interval})
	require.NoError(t, err)
	require.NoError(t, r.Register(runner.Actor{ID: "parked", MaxConcurrent: running,
		Run: func(ctx context.Context, ep *episodes.Episode, j *journal.Journal) (any, error) {
			entered.Add(1)
			select {
			case <-release:
			case <-ctx.Done():
			}
			return nil, nil
		}}))
	require.NoError(t, r.Start(context.Background()))
	t.Cleanup(func() { close(release); _ = r.StopAndCancel(context.Background()) })
	// Every run has opened its journal and is parked.
	require.Eventually(t, func() bool { return entered.Load() == running }, 90*time.Second, 50*time.Millisecond)

	var before time.Time
	require.NoError(t, s.DB.Get(&before, `SELECT heartbeat_at FROM revenant_nodes WHERE node_id = $1`, r.NodeID()))
	statements.Store(0)
	start := time.Now()

	// Watch at least 10 intervals, and until a heartbeat has run: under
	// load one heartbeat checking 10,000 leases can take longer than the
	// whole window.
	const intervals = 10
	require.Eventually(t, func() bool { return time.Since(start) >= intervals*interval && statements.Load() >= 1 },
		2*time.Minute, 20*time.Millisecond, "the heartbeat did run")
	n, elapsed := statements.Load(), time.Since(start)
	hbStart := time.Now()
	require.NoError(t, r.Heartbeat(context.Background()))
	t.Logf("one heartbeat checking %d leases took %s", running, time.Since(hbStart))

	t.Logf("%d statements in %s (%d heartbeat intervals) with %d running episodes", n, elapsed, elapsed/interval, running)
	// The window can hold one tick more than it spans, and a tick delayed
	// under load can land next to the following one.
	require.LessOrEqual(t, n, int64(elapsed/interval)+2, "one statement per interval (claim polls are skipped while every slot is busy)")
	var after time.Time
	require.NoError(t, s.DB.Get(&after, `SELECT heartbeat_at FROM revenant_nodes WHERE node_id = $1`, r.NodeID()))
	require.True(t, after.After(before), "liveness was renewed")
	var stillRunning int
	require.NoError(t, s.DB.Get(&stillRunning, `SELECT count(*) FROM revenant_episodes WHERE status = 'running' AND owner_node = $1`, r.NodeID()))
	require.Equal(t, running, stillRunning, "no lease was wrongly judged lost")
}
