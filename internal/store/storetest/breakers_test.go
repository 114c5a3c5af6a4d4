package storetest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant/internal/dbx"
	"github.com/revenant-go/revenant/internal/store"
	"github.com/revenant-go/revenant/internal/testdb"
)

// The claim stays one statement whatever the breaker: it reads the breaker
// inside itself.
func TestClaimIsOneStatementWithOrWithoutABreaker(t *testing.T) {
	t.Parallel()
	f := setup(t, "postgres")
	s := f.schema
	db, statements := testdb.Counting(t, s.DSN, 1)
	ctx := context.Background()
	for range 4 {
		f.insert(t, store.EpisodeInsertParams{ActorID: "a"})
	}
	claim := func() (int, int64) {
		before := statements.Load()
		rows, err := f.st.EpisodeClaimMany(ctx, db, &store.ClaimManyParams{Node: "n", ActorID: "a", Limit: 1})
		require.NoError(t, err)
		return len(rows), statements.Load() - before
	}
	n, count := claim()
	require.Equal(t, 1, n)
	require.Equal(t, int64(1), count, "no breaker row")

	key := store.BreakerKey{ActorID: "a"}
	require.NoError(t, f.st.BreakerWrite(ctx, s.DB, &store.BreakerWriteParams{BreakerKey: key, State: store.BreakerClosed, Failures: 2, CoolDown: time.Second}))
	n, count = claim()
	require.Equal(t, 1, n)
	require.Equal(t, int64(1), count, "a closed breaker row")

	require.NoError(t, f.st.BreakerWrite(ctx, s.DB, &store.BreakerWriteParams{BreakerKey: key, State: store.BreakerOpen, CoolDown: time.Second, Changed: true}))
	n, count = claim()
	require.Zero(t, n, "an open breaker stops the claim")
	require.Equal(t, int64(1), count)
}

func TestBreakerProbeHasOneWinner(t *testing.T) {
	testdb.Each(t, testdb.Drivers, func(t *testing.T, driver string) {
		f := setup(t, driver)
		ctx := context.Background()
		key := store.BreakerKey{ActorID: "a", Stack: "web", Env: "prod"}
		past := int64(-1000)
		require.NoError(t, f.st.BreakerWrite(ctx, f.schema.DB, &store.BreakerWriteParams{BreakerKey: key, State: store.BreakerOpen,
			CoolDown: time.Minute, ReopenInMillis: &past, Changed: true}))
		var wins sync.WaitGroup
		won := make(chan bool, 8)
		for range 8 {
			wins.Add(1)
			go func() {
				defer wins.Done()
				err := dbx.InTx(ctx, f.schema.DB, func(tx *sqlx.Tx) error {
					ok, err := f.st.BreakerProbe(ctx, tx, key)
					won <- ok
					return err
				})
				if err != nil && !dbx.IsRetryable(err) {
					t.Errorf("probe: %v", err)
				}
			}()
		}
		wins.Wait()
		close(won)
		n := 0
		for ok := range won {
			if ok {
				n++
			}
		}
		require.Equal(t, 1, n, "one probe wins the half-open trial")
		b, err := f.st.BreakerGet(ctx, f.schema.DB, key)
		require.NoError(t, err)
		require.Equal(t, store.BreakerHalfOpen, b.State)
		require.True(t, b.ReopenAt.After(b.Now.Add(50*time.Second)), "the next probe waits a cool-down")

		// The probe's run is named on the breaker; while it runs under its
		// claim, no second probe starts, even once the cool-down is over.
		probe := f.insert(t, store.EpisodeInsertParams{ActorID: "a", SourceStack: "web", SourceEnv: "prod"})
		rows := f.claimMany(t, store.ClaimManyParams{Node: "n", ActorID: "a", Limit: 1, Probe: true,
			Scope: store.Scope{Stack: "web", Env: "prod"}})
		require.Len(t, rows, 1, "a probe claim passes a half-open breaker")
		require.NoError(t, f.st.BreakerProbeStarted(ctx, f.schema.DB, key, probe.ID, rows[0].Token))
		_, err = f.schema.DB.Exec(`UPDATE revenant_breakers SET reopen_at = changed_at WHERE actor_id = 'a'`)
		require.NoError(t, err)
		ok, err := f.st.BreakerProbe(ctx, f.schema.DB, key)
		require.NoError(t, err)
		require.False(t, ok, "the probe still runs")

		closed, err := f.st.BreakerSucceeded(ctx, f.schema.DB, key, uuid.New())
		require.NoError(t, err)
		require.False(t, closed, "another run's success does not close a half-open breaker")
		closed, err = f.st.BreakerSucceeded(ctx, f.schema.DB, key, probe.ID)
		require.NoError(t, err)
		require.True(t, closed, "the probe's success does")
		closed, err = f.st.BreakerSucceeded(ctx, f.schema.DB, key, probe.ID)
		require.NoError(t, err)
		require.False(t, closed, "closing a closed breaker changes nothing")
	})
}

func TestBreakerAfterFailure(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	p := &store.BreakerPolicy{ConsecutiveFailures: 3, WindowFailures: 5, Window: time.Minute, CoolDown: 30 * time.Second}
	b := &store.Breaker{BreakerKey: store.BreakerKey{ActorID: "a"}, State: store.BreakerClosed, Failures: 1, Now: now}
	w, changed := b.AfterFailure(p, uuid.Nil)
	require.False(t, changed)
	require.Equal(t, 2, w.Failures)
	require.Equal(t, 1, w.WindowFailures, "a window starts at the first failure")

	b.Failures = 2
	w, changed = b.AfterFailure(p, uuid.Nil)
	require.True(t, changed)
	require.Equal(t, store.BreakerOpen, w.State)
	require.Equal(t, int64(30_000), *w.ReopenInMillis)

	start := now.Add(-10 * time.Second)
	b = &store.Breaker{State: store.BreakerClosed, WindowStart: &start, WindowFailures: 4, Now: now}
	w, changed = b.AfterFailure(p, uuid.Nil)
	require.True(t, changed, "five failures within the window")
	require.Contains(t, w.Reason, "within 1m0s")

	old := now.Add(-2 * time.Minute)
	b = &store.Breaker{State: store.BreakerClosed, WindowStart: &old, WindowFailures: 4, Now: now}
	w, changed = b.AfterFailure(p, uuid.Nil)
	require.False(t, changed, "an old window starts over")
	require.Equal(t, 1, w.WindowFailures)

	probe := uuid.New()
	b = &store.Breaker{State: store.BreakerHalfOpen, Now: now, CoolDown: time.Second, ProbeEpisode: probe}
	_, changed = b.AfterFailure(p, uuid.New())
	require.False(t, changed, "another run's failure only counts")
	w, changed = b.AfterFailure(nil, probe)
	require.True(t, changed, "the probe's failure re-opens, even without a policy")
	require.Equal(t, store.BreakerOpen, w.State)
	require.Equal(t, uuid.Nil, w.ProbeEpisode)

	b = &store.Breaker{State: store.BreakerOpen, Manual: true, Failures: 9, Now: now}
	_, changed = b.AfterFailure(p, uuid.Nil)
	require.False(t, changed, "an operator's state holds")
}

// A node that a sweep marked stopped (found dead) claims nothing: each
// claim would be an orphan at once and cost the episode an attempt.
func TestStoppedNodeClaimsNothing(t *testing.T) {
	testdb.Each(t, testdb.Drivers, func(t *testing.T, driver string) {
		f := setup(t, driver)
		ctx := context.Background()
		f.insert(t, store.EpisodeInsertParams{ActorID: "a"})
		require.NoError(t, f.st.NodeRegister(ctx, f.schema.DB, &store.NodeRegisterParams{ID: "n-1", Name: "n", Actors: []string{"a"}, TTL: -time.Minute}))
		dead, err := f.st.NodeMarkDead(ctx, f.schema.DB)
		require.NoError(t, err)
		require.Len(t, dead, 1)
		require.Empty(t, f.claimMany(t, store.ClaimManyParams{Node: "n-1", ActorID: "a", Limit: 1}))
		require.Len(t, f.claimMany(t, store.ClaimManyParams{Node: "n-2", ActorID: "a", Limit: 1}), 1, "another node claims it")
	})
}
