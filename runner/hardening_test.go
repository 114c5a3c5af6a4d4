package runner_test

import (
	"context"
	"errors"
	"math"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant"
	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/internal/testdb"
	"github.com/revenant-go/revenant/journal"
	"github.com/revenant-go/revenant/migrations"
	"github.com/revenant-go/revenant/recovery"
	"github.com/revenant-go/revenant/runner"
)

func doneActor(id string, runs *atomic.Int32) runner.Actor {
	return runner.Actor{ID: id, Run: func(ctx context.Context, ep *episodes.Episode, j *journal.Journal) (any, error) {
		if runs != nil {
			runs.Add(1)
		}
		return journal.Step(ctx, j, "only", func(context.Context) (string, error) { return "ok", nil })
	}}
}

func rawStatus(t *testing.T, db *sqlx.DB, id uuid.UUID) (status, class string) {
	t.Helper()
	var c *string
	require.NoError(t, db.QueryRowx(`SELECT status, error_class FROM revenant_episodes WHERE id = $1`, id).Scan(&status, &c))
	if c != nil {
		class = *c
	}
	return status, class
}

// Postgres down at boot: Start fails, holds nothing, Stop returns at once,
// and a later Start succeeds.
func TestFailedStartHoldsNothingAndCanBeRetried(t *testing.T) {
	t.Parallel()
	s := testdb.New(t, nil)
	proxy := testdb.NewProxy(t)
	db, err := sqlx.Open("postgres", proxy.DSN(s.DSN))
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	db.SetMaxOpenConns(4)

	proxy.Cut()
	cfg := &runner.Config{Name: "boot", HeartbeatInterval: 100 * time.Millisecond, NodeTTL: time.Second, PollInterval: 50 * time.Millisecond}
	r, err := runner.New(db, cfg)
	require.NoError(t, err)
	require.NoError(t, r.Register(doneActor("a", nil)))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = r.Start(ctx)
	require.Error(t, err)
	require.True(t, revenant.IsRetryable(err), "connection refused is retryable: %v", err)
	began := time.Now()
	require.NoError(t, r.StopAndCancel(ctx), "Stop after a failed Start does nothing")
	require.Less(t, time.Since(began), time.Second)
	require.Zero(t, db.Stats().InUse, "a failed Start holds no connection")

	proxy.Restore()
	require.NoError(t, r.Start(ctx))
	t.Cleanup(func() { _ = r.StopAndCancel(context.Background()) })
	res, err := r.Enqueue(ctx, episodes.CreateParams{ActorID: "a"})
	require.NoError(t, err)
	waitStatus(t, r, res.Episode.ID, episodes.StatusDone)
}

// An unmigrated database fails Start with what to do; after migrating,
// the same runner starts.
func TestStartOnUnmigratedDatabase(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		s := testdb.New(t, &testdb.Options{Driver: driver, NoMigrate: true})
		r, err := runner.New(s.DB, fastConfig(s, "m"))
		require.NoError(t, err)
		require.NoError(t, r.Register(doneActor("a", nil)))
		ctx := context.Background()
		err = r.Start(ctx)
		require.ErrorIs(t, err, revenant.ErrNotMigrated)
		require.Contains(t, err.Error(), "migrations.Migrate")
		require.NoError(t, r.StopAndCancel(ctx), "Stop after a failed Start does nothing")
		require.Zero(t, s.DB.Stats().InUse)
		_, err = migrations.Migrate(ctx, s.DB)
		require.NoError(t, err)
		require.NoError(t, r.Start(ctx))
		require.NoError(t, r.StopAndCancel(ctx))
	})
}

// A claimed row that cannot be read is failed as corrupt_row; the rest of
// the batch runs, and nothing stays running under the live node.
func TestUnreadableClaimedRowIsFailedNotStranded(t *testing.T) {
	testdb.Each(t, testdb.Drivers, func(t *testing.T, driver string) {
		s := testdb.New(t, &testdb.Options{Driver: driver, MaxOpenConns: 16})
		store, err := episodes.New(s.DB, nil)
		require.NoError(t, err)
		ctx := context.Background()
		var ids []uuid.UUID
		for range 3 {
			res, err := store.Create(ctx, episodes.CreateParams{ActorID: "a"})
			require.NoError(t, err)
			ids = append(ids, res.Episode.ID)
		}
		corrupt := `UPDATE revenant_episodes SET cancel_requested_at = 'infinity' WHERE id = $1`
		if s.IsSQLite() {
			corrupt = `UPDATE revenant_episodes SET cancel_requested_at = 'not a time' WHERE id = $1`
		}
		_, err = s.DB.Exec(corrupt, ids[1])
		require.NoError(t, err)

		r := start(t, s, fastConfig(s, "n"), doneActor("a", nil))
		waitStatus(t, r, ids[0], episodes.StatusDone)
		waitStatus(t, r, ids[2], episodes.StatusDone)
		require.Eventually(t, func() bool {
			st, class := rawStatus(t, s.DB, ids[1])
			return st == "failed" && class == "corrupt_row"
		}, 10*time.Second, 20*time.Millisecond)
	})
}

// A finishing write that fails for good (not a transient error) leaves the
// episode running under a live node: the heartbeat finds it untracked and
// hands it back, and the next run completes it from the journal.
func TestFailedFinishingWriteIsHandedBack(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		s := testdb.New(t, &testdb.Options{Driver: driver, MaxOpenConns: 16})
		// The first claim's completion fails; later claims have a new token.
		trigger := []string{`CREATE FUNCTION fail_first_finish() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF NEW.status = 'done' AND NEW.claim_token = 1 THEN
		RAISE EXCEPTION 'injected finishing failure';
	END IF;
	RETURN NEW;
END $$`, `CREATE TRIGGER fail_first_finish BEFORE UPDATE ON revenant_episodes FOR EACH ROW EXECUTE FUNCTION fail_first_finish()`}
		if s.IsSQLite() {
			trigger = []string{`CREATE TRIGGER fail_first_finish BEFORE UPDATE ON revenant_episodes
WHEN NEW.status = 'done' AND NEW.claim_token = 1
BEGIN SELECT RAISE(ABORT, 'injected finishing failure'); END`}
		}
		for _, q := range trigger {
			_, err := s.DB.Exec(q)
			require.NoError(t, err)
		}
		var runs, effects atomic.Int32
		r := start(t, s, fastConfig(s, "n"), runner.Actor{ID: "a", Run: func(ctx context.Context, ep *episodes.Episode, j *journal.Journal) (any, error) {
			runs.Add(1)
			return journal.Step(ctx, j, "effect", func(context.Context) (int, error) { return int(effects.Add(1)), nil })
		}})
		res, err := r.Enqueue(context.Background(), episodes.CreateParams{ActorID: "a"})
		require.NoError(t, err)
		ep := waitStatus(t, r, res.Episode.ID, episodes.StatusDone)
		require.Equal(t, int32(2), runs.Load(), "run, handed back, run again")
		require.Equal(t, int32(1), effects.Load(), "the step replayed from the journal")
		require.JSONEq(t, `1`, string(ep.Result))
	})
}

// Any role that can connect may NOTIFY the control channel; the runner
// acts on what the episode's row says, not on the notification.
func TestForgedCancelNotificationIsIgnored(t *testing.T) {
	t.Parallel()
	s := testdb.New(t, nil)
	logs, logger := testdb.NewLogs()
	cfg := fastConfig(s, "n")
	cfg.Logger = logger
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	var canceled atomic.Bool
	r := start(t, s, cfg, runner.Actor{ID: "a", Run: func(ctx context.Context, ep *episodes.Episode, j *journal.Journal) (any, error) {
		started <- struct{}{}
		select {
		case <-release:
			return "finished", nil
		case <-ctx.Done():
			canceled.Store(true)
			return nil, ctx.Err()
		}
	}})
	res, err := r.Enqueue(context.Background(), episodes.CreateParams{ActorID: "a"})
	require.NoError(t, err)
	<-started
	_, err = s.DB.Exec(`SELECT pg_notify('revenant_control', $1)`, "cancel:"+res.Episode.ID.String())
	require.NoError(t, err)
	require.Eventually(t, func() bool { return logs.Count("ignored a cancel notification") == 1 }, 10*time.Second, 10*time.Millisecond)
	close(release)
	waitStatus(t, r, res.Episode.ID, episodes.StatusDone)
	require.False(t, canceled.Load())
}

// A pending episode whose counters cannot be bumped does not block the
// other claims of its actor.
func TestExhaustedCountersDoNotBlockClaims(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		s := testdb.New(t, &testdb.Options{Driver: driver})
		store, err := episodes.New(s.DB, nil)
		require.NoError(t, err)
		ctx := context.Background()
		var ids []uuid.UUID
		for range 3 {
			res, err := store.Create(ctx, episodes.CreateParams{ActorID: "a"})
			require.NoError(t, err)
			ids = append(ids, res.Episode.ID)
		}
		_, err = s.DB.Exec(`UPDATE revenant_episodes SET claim_token = 9223372036854775807 WHERE id = $1`, ids[0])
		require.NoError(t, err)
		_, err = s.DB.Exec(`UPDATE revenant_episodes SET attempts = 2147483647 WHERE id = $1`, ids[1])
		require.NoError(t, err)
		r := start(t, s, fastConfig(s, "n"), doneActor("a", nil))
		waitStatus(t, r, ids[2], episodes.StatusDone)
		require.Equal(t, episodes.StatusPending, status(t, r, ids[0]))
		require.Equal(t, episodes.StatusPending, status(t, r, ids[1]))
	})
}

// Settings that would break the database or spin a loop are refused.
func TestConfigRangesAndText(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		s := testdb.New(t, &testdb.Options{Driver: driver})
		for name, cfg := range map[string]runner.Config{
			"nanosecond heartbeat": {HeartbeatInterval: 3 * time.Nanosecond, NodeTTL: time.Second},
			"nanosecond poll":      {PollInterval: 5},
			"TTL over 24.8 days":   {NodeTTL: 25 * 24 * time.Hour},
			"negative shutdown":    {ShutdownTimeout: -time.Second},
			"NUL in name":          {Name: "a\x00"},
			"long name":            {Name: strings.Repeat("n", revenant.MaxNameBytes)},
			"invalid UTF-8 stack":  {Stack: "\xff"},
		} {
			_, err := runner.New(s.DB, &cfg)
			require.ErrorIs(t, err, revenant.ErrInvalidInput, name)
		}
		r, err := runner.New(s.DB, nil)
		require.NoError(t, err)
		run := doneActor("x", nil).Run
		for name, a := range map[string]runner.Actor{
			"NUL in id":          {ID: "a\x00", Run: run},
			"MaxInt attempts":    {ID: "a", Run: run, MaxAttempts: math.MaxInt},
			"huge concurrency":   {ID: "a", Run: run, MaxConcurrent: math.MaxInt},
			"bad expectation id": {ID: "a", Run: run, ExpectationRecovery: map[string]recovery.Policy{"\xff": recovery.Restart}},
		} {
			require.ErrorIs(t, r.Register(a), revenant.ErrInvalidInput, name)
		}
		_, err = r.EnqueueTx(context.Background(), nil, episodes.CreateParams{ActorID: "a"})
		require.ErrorIs(t, err, revenant.ErrInvalidInput)
		var tx *sqlx.Tx
		require.NotPanics(t, func() {
			_, err = r.EnqueueTx(context.Background(), tx, episodes.CreateParams{ActorID: "a"})
		})
		require.True(t, errors.Is(err, revenant.ErrInvalidInput))
	})
}

// An unreachable ListenDSN neither blocks Start nor stops work: the node
// polls, logs one warning however many reconnects fail, never logs the
// password, and Stop returns promptly.
func TestUnreachableListenDSNFallsBackToPolling(t *testing.T) {
	t.Parallel()
	s := testdb.New(t, nil)
	down := testdb.NewRefuser(t)
	logs, logger := testdb.NewLogs()
	const password = "s3cretPW"
	cfg := fastConfig(s, "deaf")
	cfg.ListenDSN = "postgres://rv:" + password + "@" + down.Addr + "/test?sslmode=disable"
	cfg.Logger = logger
	r, err := runner.New(s.DB, cfg)
	require.NoError(t, err)
	require.NoError(t, r.Register(doneActor("a", nil)))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	began := time.Now()
	require.NoError(t, r.Start(ctx))
	require.Less(t, time.Since(began), 2*time.Second)
	res, err := r.Enqueue(ctx, episodes.CreateParams{ActorID: "a"})
	require.NoError(t, err)
	waitStatus(t, r, res.Episode.ID, episodes.StatusDone)
	require.Eventually(t, func() bool { return down.Attempts() >= 4 }, 20*time.Second, 10*time.Millisecond)
	began = time.Now()
	require.NoError(t, r.StopAndCancel(ctx))
	require.Less(t, time.Since(began), 2*time.Second)
	require.Equal(t, 1, logs.Count("LISTEN connection unavailable"), "one warning per outage:\n%s", logs.String())
	require.NotContains(t, logs.String(), password)
}

// A ListenDSN that does not parse (a raw % in the password) is refused by
// New, saying how to fix it, without the password in the error or a log.
func TestMalformedListenDSNIsRefusedWithoutThePassword(t *testing.T) {
	t.Parallel()
	s := testdb.New(t, nil)
	logs, logger := testdb.NewLogs()
	cfg := fastConfig(s, "n")
	cfg.ListenDSN = "postgres://rv:pa%ss@127.0.0.1:5432/test"
	cfg.Logger = logger
	_, err := runner.New(s.DB, cfg)
	require.ErrorIs(t, err, revenant.ErrInvalidInput)
	require.Contains(t, err.Error(), "%25")
	require.NotContains(t, err.Error(), "pa%ss")
	require.NotContains(t, logs.String(), "pa%ss")
}
