package metrics_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant"
	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/internal/store"
	"github.com/revenant-go/revenant/internal/store/backend"
	"github.com/revenant-go/revenant/internal/testdb"
	"github.com/revenant-go/revenant/journal"
	"github.com/revenant-go/revenant/metrics"
	"github.com/revenant-go/revenant/recovery"
	"github.com/revenant-go/revenant/runner"
)

// A node whose heartbeat lapsed while it owned running episodes is swept
// by a live node: one detection sample for the node (not one per
// episode), by rule owner_ttl_expired, measured from its last heartbeat.
func TestDetectionLatencyExpired(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		s := testdb.New(t, &testdb.Options{Driver: driver})
		ctx := context.Background()
		c := newClient(t, s.DB, revenant.Config{Name: "sweeper"})
		m, err := metrics.New(c, nil)
		require.NoError(t, err)
		t.Cleanup(m.Close)
		require.NoError(t, c.Start(ctx))
		srv := httptest.NewServer(m.Handler())
		t.Cleanup(srv.Close)

		// The dead node: its row's TTL ran out at once, and it owns two
		// running episodes of an actor no live node runs.
		st := backend.For(s.DB)
		require.NoError(t, st.NodeRegister(ctx, s.DB, &store.NodeRegisterParams{ID: "expired-1", Name: "expired",
			Actors: []string{"billing"}, TTL: -time.Millisecond}))
		eps, err := episodes.New(s.DB, nil)
		require.NoError(t, err)
		for range 2 {
			res, err := eps.Create(ctx, episodes.CreateParams{ActorID: "billing"})
			require.NoError(t, err)
			_, err = eps.Claim(ctx, res.Episode.ID, "expired-1")
			require.NoError(t, err)
		}

		f := eventually(t, srv.URL, "the death is sampled", func(f families) bool {
			return is(f, 1, "revenant_detection_latency_seconds", "rule", recovery.ReasonOwnerExpired) &&
				is(f, 2, "revenant_failures_total", "actor", "billing", "class", "orphaned") // no policy: Fail
		})
		h := f.histogram("revenant_detection_latency_seconds", "rule", recovery.ReasonOwnerExpired)
		t.Logf("detection latency: %.3f s", h.GetSampleSum())
		require.GreaterOrEqual(t, h.GetSampleSum(), 0.0)
		require.Less(t, h.GetSampleSum(), waitTimeout.Seconds(), "from its only heartbeat to the sweep")
		// Counters count delivered events; gauges come from a database read
		// a scrape may have started (or shared) before the sweep committed:
		// a scrape taken after the events may still show the node's
		// orphans. A later one must not.
		eventually(t, srv.URL, "a dead node whose orphans were recovered is left out", func(f families) bool {
			_, running := f.value("revenant_node_running_episodes", "node", "expired-1")
			return is(f, 1, "revenant_nodes", "liveness", "dead") && !running
		})
	})
}

// On Postgres a real process is killed while it runs an episode: its
// session lock vanishes, a live node's Sweeper restarts the orphan by the
// policy the victim published, and the death is sampled by rule
// owner_lock_released, within the heartbeat interval plus the sweep.
func TestDetectionLatencyKilledProcess(t *testing.T) {
	t.Parallel()
	s := testdb.New(t, nil)
	ctx := context.Background()
	c := newClient(t, s.DB, revenant.Config{Name: "survivor"})
	m, err := metrics.New(c, nil)
	require.NoError(t, err)
	t.Cleanup(m.Close)
	require.NoError(t, c.Start(ctx))
	srv := httptest.NewServer(m.Handler())
	t.Cleanup(srv.Close)

	victim := runVictim(t, s.DSN)

	f := eventually(t, srv.URL, "the kill is sampled", func(f families) bool {
		return is(f, 1, "revenant_detection_latency_seconds", "rule", recovery.ReasonOwnerLockGone) &&
			is(f, 1, "revenant_restarts_total", "actor", "victim", "reason", recovery.ReasonOwnerLockGone) &&
			// Gauges come from a database read a scrape may share with one
			// started just before: wait for one that saw the restart.
			is(f, 1, "revenant_episodes", "actor", "victim", "state", "due")
	})
	h := f.histogram("revenant_detection_latency_seconds", "rule", recovery.ReasonOwnerLockGone)
	t.Logf("detection latency: %.3f s", h.GetSampleSum())
	require.GreaterOrEqual(t, h.GetSampleSum(), 0.0)
	require.Less(t, h.GetSampleSum(), 20.0, "a lock loss is seen at once, plus a heartbeat interval")
	require.True(t, is(f, 1, "revenant_claims_total", "actor", "victim"), "the victim's claim, seen on the bus")
	require.True(t, is(f, 1, "revenant_episodes", "actor", "victim", "state", "due"), "restarted, and nobody else runs it")
	require.True(t, is(f, 1, "revenant_unclaimable", "actor", "victim"))
	nodes, err := c.Inspect().Nodes(ctx)
	require.NoError(t, err)
	for _, n := range nodes {
		if n.ID == victim {
			require.Equal(t, recovery.ReasonOwnerLockGone, n.DeadBy)
		}
	}
}

// The victim: a real process that runs one episode until SIGKILL.

const childEnv = "REVENANT_METRICS_TEST_CHILD"

func runChild(dsn string) {
	if err := victimMain(dsn); err != nil {
		fmt.Fprintln(os.Stderr, "victim:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func victimMain(dsn string) error {
	ctx := context.Background()
	db, err := sqlx.Open("postgres", dsn)
	if err != nil {
		return err
	}
	c, err := revenant.New(db, fast(revenant.Config{Name: "victim"}))
	if err != nil {
		return err
	}
	started := make(chan struct{}, 1)
	hang := func(ctx context.Context, _ *episodes.Episode, _ *journal.Journal) (any, error) {
		started <- struct{}{}
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if err := c.Register(runner.Actor{ID: "victim", Run: hang, Recovery: recovery.Restart}); err != nil {
		return err
	}
	if err := c.Start(ctx); err != nil {
		return err
	}
	if _, err := c.Enqueue(ctx, episodes.CreateParams{ActorID: "victim"}); err != nil {
		return err
	}
	<-started
	fmt.Println("ready", c.NodeID())
	select {} // until SIGKILL
}

// runVictim starts the victim, waits until its episode runs, kills it with
// SIGKILL and returns its node id.
func runVictim(t *testing.T, dsn string) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+dsn)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	deadline := time.AfterFunc(60*time.Second, func() { _ = cmd.Process.Kill() })
	defer deadline.Stop()
	var node string
	lines := bufio.NewScanner(out)
	for lines.Scan() {
		if _, err := fmt.Sscanf(lines.Text(), "ready %s", &node); err == nil {
			break
		}
	}
	require.NotEmpty(t, node, "the victim did not get its episode running")
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	_ = cmd.Wait()
	return node
}
