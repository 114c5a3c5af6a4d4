package runner_test

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/internal/testdb"
	"github.com/revenant-go/revenant/journal"
	"github.com/revenant-go/revenant/runner"
)

// A transactional step's transaction ends when idle for the node TTL: the
// runner sets that on each one, unless the database already gives its
// sessions a timeout as short (then the SET would only cost a round trip).
func TestStepTxIdleTimeoutFollowsTheDatabase(t *testing.T) {
	testdb.Require(t)
	for _, tc := range []struct {
		name, dbTimeout, want string
		journal               time.Duration // the caller's own, if any
	}{
		{"none from the database", "", "10s", 0},
		{"shorter from the database", "3000", "3s", 0},
		{"longer from the database", "60000", "10s", 0},
		{"the caller's own wins", "3000", "20s", 20 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := testdb.New(t, &testdb.Options{Driver: "postgres"})
			dsn := s.DSN
			if tc.dbTimeout != "" {
				u, err := url.Parse(dsn)
				require.NoError(t, err)
				q := u.Query()
				q.Set("idle_in_transaction_session_timeout", tc.dbTimeout) // a startup parameter
				u.RawQuery = q.Encode()
				dsn = u.String()
			}
			db, err := sqlx.Open("postgres", dsn)
			require.NoError(t, err)
			t.Cleanup(func() { _ = db.Close() })
			cfg := &runner.Config{Name: "idle", NodeTTL: 10 * time.Second, PollInterval: 50 * time.Millisecond}
			if tc.journal != 0 {
				cfg.Journal = &journal.Config{TxIdleTimeout: tc.journal}
			}
			r, err := runner.New(db, cfg)
			require.NoError(t, err)
			require.NoError(t, r.Register(runner.Actor{ID: "reads-timeout",
				Run: func(ctx context.Context, ep *episodes.Episode, j *journal.Journal) (any, error) {
					return journal.StepTx(ctx, j, "read", func(ctx context.Context, tx *sqlx.Tx) (string, error) {
						var v string
						err := tx.GetContext(ctx, &v, `SELECT current_setting('idle_in_transaction_session_timeout')`)
						return v, err
					})
				}}))
			require.NoError(t, r.Start(context.Background()))
			t.Cleanup(func() { _ = r.StopAndCancel(context.Background()) })
			res, err := r.Enqueue(context.Background(), episodes.CreateParams{ActorID: "reads-timeout"})
			require.NoError(t, err)
			ep := waitStatus(t, r, res.Episode.ID, episodes.StatusDone)
			require.JSONEq(t, `"`+tc.want+`"`, string(ep.Result))
		})
	}
}
