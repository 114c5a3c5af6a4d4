package storetest

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant/internal/store"
	"github.com/revenant-go/revenant/internal/testdb"
)

func newEvents(n int, typ string) []store.Event {
	evs := make([]store.Event, n)
	for i := range evs {
		evs[i] = store.Event{ID: uuid.Must(uuid.NewV7()), Type: typ}
	}
	return evs
}

func TestEventInsertAndRead(t *testing.T) {
	testdb.Each(t, testdb.Drivers, func(t *testing.T, driver string) {
		f := setup(t, driver)
		ctx := context.Background()
		high, err := f.st.EventPosition(ctx, f.schema.DB)
		require.NoError(t, err)
		require.Zero(t, high)

		ep, wf := uuid.New(), uuid.New()
		full := store.Event{ID: uuid.Must(uuid.NewV7()), Type: "episode.failed", EpisodeID: ep, ActorID: "a",
			WorkflowInstanceID: wf, WorkflowStepID: "s", Status: "failed", ErrorClass: "panic", Payload: json.RawMessage(`{"k":[1,2]}`)}
		require.NoError(t, f.st.EventInsert(ctx, f.schema.DB, append([]store.Event{full}, newEvents(4, "x")...)))
		require.NoError(t, f.st.EventInsert(ctx, f.schema.DB, nil), "nothing to write is not an error")

		all, err := f.st.EventReadAfter(ctx, f.schema.DB, 0, 100)
		require.NoError(t, err)
		require.Len(t, all, 5)
		got := all[0].Event
		require.Equal(t, full.ID, got.ID)
		require.Equal(t, ep, got.EpisodeID)
		require.Equal(t, wf, got.WorkflowInstanceID)
		require.Equal(t, "a", got.ActorID)
		require.Equal(t, "s", got.WorkflowStepID)
		require.Equal(t, "failed", got.Status)
		require.Equal(t, "panic", got.ErrorClass)
		require.JSONEq(t, `{"k":[1,2]}`, string(got.Payload))
		require.False(t, got.CreatedAt.IsZero())
		require.Nil(t, all[1].Event.Payload)
		for i := 1; i < len(all); i++ {
			require.Greater(t, all[i].Seq, all[i-1].Seq)
		}

		page, err := f.st.EventReadAfter(ctx, f.schema.DB, all[1].Seq, 2)
		require.NoError(t, err)
		require.Equal(t, []int64{all[2].Seq, all[3].Seq}, []int64{page[0].Seq, page[1].Seq})

		ranges, err := f.st.EventReadRanges(ctx, f.schema.DB, []store.SeqRange{{From: all[0].Seq, To: all[0].Seq}, {From: all[3].Seq, To: all[4].Seq + 1000}}, 100)
		require.NoError(t, err)
		require.Len(t, ranges, 3)
		require.Equal(t, all[0].Seq, ranges[0].Seq)
		require.Equal(t, all[4].Seq, ranges[2].Seq)

		high, err = f.st.EventPosition(ctx, f.schema.DB)
		require.NoError(t, err)
		require.Equal(t, all[4].Seq, high)

		n, err := f.st.EventPrune(ctx, f.schema.DB, time.Hour)
		require.NoError(t, err)
		require.Zero(t, n, "nothing is an hour old")
		_, err = f.schema.DB.Exec(`UPDATE revenant_events SET created_at = `+f.schema.NowPlus(-2*time.Hour)+` WHERE seq <= $1`, all[1].Seq)
		require.NoError(t, err)
		n, err = f.st.EventPrune(ctx, f.schema.DB, time.Hour)
		require.NoError(t, err)
		require.Equal(t, int64(2), n)
	})
}

// Events written in a transaction exist only if it commits.
func TestEventInsertJoinsTheTransaction(t *testing.T) {
	testdb.Each(t, testdb.Drivers, func(t *testing.T, driver string) {
		f := setup(t, driver)
		ctx := context.Background()
		tx, err := f.schema.DB.BeginTxx(ctx, nil)
		require.NoError(t, err)
		require.NoError(t, f.st.EventInsert(ctx, tx, newEvents(3, "x")))
		require.NoError(t, tx.Rollback())
		all, err := f.st.EventReadAfter(ctx, f.schema.DB, 0, 100)
		require.NoError(t, err)
		require.Empty(t, all)
	})
}
