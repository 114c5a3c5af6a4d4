package recovery_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant"
	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/internal/testdb"
	"github.com/revenant-go/revenant/journal"
	"github.com/revenant-go/revenant/recovery"
	"github.com/revenant-go/revenant/runner"
)

// Postgres drops every connection (a blip), then goes away for a while
// (connections cut, new ones refused) and comes back: what the drivers
// report is retryable, no episode fails for it, and every transactional
// effect happens once.
func TestPostgresOutageFailsNoEpisode(t *testing.T) {
	testdb.Each(t, []string{"postgres", "pgx"}, func(t *testing.T, driver string) {
		s := testdb.New(t, &testdb.Options{Driver: driver})
		_, err := s.DB.Exec(`CREATE TABLE outage_effects (episode_id uuid, step int, UNIQUE (episode_id, step))`)
		require.NoError(t, err)
		proxy := testdb.NewProxy(t)
		dsn := proxy.DSN(s.DSN)
		db, err := sqlx.Open(driver, dsn)
		require.NoError(t, err)
		t.Cleanup(func() { _ = db.Close() })
		db.SetMaxOpenConns(16)

		// Connection refused, as the drivers report it, is retryable.
		proxy.Cut()
		err = db.PingContext(context.Background())
		require.True(t, revenant.IsRetryable(err), "%T: %v", err, err)
		proxy.Restore()

		logs, logger := testdb.NewLogs()
		r, err := runner.New(db, &runner.Config{Name: "outage", HeartbeatInterval: 100 * time.Millisecond, NodeTTL: time.Second,
			PollInterval: 50 * time.Millisecond, ListenDSN: dsn, Logger: logger})
		require.NoError(t, err)
		require.NoError(t, r.Register(runner.Actor{ID: "work", Recovery: recovery.Restart, MaxAttempts: 50, MaxConcurrent: 4,
			Run: func(ctx context.Context, ep *episodes.Episode, j *journal.Journal) (any, error) {
				for i := range 3 {
					_, err := journal.StepTx(ctx, j, fmt.Sprint("step-", i), func(ctx context.Context, tx *sqlx.Tx) (int, error) {
						_, err := tx.ExecContext(ctx, `INSERT INTO outage_effects (episode_id, step) VALUES ($1, $2)`, ep.ID, i)
						return i, err
					})
					if err != nil {
						return nil, err
					}
					select {
					case <-time.After(20 * time.Millisecond):
					case <-ctx.Done():
						return nil, ctx.Err()
					}
				}
				return "done", nil
			}}))
		ctx := context.Background()
		require.NoError(t, r.Start(ctx))
		t.Cleanup(func() { _ = r.StopAndCancel(context.Background()) })
		sw, err := recovery.NewSweeper(db, &recovery.SweeperConfig{Options: recovery.Options{Node: r, Logger: logger},
			Interval: 200 * time.Millisecond, FailureCheckInterval: 50 * time.Millisecond})
		require.NoError(t, err)
		require.NoError(t, sw.Start(ctx))
		t.Cleanup(func() { _ = sw.Stop(context.Background()) })

		const n = 100
		for range n {
			_, err := r.Enqueue(ctx, episodes.CreateParams{ActorID: "work"})
			require.NoError(t, err)
		}
		state := func() string {
			var rows []struct {
				Status, Owner string
				N             int
			}
			_ = s.DB.Select(&rows, `SELECT status, coalesce(owner_node, '') AS owner, count(*) AS n FROM revenant_episodes GROUP BY 1, 2 ORDER BY 1, 2`)
			var nodes []struct {
				ID      string `db:"node_id"`
				Stopped bool
				Lock    *int64 `db:"lock_key"`
			}
			_ = s.DB.Select(&nodes, `SELECT node_id, stopped_at IS NOT NULL AS stopped, lock_key FROM revenant_nodes ORDER BY started_at`)
			ls := strings.Split(logs.String(), "\n")
			if len(ls) > 60 {
				ls = ls[len(ls)-60:]
			}
			return fmt.Sprintf("episodes %+v\nnodes %+v\n%s", rows, nodes, strings.Join(ls, "\n"))
		}
		count := func(status string) int {
			var c int
			require.NoError(t, s.DB.Get(&c, `SELECT count(*) FROM revenant_episodes WHERE status = $1`, status))
			return c
		}
		require.Eventually(t, func() bool { return count("done") >= 3 }, 20*time.Second, 10*time.Millisecond)

		// A blip: every connection drops, new ones succeed at once. Runs
		// caught mid-step get a dropped-connection error while the database
		// is there to record a failure.
		for range 3 {
			before := count("done")
			proxy.Drop()
			if !assert.Eventually(t, func() bool { d := count("done"); return d > before || d == n }, 20*time.Second, 10*time.Millisecond) {
				t.Fatalf("no progress after a blip: %s", state())
			}
		}

		// An outage: connections drop and new ones are refused for a while.
		proxy.Cut()
		// Held down until the node has felt it (a heartbeat and a sweep
		// pass or check failed).
		require.Eventually(t, func() bool {
			return logs.Count("heartbeat failed") > 0 || logs.Count("lost its identity") > 0
		}, 20*time.Second, 10*time.Millisecond)
		require.Eventually(t, func() bool { return logs.Count("failure check failed") > 0 || sw.Stats().Failures > 0 },
			20*time.Second, 10*time.Millisecond)
		proxy.Restore()

		if !assert.Eventually(t, func() bool { return count("done")+count("failed") == n }, 60*time.Second, 50*time.Millisecond) {
			t.Fatalf("not finished after the outage: %s", state())
		}
		require.Zero(t, count("failed"), "no episode failed for a transient cause; logs:\n%s", logs.String())
		var effects int
		require.NoError(t, s.DB.Get(&effects, `SELECT count(*) FROM outage_effects`))
		require.Equal(t, 3*n, effects, "each transactional effect happened once")
	})
}
