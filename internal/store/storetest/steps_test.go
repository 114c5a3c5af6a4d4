package storetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant/internal/dbx"
	"github.com/revenant-go/revenant/internal/store"
	"github.com/revenant-go/revenant/internal/testdb"
)

func TestStepRecordIsFencedAndLoadsInOrder(t *testing.T) {
	testdb.Each(t, testdb.Drivers, func(t *testing.T, driver string) {
		f := setup(t, driver)
		ctx := context.Background()
		ep := f.insert(t, store.EpisodeInsertParams{})

		_, err := f.st.StepLoad(ctx, f.schema.DB, uuid.New())
		require.ErrorIs(t, err, dbx.ErrNotFound)

		rec := func(token int64, seq int, name string) store.StepOutcome {
			t.Helper()
			out, err := f.st.StepRecord(ctx, f.schema.DB, &store.StepRecordParams{EpisodeID: ep.ID, ClaimToken: token,
				Seq: seq, Name: name, Status: "done", Output: `{"n":1}`, Took: 3 * time.Millisecond})
			require.NoError(t, err)
			return out
		}
		require.Equal(t, store.StepFenced, rec(0, 0, "early"), "a pending episode takes no steps")

		run, err := f.move(t, store.TransitionParams{Move: store.TransitionClaim, ID: ep.ID, Node: "n1"})
		require.NoError(t, err)
		require.Equal(t, store.StepRecorded, rec(run.ClaimToken, 0, "fetch"))
		require.Equal(t, store.StepSeqTaken, rec(run.ClaimToken, 0, "fetch-again"))
		require.Equal(t, store.StepFenced, rec(run.ClaimToken+1, 1, "zombie"))
		out, err := f.st.StepRecord(ctx, f.schema.DB, &store.StepRecordParams{EpisodeID: ep.ID, ClaimToken: run.ClaimToken,
			Seq: 1, Name: "charge", Status: "failed", Error: `{"message":"card declined"}`})
		require.NoError(t, err)
		require.Equal(t, store.StepRecorded, out)

		j, err := f.st.StepLoad(ctx, f.schema.DB, ep.ID)
		require.NoError(t, err)
		require.Equal(t, "running", j.Status)
		require.Equal(t, run.ClaimToken, j.ClaimToken)
		require.Len(t, j.Steps, 2)
		require.Equal(t, store.StepRow{Seq: 0, Name: "fetch", Status: "done", Output: j.Steps[0].Output}, j.Steps[0])
		require.JSONEq(t, `{"n":1}`, string(j.Steps[0].Output))
		require.Equal(t, "failed", j.Steps[1].Status)
		require.JSONEq(t, `{"message":"card declined"}`, string(j.Steps[1].Error))

		// Once the episode is done nothing more is recorded.
		_, err = f.move(t, store.TransitionParams{Move: store.TransitionComplete, ID: ep.ID, ClaimToken: run.ClaimToken})
		require.NoError(t, err)
		require.Equal(t, store.StepFenced, rec(run.ClaimToken, 2, "late"))

		fresh := f.insert(t, store.EpisodeInsertParams{})
		j, err = f.st.StepLoad(ctx, f.schema.DB, fresh.ID)
		require.NoError(t, err)
		require.Equal(t, "pending", j.Status)
		require.Empty(t, j.Steps)
	})
}

func TestStepRecordFencesInsideTheTransaction(t *testing.T) {
	testdb.Each(t, testdb.Drivers, func(t *testing.T, driver string) {
		f := setup(t, driver)
		ctx := context.Background()
		ep := f.insert(t, store.EpisodeInsertParams{})
		run, err := f.move(t, store.TransitionParams{Move: store.TransitionClaim, ID: ep.ID, Node: "n1"})
		require.NoError(t, err)

		for _, tc := range []struct {
			token int64
			want  store.StepOutcome
		}{{run.ClaimToken - 1, store.StepFenced}, {run.ClaimToken, store.StepRecorded}} {
			tx, err := f.schema.DB.BeginTxx(ctx, nil)
			require.NoError(t, err)
			out, err := f.st.StepRecord(ctx, tx, &store.StepRecordParams{EpisodeID: ep.ID, ClaimToken: tc.token,
				Seq: 0, Name: "effect", Status: "done", Output: `1`})
			require.NoError(t, err)
			require.Equal(t, tc.want, out)
			require.NoError(t, tx.Rollback())
		}
		j, err := f.st.StepLoad(ctx, f.schema.DB, ep.ID)
		require.NoError(t, err)
		require.Empty(t, j.Steps, "a rolled-back step leaves nothing")
	})
}

// StepTxPrepare bounds the transaction's idle time where the backend has
// the setting: a transaction left idle past it is ended by Postgres, so
// the locks it took are not held for ever.
func TestStepTxPrepareBoundsAnIdleTransaction(t *testing.T) {
	testdb.Each(t, []string{"postgres", "pgx"}, func(t *testing.T, driver string) {
		f := setup(t, driver)
		ctx := context.Background()
		tx, err := f.schema.DB.BeginTxx(ctx, nil)
		require.NoError(t, err)
		defer func() { _ = tx.Rollback() }()
		require.NoError(t, f.st.StepTxPrepare(ctx, tx, 60_000))
		var setting string
		require.NoError(t, tx.QueryRowContext(ctx, "SHOW idle_in_transaction_session_timeout").Scan(&setting))
		require.Equal(t, "1min", setting)
	})
}

// A step bumps its episode's activity time, at most once a second: a
// busy episode's steps do not each rewrite its row.
func TestStepRecordBumpsActivityAtMostOnceASecond(t *testing.T) {
	testdb.Each(t, testdb.Drivers, func(t *testing.T, driver string) {
		f := setup(t, driver)
		ctx := context.Background()
		ep := f.insert(t, store.EpisodeInsertParams{})
		run, err := f.move(t, store.TransitionParams{Move: store.TransitionClaim, ID: ep.ID, Node: "n1"})
		require.NoError(t, err)
		activity := func() time.Time {
			t.Helper()
			got, err := f.st.EpisodeGet(ctx, f.schema.DB, ep.ID)
			require.NoError(t, err)
			require.NotNil(t, got.LastActivityAt)
			return *got.LastActivityAt
		}
		record := func(seq int) {
			t.Helper()
			out, err := f.st.StepRecord(ctx, f.schema.DB, &store.StepRecordParams{EpisodeID: ep.ID, ClaimToken: run.ClaimToken,
				Seq: seq, Name: fmt.Sprintf("s%d", seq), Status: "done", Output: `1`})
			require.NoError(t, err)
			require.Equal(t, store.StepRecorded, out)
		}
		setActivity := func(d time.Duration) time.Time {
			t.Helper()
			_, err := f.schema.DB.ExecContext(ctx, `UPDATE revenant_episodes SET last_activity_at = `+f.schema.NowPlus(d)+` WHERE id = $1`, ep.ID)
			require.NoError(t, err)
			return activity()
		}
		// Bumped under a second ago (here: ahead of the clock, so that a
		// slow machine cannot make it older): the step leaves it.
		recent := setActivity(time.Hour)
		record(0)
		require.Equal(t, recent, activity(), "a step within a second of the last bump does not bump it")

		old := setActivity(-2 * time.Second)
		record(1)
		bumped := activity()
		require.True(t, bumped.After(old.Add(time.Second)), "a step two seconds after the last bump bumps it: %s then %s", old, bumped)
	})
}
