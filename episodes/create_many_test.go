package episodes_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/internal/testdb"
)

// CreateMany inserts a batch in order, with each element's own fields,
// returns the holder for dedupe keys taken before or earlier in the same
// batch, and refuses a batch with an invalid element (saying which)
// without writing anything.
func TestCreateMany(t *testing.T) {
	testdb.Each(t, testdb.Drivers, func(t *testing.T, driver string) {
		b := setup(t, driver)
		ctx := context.Background()
		before := create(t, b.store, episodes.CreateParams{ActorID: "mailer", DedupeKey: "taken"})

		ps := []episodes.CreateParams{
			{ActorID: "mailer", Input: map[string]any{"to": "a@example.com", "quote": `he said "hi"\n`}},
			{ActorID: "mailer", DedupeKey: "taken"},
			{ActorID: "billing", DedupeKey: "k1", Expectation: "bulk", MaxAttempts: 7, Metadata: map[string]string{"tenant": "t1"}},
			{ActorID: "billing", DedupeKey: "k1"}, // the element before holds it
			{ActorID: "billing", Delay: time.Hour, Retry: &episodes.RetryPolicy{Disabled: true}},
			{ActorID: "billing", RunAt: time.Now().Add(-time.Minute), SourceStack: "batch", SourceEnv: "test"},
		}
		res, err := b.store.CreateMany(ctx, ps)
		require.NoError(t, err)
		require.Len(t, res, len(ps))

		require.False(t, res[0].Duplicate)
		var in map[string]string
		require.NoError(t, json.Unmarshal(res[0].Episode.Input, &in))
		require.Equal(t, `he said "hi"\n`, in["quote"])
		require.Equal(t, "web", res[0].Episode.SourceStack, "the store's scope is the default")

		require.True(t, res[1].Duplicate)
		require.Equal(t, before.ID, res[1].Episode.ID)

		require.False(t, res[2].Duplicate)
		require.Equal(t, "bulk", res[2].Episode.Expectation)
		require.Equal(t, 7, res[2].Episode.MaxAttempts)
		require.JSONEq(t, `{"tenant":"t1"}`, string(res[2].Episode.Metadata))
		require.True(t, res[3].Duplicate)
		require.Equal(t, res[2].Episode.ID, res[3].Episode.ID)

		require.True(t, res[4].Episode.RunAt.After(res[4].Episode.CreatedAt.Add(59*time.Minute)), "delayed by the database clock")
		require.NotNil(t, res[4].Episode.Retry)
		require.True(t, res[4].Episode.Retry.Disabled)
		require.Equal(t, "batch", res[5].Episode.SourceStack)
		require.Equal(t, "test", res[5].Episode.SourceEnv)

		// What CreateMany returns is the row as stored (it reads back only
		// the database's times and builds the rest), also for a batch that
		// sets none of the optional fields (sent as no column at all).
		plain, err := b.store.CreateMany(ctx, []episodes.CreateParams{{ActorID: "plain"}, {ActorID: "plain"}})
		require.NoError(t, err)
		for _, r := range plain {
			require.Empty(t, r.Episode.Expectation)
			require.Nil(t, r.Episode.Retry)
			require.True(t, r.Episode.RunAt.Equal(r.Episode.CreatedAt), "due at once: run_at %s, created %s", r.Episode.RunAt, r.Episode.CreatedAt)
		}
		for _, r := range append(res, plain...) {
			got, err := b.store.Get(ctx, r.Episode.ID)
			require.NoError(t, err)
			require.Equal(t, episodes.StatusPending, got.Status)
			want := *r.Episode
			require.JSONEq(t, string(got.Metadata), string(want.Metadata))
			if got.Input != nil || want.Input != nil {
				require.JSONEq(t, string(got.Input), string(want.Input))
			}
			require.True(t, got.CreatedAt.Equal(want.CreatedAt), "created %s vs %s", got.CreatedAt, want.CreatedAt)
			require.True(t, got.RunAt.Equal(want.RunAt), "run_at %s vs %s", got.RunAt, want.RunAt)
			got.Metadata, got.Input, want.Metadata, want.Input = nil, nil, nil, nil
			got.CreatedAt, got.RunAt, want.CreatedAt, want.RunAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}
			require.Equal(t, *got, want)
		}

		list, err := b.store.List(ctx, episodes.ListParams{ActorID: "billing", Stack: "web", Env: "prod"})
		require.NoError(t, err)
		n := len(list.Episodes)
		_, err = b.store.CreateMany(ctx, []episodes.CreateParams{{ActorID: "billing"}, {ActorID: ""}})
		require.ErrorIs(t, err, episodes.ErrInvalidInput)
		require.ErrorContains(t, err, "episode 1 of 2")
		list, err = b.store.List(ctx, episodes.ListParams{ActorID: "billing", Stack: "web", Env: "prod"})
		require.NoError(t, err)
		require.Len(t, list.Episodes, n, "nothing written")

		id := uuid.New()
		_, err = b.store.CreateMany(ctx, []episodes.CreateParams{{ID: id, ActorID: "billing"}, {ID: id, ActorID: "mailer"}})
		require.ErrorIs(t, err, episodes.ErrInvalidInput)
		require.ErrorContains(t, err, "episodes 0 and 1 of 2 have the same ID")

		empty, err := b.store.CreateMany(ctx, nil)
		require.NoError(t, err)
		require.Empty(t, empty)
	})
}
