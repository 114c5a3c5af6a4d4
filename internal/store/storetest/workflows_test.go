package storetest

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant/internal/dbx"
	"github.com/revenant-go/revenant/internal/store"
	"github.com/revenant-go/revenant/internal/testdb"
)

func TestWorkflowInsertLoadAndFlush(t *testing.T) {
	testdb.Each(t, testdb.Drivers, func(t *testing.T, driver string) {
		f := setup(t, driver)
		ctx := context.Background()
		require.NoError(t, f.st.WorkflowProbe(ctx, f.schema.DB))
		id := uuid.Must(uuid.NewV7())
		tx, err := f.schema.DB.BeginTxx(ctx, nil)
		require.NoError(t, err)
		dup, err := f.st.WorkflowInsert(ctx, tx, &store.WorkflowInsertParams{ID: id, WorkflowID: "wf", Subject: "order-1",
			Trigger: `{"n":1}`, Stack: "web", Env: "prod", StepIDs: []string{"a", "b"}})
		require.NoError(t, err)
		require.False(t, dup)
		// The same subject in flight is a duplicate, and the transaction
		// stays usable.
		dup, err = f.st.WorkflowInsert(ctx, tx, &store.WorkflowInsertParams{ID: uuid.Must(uuid.NewV7()), WorkflowID: "wf", Subject: "order-1", StepIDs: []string{"a"}})
		require.NoError(t, err)
		require.True(t, dup)
		require.NoError(t, f.st.WorkflowInsertCompensation(ctx, tx, id, "undo:a", 0))

		loaded, err := f.st.WorkflowLoadLocked(ctx, tx, id, false)
		require.NoError(t, err)
		require.Equal(t, "running", loaded.Instance.Status)
		require.Equal(t, "order-1", loaded.Instance.Subject)
		require.JSONEq(t, `{"n":1}`, string(loaded.Instance.Trigger))
		require.Equal(t, "web", loaded.Instance.Stack)
		require.Len(t, loaded.Steps, 3)
		require.Equal(t, []string{"a", "b", "undo:a"}, []string{loaded.Steps[0].ID, loaded.Steps[1].ID, loaded.Steps[2].ID},
			"steps in position order, then compensations")
		require.Empty(t, loaded.Steps[0].EpisodeStatus)

		// One transition: step a starts an episode with a retry due now,
		// the instance moves, and an event is written with it.
		epID := uuid.Must(uuid.NewV7())
		due := int64(0)
		ev := store.Event{ID: uuid.Must(uuid.NewV7()), Type: "workflow.step_started", WorkflowInstanceID: id}
		c, err := f.st.WorkflowFlush(ctx, tx, &store.WorkflowFlushParams{InstanceID: id,
			Steps:  []store.WorkflowStepUpdate{{StepID: "a", Status: "running", Attempts: 1, EpisodeID: epID}, {StepID: "b", Status: "retrying", Attempts: 1, DueInMS: &due, Error: json.RawMessage(`{"m":"x"}`)}},
			Status: "running", NewEpisodes: []store.WorkflowNewEpisode{{ID: epID, ActorID: "work", Input: `{"x":1}`, MaxAttempts: 3, DedupeKey: id.String() + ":a:1", StepID: "a"}},
			Stack: "web", Env: "prod", Events: []store.Event{ev}})
		require.NoError(t, err)
		require.Equal(t, store.WorkflowFlushCounts{Steps: 2, Instances: 1, Episodes: 1}, c)
		require.NoError(t, tx.Commit())

		got, err := f.st.WorkflowGet(ctx, f.schema.DB, id)
		require.NoError(t, err)
		require.Equal(t, loaded.Instance.Version+1, got.Instance.Version)
		a, b := got.Steps[0], got.Steps[1]
		require.Equal(t, epID, a.EpisodeID)
		require.Equal(t, "pending", a.EpisodeStatus, "a running step carries its episode's state")
		require.Equal(t, "retrying", b.Status)
		require.NotNil(t, b.DueAt)
		require.JSONEq(t, `{"m":"x"}`, string(b.Error))
		ep, err := f.st.EpisodeGet(ctx, f.schema.DB, epID)
		require.NoError(t, err)
		require.Equal(t, id, ep.WorkflowInstanceID)
		require.Equal(t, "web", ep.SourceStack)
		evs, err := f.st.EventReadAfter(ctx, f.schema.DB, 0, 10)
		require.NoError(t, err)
		require.Len(t, evs, 1)
		require.Equal(t, ev.ID, evs[0].Event.ID)

		require.Eventually(t, func() bool {
			ids, err := f.st.WorkflowDue(ctx, f.schema.DB, 10)
			require.NoError(t, err)
			return len(ids) == 1 && ids[0] == id
		}, 10*time.Second, 20*time.Millisecond, "the retry is due by the database clock")
		open, err := f.st.WorkflowOpen(ctx, f.schema.DB, store.Scope{Stack: "web", Env: "prod"}, uuid.Nil, 10)
		require.NoError(t, err)
		require.Equal(t, []uuid.UUID{id}, open)
		open, err = f.st.WorkflowOpen(ctx, f.schema.DB, store.Scope{Stack: "web", Env: "dev"}, uuid.Nil, 10)
		require.NoError(t, err)
		require.Empty(t, open)
		found, err := f.st.WorkflowFindBySubject(ctx, f.schema.DB, "wf", "order-1")
		require.NoError(t, err)
		require.Equal(t, id, found)
		_, err = f.st.WorkflowFindBySubject(ctx, f.schema.DB, "wf", "order-2")
		require.ErrorIs(t, err, dbx.ErrNotFound)
		_, err = f.st.WorkflowGet(ctx, f.schema.DB, uuid.New())
		require.ErrorIs(t, err, dbx.ErrNotFound)
	})
}

// With skipLocked, an instance another transaction holds reads as not
// found on Postgres (SQLite engines take turns on the write lock).
func TestWorkflowLoadLockedSkipsAHeldInstance(t *testing.T) {
	testdb.Each(t, []string{"postgres", "pgx"}, func(t *testing.T, driver string) {
		f := setup(t, driver)
		ctx := context.Background()
		id := uuid.Must(uuid.NewV7())
		tx, err := f.schema.DB.BeginTxx(ctx, nil)
		require.NoError(t, err)
		_, err = f.st.WorkflowInsert(ctx, tx, &store.WorkflowInsertParams{ID: id, WorkflowID: "wf", StepIDs: []string{"a"}})
		require.NoError(t, err)
		require.NoError(t, tx.Commit())
		holder, err := f.schema.DB.BeginTxx(ctx, nil)
		require.NoError(t, err)
		defer func() { _ = holder.Rollback() }()
		_, err = f.st.WorkflowLoadLocked(ctx, holder, id, false)
		require.NoError(t, err)
		other, err := f.schema.DB.BeginTxx(ctx, nil)
		require.NoError(t, err)
		defer func() { _ = other.Rollback() }()
		_, err = f.st.WorkflowLoadLocked(ctx, other, id, true)
		require.ErrorIs(t, err, dbx.ErrNotFound)
	})
}
