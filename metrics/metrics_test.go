package metrics_test

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant"
	"github.com/revenant-go/revenant/breakers"
	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/internal/testdb"
	"github.com/revenant-go/revenant/journal"
	"github.com/revenant-go/revenant/metrics"
	"github.com/revenant-go/revenant/runner"
)

// work completes, fails for good ("fail", class boom) or fails its first
// attempt only ("retry", class flaky), by its input.
func work(_ context.Context, ep *episodes.Episode, _ *journal.Journal) (any, error) {
	var in string
	if err := json.Unmarshal(ep.Input, &in); err != nil {
		return nil, err
	}
	switch {
	case in == "fail":
		return nil, classErr("boom")
	case in == "retry" && ep.Attempts <= 1:
		return nil, classErr("flaky")
	}
	return "ok", nil
}

// A known scenario shows in a scrape that parses, with the right values:
// three episodes complete, one fails, one retries once and completes; then
// an operator opens the actor's breaker and requeues the failed one, which
// waits, due, behind the breaker.
func TestScenario(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		s := testdb.New(t, &testdb.Options{Driver: driver})
		ctx := context.Background()
		c := newClient(t, s.DB, revenant.Config{Name: "scenario"})
		require.NoError(t, c.Register(runner.Actor{ID: "work", Run: work, Retry: &episodes.RetryPolicy{
			NoRetry: []string{"boom"},
			Backoff: func(int) time.Duration { return 10 * time.Millisecond },
		}}))
		m, err := metrics.New(c, nil)
		require.NoError(t, err)
		t.Cleanup(m.Close)
		require.NoError(t, c.Start(ctx))
		srv := httptest.NewServer(m.Handler())
		t.Cleanup(srv.Close)

		var failed episodes.CreateResult
		for _, in := range []string{"ok", "ok", "ok", "fail", "retry"} {
			res, err := c.Enqueue(ctx, episodes.CreateParams{ActorID: "work", Input: in})
			require.NoError(t, err)
			if in == "fail" {
				failed = *res
			}
		}

		f := eventually(t, srv.URL, "the runs are counted", func(f families) bool {
			return is(f, 4, "revenant_completions_total", "actor", "work") &&
				is(f, 1, "revenant_failures_total", "actor", "work", "class", "boom") &&
				is(f, 1, "revenant_retries_total", "actor", "work", "class", "flaky") &&
				is(f, 6, "revenant_claims_total", "actor", "work") && // the retried one twice
				is(f, 1, "revenant_episodes", "actor", "work", "state", "failed") &&
				// Gauges come from a database read that a scrape may share
				// with one started just before: wait for one that saw the end.
				is(f, 0, "revenant_episodes", "actor", "work", "stack", "", "env", "", "state", "running") &&
				is(f, 0, "revenant_episodes", "actor", "work", "stack", "", "env", "", "state", "due") &&
				is(f, 0, "revenant_episodes", "actor", "work", "stack", "", "env", "", "state", "scheduled")
		})
		for _, state := range []string{"due", "scheduled", "running", "blocked"} {
			require.True(t, is(f, 0, "revenant_episodes", "actor", "work", "stack", "", "env", "", "state", state), state)
		}
		require.True(t, is(f, 0, "revenant_oldest_due_wait_seconds", "actor", "work"))
		require.True(t, is(f, 0, "revenant_unclaimable", "actor", "work"), "this node claims it")
		require.True(t, is(f, 1, "revenant_database_up"))
		require.True(t, is(f, 0, "revenant_scrape_errors_total"))
		require.True(t, is(f, 1, "revenant_nodes", "liveness", "alive"))
		require.True(t, is(f, 0, "revenant_nodes", "liveness", "dead"))
		require.True(t, is(f, 0, "revenant_node_running_episodes", "node", c.NodeID(), "liveness", "alive"))
		sweeps, ok := f.value("revenant_sweeps_total")
		require.True(t, ok)
		require.GreaterOrEqual(t, sweeps, 1.0, "the startup sweep at least")
		require.True(t, is(f, 0, "revenant_sweep_failures_total"))
		last, ok := f.value("revenant_last_sweep_success_timestamp_seconds")
		require.True(t, ok)
		require.InDelta(t, float64(time.Now().Unix()), last, 60)
		_, ok = f.value("revenant_last_sweep_duration_seconds")
		require.True(t, ok)
		_, ok = f.value("go_goroutines")
		require.True(t, ok, "the Go collector is served too")
		_, ok = f.value("process_cpu_seconds_total")
		require.True(t, ok, "the process collector is served too")
		_, ok = f.value("revenant_breaker_state", "actor", "work")
		require.False(t, ok, "a breaker that never counted a failure has no row")

		_, err = c.Breakers().Open(ctx, breakers.Key{ActorID: "work"}, "maintenance")
		require.NoError(t, err)
		_, err = c.Requeue(ctx, failed.Episode.ID, episodes.RequeueOptions{Reason: "fixed"})
		require.NoError(t, err)
		f = eventually(t, srv.URL, "the breaker and the requeue are counted", func(f families) bool {
			return is(f, 1, "revenant_breaker_transitions_total", "actor", "work", "state", "open") &&
				is(f, 2, "revenant_breaker_state", "actor", "work", "stack", "", "env", "") &&
				is(f, 1, "revenant_requeues_total", "actor", "work") &&
				is(f, 1, "revenant_episodes", "actor", "work", "state", "due")
		})
		require.True(t, is(f, 0, "revenant_episodes", "actor", "work", "state", "failed"))
		require.True(t, is(f, 4, "revenant_completions_total", "actor", "work"), "the breaker holds the requeued one back")
		require.True(t, is(f, 0, "revenant_unclaimable", "actor", "work"), "a breaker is not a missing claimer")
	})
}

// Work that no live node can claim is flagged unclaimable, with its wait.
func TestUnclaimable(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		s := testdb.New(t, &testdb.Options{Driver: driver})
		ctx := context.Background()
		// An admin handle: never started, it registers no node.
		c, err := revenant.New(s.DB, &revenant.Config{Name: "admin", SkipMigrate: true})
		require.NoError(t, err)
		m, err := metrics.New(c, &metrics.Config{Namespace: "rvt"})
		require.NoError(t, err)
		t.Cleanup(m.Close)
		srv := httptest.NewServer(m.Handler())
		t.Cleanup(srv.Close)
		_, err = c.Enqueue(ctx, episodes.CreateParams{ActorID: "nobody", SourceStack: "shop", SourceEnv: "prod"})
		require.NoError(t, err)

		f := scrape(t, srv.URL)
		require.True(t, is(f, 1, "rvt_unclaimable", "actor", "nobody", "stack", "shop", "env", "prod"))
		require.True(t, is(f, 1, "rvt_episodes", "actor", "nobody", "stack", "shop", "env", "prod", "state", "due"))
		wait, ok := f.value("rvt_oldest_due_wait_seconds", "actor", "nobody")
		require.True(t, ok)
		require.GreaterOrEqual(t, wait, 0.0)
		require.True(t, is(f, 0, "rvt_nodes", "liveness", "alive"))
		require.True(t, is(f, 0, "rvt_sweeps_total"), "an unstarted client has no Sweeper")
		_, ok = f.value("rvt_last_sweep_success_timestamp_seconds")
		require.False(t, ok, "absent until a pass succeeds")
		_, ok = f.value("revenant_database_up")
		require.False(t, ok, "the namespace applies to every metric")
	})
}

// A bad Config says what to fix; nil is valid.
func TestConfigValidate(t *testing.T) {
	t.Parallel()
	s := testdb.New(t, &testdb.Options{Driver: testdb.SQLite})
	c, err := revenant.New(s.DB, &revenant.Config{SkipMigrate: true})
	require.NoError(t, err)
	for name, tc := range map[string]struct {
		cfg  metrics.Config
		want string
	}{
		"namespace": {metrics.Config{Namespace: "9lives"}, "Namespace"},
		"timeout":   {metrics.Config{ScrapeTimeout: -time.Second}, "ScrapeTimeout"},
		"dedupe":    {metrics.Config{DedupeSize: -1}, "DedupeSize"},
		"queue":     {metrics.Config{LookupQueue: -1}, "LookupQueue"},
		"buckets":   {metrics.Config{DetectionBuckets: []float64{1, 1}}, "DetectionBuckets must increase"},
		"empty":     {metrics.Config{DetectionBuckets: []float64{}}, "DetectionBuckets is empty"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := metrics.New(c, &tc.cfg)
			require.ErrorContains(t, err, tc.want)
		})
	}
	m, err := metrics.New(c, nil)
	require.NoError(t, err)
	m.Close()
	m.Close() // idempotent
	_, err = metrics.New(nil, nil)
	require.Error(t, err)
}
