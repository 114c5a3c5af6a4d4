package journal_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant"
	"github.com/revenant-go/revenant/internal/testdb"
	"github.com/revenant-go/revenant/journal"
)

// A step name the journal cannot record is refused before fn runs: the
// effect must not happen only to fail recording on every restart.
func TestBadStepNameIsRefusedBeforeTheEffect(t *testing.T) {
	testdb.Each(t, testdb.Drivers, func(t *testing.T, driver string) {
		b := setup(t, driver)
		ctx := context.Background()
		ep := b.claimed(t)
		j, err := journal.Open(ctx, b.db, ep.ID, ep.ClaimToken, nil)
		require.NoError(t, err)
		ran := 0
		for _, name := range []string{"a\x00b", "bad\xffutf8", strings.Repeat("n", revenant.MaxNameBytes+1)} {
			_, err := journal.Step(ctx, j, name, func(context.Context) (int, error) { ran++; return 1, nil })
			require.ErrorIs(t, err, revenant.ErrInvalidInput)
			_, err = journal.StepTx(ctx, j, name, func(context.Context, *sqlx.Tx) (int, error) { ran++; return 1, nil })
			require.ErrorIs(t, err, revenant.ErrInvalidInput)
		}
		require.Zero(t, ran, "fn never ran")
		require.Zero(t, b.steps(t, ep))

		// An actor error with NUL and invalid UTF-8 is still recorded.
		_, err = journal.Step(ctx, j, "ok", func(context.Context) (int, error) {
			return 0, journal.Permanent(errors.New("bad \x00 and \xff bytes"))
		})
		require.ErrorContains(t, err, "bad")
		require.Equal(t, 1, b.steps(t, ep), "the permanent failure was recorded")
	})
}

// A nil *Journal is an error, not a panic.
func TestNilJournalIsInvalidInput(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var j *journal.Journal
	require.NotPanics(t, func() {
		_, err := journal.Step(ctx, j, "x", func(context.Context) (int, error) { return 1, nil })
		require.ErrorIs(t, err, revenant.ErrInvalidInput)
		_, err = journal.StepTx(ctx, j, "x", func(context.Context, *sqlx.Tx) (int, error) { return 1, nil })
		require.ErrorIs(t, err, revenant.ErrInvalidInput)
		require.Zero(t, j.Recorded())
		require.Zero(t, j.ClaimToken())
	})
}

// TxIdleTimeout must fit Postgres's millisecond setting.
func TestTxIdleTimeoutRange(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		b := setup(t, driver)
		ep := b.claimed(t)
		ctx := context.Background()
		for _, d := range []time.Duration{-time.Second, 500 * time.Microsecond, 25 * 24 * time.Hour} {
			_, err := journal.Open(ctx, b.db, ep.ID, ep.ClaimToken, &journal.Config{TxIdleTimeout: d})
			require.ErrorIs(t, err, revenant.ErrInvalidInput, "%s", d)
		}
		_, err := journal.Open(ctx, b.db, ep.ID, ep.ClaimToken, &journal.Config{TxIdleTimeout: 24 * time.Hour})
		require.NoError(t, err)
	})
}

// On SQLite, a failure reading the episode's state after a fenced-off
// write is reported as that failure, not as a lost lease (which would stop
// the run without writing anything and strand the episode).
func TestStateReadFailureIsNotLeaseLost(t *testing.T) {
	t.Parallel()
	b := setup(t, testdb.SQLite)
	ctx := context.Background()
	ep := b.claimed(t)
	j, err := journal.Open(ctx, b.db, ep.ID, ep.ClaimToken, nil)
	require.NoError(t, err)
	// The journal write matches nothing (the token no longer equals ours),
	// and reading the state back fails (the token is unreadable text).
	_, err = b.db.Exec(`UPDATE revenant_episodes SET claim_token = 'garbled' WHERE id = $1`, ep.ID)
	require.NoError(t, err)
	_, err = journal.Step(ctx, j, "s", func(context.Context) (int, error) { return 1, nil })
	require.Error(t, err)
	require.NotErrorIs(t, err, revenant.ErrLeaseLost)
	require.ErrorContains(t, err, "reading")
}
