package revenant_test

import (
	"context"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant"
	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/internal/testdb"
	"github.com/revenant-go/revenant/journal"
	"github.com/revenant-go/revenant/runner"
)

// idleTxBound is what this test holds an idle node to, in transactions
// per second sent through its pool.
const idleTxBound = 0.8

// An idle node running many episodes (1,000 here; REVENANT_IDLE_EPISODES
// for more) with default timings and LISTEN sends few transactions, and
// the number does not grow with its running episodes: its heartbeat (which
// also asks whether a node died), the periodic sweep and the rare outbox
// catch-up. Counted through the pool's driver over whole sweep periods
// adding up to at least a minute (REVENANT_IDLE_WINDOW), each BEGIN and
// each statement outside a transaction. (The LISTEN and watcher connections are outside the pool
// and send nothing while idle.)
func TestIdleNodeTransactions(t *testing.T) {
	testdb.Require(t)
	t.Parallel()
	running, window := 1000, time.Minute
	if v, err := strconv.Atoi(os.Getenv("REVENANT_IDLE_EPISODES")); err == nil && v > 0 {
		running = v
	}
	if v, err := time.ParseDuration(os.Getenv("REVENANT_IDLE_WINDOW")); err == nil && v > 0 {
		window = v
	}
	// A database of its own: NOTIFY channels are per database, and other
	// tests' events would wake this node's bus.
	dsn := testdb.Database(t)
	db, _, transactions := testdb.CountingTx(t, dsn, 20)
	ctx := context.Background()
	c, err := revenant.New(db, &revenant.Config{Name: "idle", ListenDSN: dsn})
	require.NoError(t, err)
	release := make(chan struct{})
	defer close(release)
	var started atomic.Int64
	require.NoError(t, c.Register(runner.Actor{ID: "wait", MaxConcurrent: running, Recovery: "restart",
		Run: func(ctx context.Context, _ *episodes.Episode, _ *journal.Journal) (any, error) {
			started.Add(1) // its journal is open: the run's start-up is over
			select {
			case <-release:
			case <-ctx.Done():
			}
			return nil, nil
		}}))
	require.NoError(t, c.Start(ctx))
	t.Cleanup(func() { _ = c.StopAndCancel(context.Background()) })
	ps := make([]episodes.CreateParams, running)
	for i := range ps {
		ps[i] = episodes.CreateParams{ActorID: "wait"}
	}
	_, err = c.EnqueueMany(ctx, ps)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return started.Load() == int64(running) }, 5*time.Minute, 50*time.Millisecond)

	// Count from the end of one sweep pass to the end of a later one, read
	// from the node's row on a connection outside the counted pool: whole
	// sweep periods (24-36 s each, with their timers), starting once the
	// start-up has settled into the first pass after it.
	watch, err := sqlx.Open("postgres", dsn)
	require.NoError(t, err)
	t.Cleanup(func() { _ = watch.Close() })
	lastSweep := func() time.Time {
		var at *time.Time
		_ = watch.Get(&at, `SELECT last_sweep_at FROM revenant_nodes WHERE node_id = $1`, c.NodeID())
		if at == nil {
			return time.Time{}
		}
		return *at
	}
	nextSweep := func(after time.Time) time.Time {
		var at time.Time
		require.Eventually(t, func() bool { at = lastSweep(); return at.After(after) }, 2*time.Minute, 100*time.Millisecond)
		return at
	}
	from := nextSweep(lastSweep())
	before := transactions.Load()
	to := from
	for to.Sub(from) < window {
		to = nextSweep(to)
	}
	perSecond := float64(transactions.Load()-before) / to.Sub(from).Seconds()
	t.Logf("idle node with %d running episodes: %.2f transactions/s through its pool over %s of whole sweep periods", running, perSecond, to.Sub(from).Round(time.Second))
	require.LessOrEqual(t, perSecond, idleTxBound)
}
