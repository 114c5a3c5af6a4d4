package recovery_test

import (
	"context"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/internal/testdb"
	"github.com/revenant-go/revenant/recovery"
	"github.com/revenant-go/revenant/runner"
)

// killNode ends the session holding a node's advisory lock, as the death
// of its process does.
func killNode(t *testing.T, b *bundle, nodeID string) {
	t.Helper()
	var killed bool
	require.NoError(t, b.db.Get(&killed, `SELECT coalesce(bool_and(pg_terminate_backend(l.pid)), false)
FROM pg_locks l JOIN revenant_nodes n ON ((l.classid::bigint << 32) | l.objid::bigint) = n.lock_key
WHERE n.node_id = $1 AND l.locktype = 'advisory' AND l.granted AND l.objsubid = 1`, nodeID))
	require.True(t, killed, "node %s holds no lock", nodeID)
}

// waitWatched waits until some session waits on the node's lock: the
// survivor's watcher.
func waitWatched(t *testing.T, b *bundle, nodeID string) {
	t.Helper()
	waitLockWaiter(t, b.db, nodeID)
}

// waitLockWaiter waits until some session waits on node nodeID's session
// lock: a failure watcher watches it.
func waitLockWaiter(t testing.TB, db *sqlx.DB, nodeID string) {
	t.Helper()
	require.Eventually(t, func() bool {
		var waiting bool
		err := db.Get(&waiting, `SELECT EXISTS (SELECT 1
FROM pg_locks l JOIN revenant_nodes n ON ((l.classid::bigint << 32) | l.objid::bigint) = n.lock_key
WHERE n.node_id = $1 AND l.locktype = 'advisory' AND NOT l.granted AND l.objsubid = 1)`, nodeID)
		return err == nil && waiting
	}, 30*time.Second, 10*time.Millisecond, "the watcher never waited on node %s's lock", nodeID)
}

// watchedCluster starts a victim node owning a running episode and a
// survivor whose Sweeper neither polls nor sweeps periodically: only its
// watcher can notice the victim's death.
func watchedCluster(t *testing.T, watchDSN string, check time.Duration) (*bundle, *runner.Runner, *recovery.Sweeper, *episodes.Episode, *testdb.Logs) {
	t.Helper()
	b := setup(t, "postgres")
	ctx := context.Background()
	// Long heartbeats: the victim neither hands its episode back nor
	// notices its own death during the test.
	slow := &runner.Config{Name: "victim", HeartbeatInterval: time.Minute, NodeTTL: 5 * time.Minute}
	victim, err := runner.New(b.db, slow)
	require.NoError(t, err)
	require.NoError(t, victim.Start(ctx))
	t.Cleanup(func() { _ = victim.StopAndCancel(context.Background()) })
	ep := b.running(t, victim.NodeID(), episodes.CreateParams{})

	survivor, err := runner.New(b.db, &runner.Config{Name: "survivor", HeartbeatInterval: time.Minute, NodeTTL: 5 * time.Minute})
	require.NoError(t, err)
	require.NoError(t, survivor.Start(ctx))
	t.Cleanup(func() { _ = survivor.StopAndCancel(context.Background()) })
	logs, logger := testdb.NewLogs()
	sw, err := recovery.NewSweeper(b.db, &recovery.SweeperConfig{
		Options:              recovery.Options{Node: survivor, DefaultPolicy: recovery.Restart, Logger: logger},
		Interval:             time.Hour,
		FailureCheckInterval: check,
		WatchDSN:             watchDSN,
	})
	require.NoError(t, err)
	require.NoError(t, sw.Start(ctx))
	t.Cleanup(func() { _ = sw.Stop(context.Background()) })
	require.Eventually(t, func() bool { return sw.Stats().Passes >= 1 }, 20*time.Second, 10*time.Millisecond, "the first pass")
	return b, victim, sw, ep, logs
}

// The watcher waits on the victim's lock: its death is swept at once, with
// no poll and no periodic pass.
func TestWatcherSweepsWhenTheWatchedNodeDies(t *testing.T) {
	testdb.Require(t)
	t.Parallel()
	b, victim, sw, ep, _ := watchedCluster(t, testdb.URL(), -1)
	waitWatched(t, b, victim.NodeID())
	killNode(t, b, victim.NodeID())
	require.Eventually(t, func() bool { return b.get(t, ep.ID).Status == episodes.StatusPending }, 30*time.Second, 5*time.Millisecond,
		"only the watcher can have triggered this pass")
	require.Eventually(t, func() bool { return sw.Stats().Restarted == 1 }, 20*time.Second, 5*time.Millisecond)
}

// When the watcher's own connection is lost, the failure check polls as
// before, and a node's death is still swept.
func TestWatcherLostFallsBackToPolling(t *testing.T) {
	testdb.Require(t)
	t.Parallel()
	proxy := testdb.NewProxy(t)
	b, victim, _, ep, logs := watchedCluster(t, proxy.DSN(testdb.URL()), 50*time.Millisecond)
	waitWatched(t, b, victim.NodeID())
	proxy.Cut()
	require.Eventually(t, func() bool { return logs.Count("failure watcher's connection failed") >= 1 }, 30*time.Second, 10*time.Millisecond)
	killNode(t, b, victim.NodeID())
	require.Eventually(t, func() bool { return b.get(t, ep.ID).Status == episodes.StatusPending }, 20*time.Second, 10*time.Millisecond,
		"the poll took over")
}
