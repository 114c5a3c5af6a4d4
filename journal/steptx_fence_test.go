package journal_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/internal/testdb"
	"github.com/revenant-go/revenant/journal"
)

// A zombie pauses between its effect and its journal write (the fence is
// in that write): meanwhile the episode is recovered and its new holder
// runs the same step. The new holder's effect commits; the zombie's write
// is fenced off and its effect rolls back: the effect happens once.
// Postgres only: on SQLite the paused transaction holds the file's write
// lock, so nothing else can write until it ends.
func TestStepTxZombiePausedBeforeItsJournalWrite(t *testing.T) {
	testdb.Each(t, []string{"postgres", "pgx"}, func(t *testing.T, driver string) {
		b := setup(t, driver)
		ctx := context.Background()
		_, err := b.db.ExecContext(ctx, `CREATE TABLE charges (holder text NOT NULL)`)
		require.NoError(t, err)
		charge := func(holder string, effectDone, release chan struct{}) func(context.Context, *sqlx.Tx) (string, error) {
			return func(ctx context.Context, tx *sqlx.Tx) (string, error) {
				if _, err := tx.ExecContext(ctx, `INSERT INTO charges (holder) VALUES ($1)`, holder); err != nil {
					return "", err
				}
				if effectDone != nil {
					close(effectDone)
					<-release // paused: effect done, journal write not yet sent
				}
				return "charged by " + holder, nil
			}
		}

		ep := b.claimed(t)
		zombie, err := journal.Open(ctx, b.db, ep.ID, ep.ClaimToken, &journal.Config{TxIdleTimeout: 0})
		require.NoError(t, err)
		effectDone, release := make(chan struct{}), make(chan struct{})
		zombieErr := make(chan error, 1)
		go func() {
			_, err := journal.StepTx(ctx, zombie, "charge", charge("zombie", effectDone, release))
			zombieErr <- err
		}()
		<-effectDone

		// Recovery takes the episode over while the zombie is paused; no
		// lock of the zombie's stands in the way.
		ep2 := b.crashAndReclaim(t, ep)
		holder, err := journal.Open(ctx, b.db, ep.ID, ep2.ClaimToken, nil)
		require.NoError(t, err)
		out, err := journal.StepTx(ctx, holder, "charge", charge("holder", nil, nil))
		require.NoError(t, err)
		require.Equal(t, "charged by holder", out)

		close(release)
		require.ErrorIs(t, <-zombieErr, journal.ErrLeaseLost)

		var holders []string
		require.NoError(t, b.db.SelectContext(ctx, &holders, `SELECT holder FROM charges`))
		require.Equal(t, []string{"holder"}, holders, "one effect, the new holder's")
		var tokens []int64
		require.NoError(t, b.db.SelectContext(ctx, &tokens, `SELECT claim_token FROM revenant_steps WHERE episode_id = $1`, ep.ID))
		require.Equal(t, []int64{ep2.ClaimToken}, tokens)
		got, err := b.store.Get(ctx, ep.ID)
		require.NoError(t, err)
		require.Equal(t, episodes.StatusRunning, got.Status)
		require.Equal(t, ep2.ClaimToken, got.ClaimToken)
	})
}

// StepTx sends three statements beyond fn's own: BEGIN, the fenced journal
// write, COMMIT; four with TxIdleTimeout (the runner's default), whose SET
// LOCAL keeps a paused holder from blocking the next one.
func TestStepTxRoundTrips(t *testing.T) {
	testdb.Require(t)
	s := testdb.New(t, &testdb.Options{Driver: "postgres"})
	ctx := context.Background()
	_, err := s.DB.ExecContext(ctx, `CREATE TABLE effects (n integer)`)
	require.NoError(t, err)
	db, statements := testdb.Counting(t, s.DSN, 2)
	b := &bundle{db: db, schema: s}
	b.store, err = episodes.New(db, nil)
	require.NoError(t, err)
	for _, tc := range []struct {
		idle time.Duration
		want int64
	}{{0, 1 + 3}, {5 * time.Second, 1 + 4}} {
		ep := b.claimed(t)
		j, err := journal.Open(ctx, db, ep.ID, ep.ClaimToken, &journal.Config{TxIdleTimeout: tc.idle})
		require.NoError(t, err)
		for i := range 3 {
			before := statements.Load()
			_, err = journal.StepTx(ctx, j, fmt.Sprintf("insert-%s-%d", tc.idle, i), func(ctx context.Context, tx *sqlx.Tx) (int, error) {
				_, err := tx.ExecContext(ctx, `INSERT INTO effects (n) VALUES ($1)`, i)
				return i, err
			})
			require.NoError(t, err)
			require.Equal(t, tc.want, statements.Load()-before, "idle timeout %s, step %d", tc.idle, i)
		}
	}
	var n int
	require.NoError(t, s.DB.GetContext(ctx, &n, `SELECT count(*) FROM effects`))
	require.Equal(t, 6, n)
}
