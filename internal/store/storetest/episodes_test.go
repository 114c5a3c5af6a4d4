// Package storetest is the store conformance suite: every store operation,
// run directly on every backend and driver (lib/pq, pgx, SQLite), beside
// the end-to-end tests of the public packages.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant/internal/dbx"
	"github.com/revenant-go/revenant/internal/store"
	"github.com/revenant-go/revenant/internal/store/backend"
	"github.com/revenant-go/revenant/internal/testdb"
)

type fixture struct {
	schema *testdb.Schema
	st     store.Store
}

func setup(t *testing.T, driver string) *fixture {
	t.Helper()
	s := testdb.New(t, &testdb.Options{Driver: driver, MaxOpenConns: 16})
	return &fixture{schema: s, st: backend.For(s.DB)}
}

func (f *fixture) insert(t *testing.T, p store.EpisodeInsertParams) *store.Episode {
	t.Helper()
	if p.ID == uuid.Nil {
		p.ID = uuid.Must(uuid.NewV7())
	}
	if p.ActorID == "" {
		p.ActorID = "mailer"
	}
	if p.MaxAttempts == 0 {
		p.MaxAttempts = 3
	}
	ep, err := f.st.EpisodeInsert(context.Background(), f.schema.DB, &p)
	require.NoError(t, err)
	require.NotNil(t, ep)
	return ep
}

func (f *fixture) move(t *testing.T, p store.TransitionParams) (*store.Episode, error) {
	t.Helper()
	return f.st.EpisodeTransition(context.Background(), f.schema.DB, &p)
}

func TestBackendIsDetectedPerHandle(t *testing.T) {
	testdb.Each(t, testdb.Drivers, func(t *testing.T, driver string) {
		f := setup(t, driver)
		want := "postgres"
		if driver == testdb.SQLite {
			want = "sqlite"
		}
		require.Equal(t, want, f.st.Name())
		require.Equal(t, want, backend.ForDB(f.schema.DB.DB).Name())
		caps := f.st.Capabilities()
		require.Equal(t, want == "postgres", caps.AdvisoryLocks)
		require.Equal(t, want == "postgres", caps.Notify)
		require.Equal(t, want == "postgres", caps.RowLocks)
	})
}

func TestEpisodeInsertGetAndDedupe(t *testing.T) {
	testdb.Each(t, testdb.Drivers, func(t *testing.T, driver string) {
		f := setup(t, driver)
		ctx := context.Background()
		wf := uuid.New()
		ep := f.insert(t, store.EpisodeInsertParams{ActorID: "mailer", Expectation: "welcome", Input: `{"to":"ann"}`,
			DedupeKey: "k1", SourceStack: "web", SourceEnv: "prod", WorkflowInstanceID: wf, WorkflowStepID: "send"})
		require.Equal(t, store.StatusPending, ep.Status)
		require.Equal(t, "welcome", ep.Expectation)
		require.JSONEq(t, `{"to":"ann"}`, string(ep.Input))
		require.JSONEq(t, `{}`, string(ep.Metadata), "metadata defaults to an empty object")
		require.Equal(t, wf, ep.WorkflowInstanceID)
		require.Zero(t, ep.ClaimToken)

		got, err := f.st.EpisodeGet(ctx, f.schema.DB, ep.ID)
		require.NoError(t, err)
		require.Equal(t, ep.ID, got.ID)
		require.Equal(t, ep.CreatedAt.UnixMilli(), got.CreatedAt.UnixMilli())

		// Same key, same scope: nothing inserted, and the holder is found.
		dup, err := f.st.EpisodeInsert(ctx, f.schema.DB, &store.EpisodeInsertParams{ID: uuid.New(), ActorID: "mailer",
			MaxAttempts: 3, DedupeKey: "k1", SourceStack: "web", SourceEnv: "prod"})
		require.NoError(t, err)
		require.Nil(t, dup)
		holder, err := f.st.EpisodeGetByDedupeKey(ctx, f.schema.DB, "mailer", "web", "prod", "k1")
		require.NoError(t, err)
		require.Equal(t, ep.ID, holder.ID)

		// Another scope or actor is another episode.
		for _, p := range []store.EpisodeInsertParams{
			{ActorID: "mailer", DedupeKey: "k1", SourceStack: "web", SourceEnv: "staging"},
			{ActorID: "billing", DedupeKey: "k1", SourceStack: "web", SourceEnv: "prod"},
			{ActorID: "mailer", DedupeKey: "k1", SourceEnv: "prod"},
		} {
			other := f.insert(t, p)
			require.NotEqual(t, ep.ID, other.ID)
		}
		_, err = f.st.EpisodeGetByDedupeKey(ctx, f.schema.DB, "mailer", "api", "prod", "k1")
		require.ErrorIs(t, err, dbx.ErrNotFound)

		_, err = f.st.EpisodeGet(ctx, f.schema.DB, uuid.New())
		require.ErrorIs(t, err, dbx.ErrNotFound)
		_, _, err = f.st.EpisodeState(ctx, f.schema.DB, uuid.New())
		require.ErrorIs(t, err, dbx.ErrNotFound)
	})
}

func TestEpisodeTransitions(t *testing.T) {
	testdb.Each(t, testdb.Drivers, func(t *testing.T, driver string) {
		f := setup(t, driver)
		ctx := context.Background()
		ep := f.insert(t, store.EpisodeInsertParams{})

		run, err := f.move(t, store.TransitionParams{Move: store.TransitionClaim, ID: ep.ID, Node: "n1"})
		require.NoError(t, err)
		require.Equal(t, store.StatusRunning, run.Status)
		require.Equal(t, int64(1), run.ClaimToken)
		require.Equal(t, 1, run.Attempts)
		require.Equal(t, "n1", run.OwnerNode)
		require.NotNil(t, run.StartedAt)

		// A second claim and every stale-token write match nothing.
		_, err = f.move(t, store.TransitionParams{Move: store.TransitionClaim, ID: ep.ID, Node: "n2"})
		require.ErrorIs(t, err, dbx.ErrNotFound)
		for _, m := range []store.Transition{store.TransitionComplete, store.TransitionFail, store.TransitionBlock,
			store.TransitionRelease, store.TransitionSetPhase} {
			_, err = f.move(t, store.TransitionParams{Move: m, ID: ep.ID, ClaimToken: 0, ErrorClass: "x", Phase: "p"})
			require.ErrorIs(t, err, dbx.ErrNotFound, "move %d with a stale token", m)
		}
		status, token, err := f.st.EpisodeState(ctx, f.schema.DB, ep.ID)
		require.NoError(t, err)
		require.Equal(t, "running", status)
		require.Equal(t, int64(1), token)

		phased, err := f.move(t, store.TransitionParams{Move: store.TransitionSetPhase, ID: ep.ID, ClaimToken: 1, Phase: "half"})
		require.NoError(t, err)
		require.Equal(t, "half", phased.Phase)

		// Release gives the attempt back; the next claim bumps the token.
		rel, err := f.move(t, store.TransitionParams{Move: store.TransitionRelease, ID: ep.ID, ClaimToken: 1})
		require.NoError(t, err)
		require.Equal(t, store.StatusPending, rel.Status)
		require.Equal(t, 0, rel.Attempts)
		require.Empty(t, rel.OwnerNode)
		run, err = f.move(t, store.TransitionParams{Move: store.TransitionClaim, ID: ep.ID, Node: "n2"})
		require.NoError(t, err)
		require.Equal(t, int64(2), run.ClaimToken)

		blocked, err := f.move(t, store.TransitionParams{Move: store.TransitionBlock, ID: ep.ID, ClaimToken: 2, Phase: "approval"})
		require.NoError(t, err)
		require.Equal(t, store.StatusBlocked, blocked.Status)
		resumed, err := f.move(t, store.TransitionParams{Move: store.TransitionResume, ID: ep.ID})
		require.NoError(t, err)
		require.Equal(t, store.StatusPending, resumed.Status)
		require.Empty(t, resumed.Phase)
		run, err = f.move(t, store.TransitionParams{Move: store.TransitionClaim, ID: ep.ID, Node: "n3"})
		require.NoError(t, err)

		done, err := f.move(t, store.TransitionParams{Move: store.TransitionComplete, ID: ep.ID, ClaimToken: run.ClaimToken, Result: `{"ok":true}`})
		require.NoError(t, err)
		require.Equal(t, store.StatusDone, done.Status)
		require.JSONEq(t, `{"ok":true}`, string(done.Result))
		require.NotNil(t, done.FinishedAt)
		_, err = f.move(t, store.TransitionParams{Move: store.TransitionCancel, ID: ep.ID})
		require.ErrorIs(t, err, dbx.ErrNotFound, "a terminal episode cannot be canceled")
		arch, err := f.move(t, store.TransitionParams{Move: store.TransitionArchive, ID: ep.ID})
		require.NoError(t, err)
		require.NotNil(t, arch.ArchivedAt)

		// Fail and cancel record their class and detail.
		other := f.insert(t, store.EpisodeInsertParams{})
		run, err = f.move(t, store.TransitionParams{Move: store.TransitionClaim, ID: other.ID, Node: "n1"})
		require.NoError(t, err)
		failed, err := f.move(t, store.TransitionParams{Move: store.TransitionFail, ID: other.ID, ClaimToken: run.ClaimToken,
			ErrorClass: "panic", ErrorDetail: `{"message":"boom"}`})
		require.NoError(t, err)
		require.Equal(t, "panic", failed.ErrorClass)
		require.JSONEq(t, `{"message":"boom"}`, string(failed.ErrorDetail))
		third := f.insert(t, store.EpisodeInsertParams{})
		canceled, err := f.move(t, store.TransitionParams{Move: store.TransitionCancel, ID: third.ID, ErrorDetail: `{"reason":"user"}`})
		require.NoError(t, err)
		require.Equal(t, store.StatusCanceled, canceled.Status)
		require.Equal(t, "canceled", canceled.ErrorClass)
		require.NotNil(t, canceled.CancelRequestedAt)
	})
}

// Many claimers race for one episode: exactly one wins, on every backend.
func TestEpisodeClaimIsACompareAndSet(t *testing.T) {
	testdb.Each(t, testdb.Drivers, func(t *testing.T, driver string) {
		f := setup(t, driver)
		ep := f.insert(t, store.EpisodeInsertParams{})
		var wins atomic.Int32
		var wg sync.WaitGroup
		unexpected := make(chan error, 12)
		for i := range 12 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := f.st.EpisodeTransition(context.Background(), f.schema.DB,
					&store.TransitionParams{Move: store.TransitionClaim, ID: ep.ID, Node: fmt.Sprintf("n%d", i)})
				if err == nil {
					wins.Add(1)
					return
				}
				// Losers see no row; SQLite may also report the file busy.
				if !errors.Is(err, dbx.ErrNotFound) && !dbx.IsRetryable(err) {
					unexpected <- err
				}
			}()
		}
		wg.Wait()
		close(unexpected)
		for err := range unexpected {
			require.NoError(t, err)
		}
		require.Equal(t, int32(1), wins.Load())
	})
}

func TestEpisodeListPagesAndSkipsUnreadableRows(t *testing.T) {
	testdb.Each(t, testdb.Drivers, func(t *testing.T, driver string) {
		f := setup(t, driver)
		ctx := context.Background()
		var ids []uuid.UUID
		for i := range 5 {
			actor := "a"
			if i == 4 {
				actor = "b"
			}
			ids = append(ids, f.insert(t, store.EpisodeInsertParams{ActorID: actor}).ID)
		}
		corrupt := `UPDATE revenant_episodes SET cancel_requested_at = 'infinity' WHERE id = $1`
		if f.schema.IsSQLite() {
			corrupt = `UPDATE revenant_episodes SET attempts = 'many' WHERE id = $1`
		}
		_, err := f.schema.DB.Exec(corrupt, ids[1])
		require.NoError(t, err)

		_, err = f.st.EpisodeGet(ctx, f.schema.DB, ids[1])
		require.ErrorIs(t, err, dbx.ErrCorruptRow)

		rows, err := f.st.EpisodeList(ctx, f.schema.DB, &store.EpisodeListParams{ActorID: "a", Limit: 3})
		require.NoError(t, err)
		require.Len(t, rows, 3)
		require.Equal(t, ids[0], rows[0].ID)
		require.Equal(t, ids[1], rows[1].ID, "an unreadable row keeps its id")
		require.Nil(t, rows[1].Episode)
		require.ErrorIs(t, rows[1].Err, dbx.ErrCorruptRow)
		require.Equal(t, ids[2], rows[2].Episode.ID)

		rows, err = f.st.EpisodeList(ctx, f.schema.DB, &store.EpisodeListParams{ActorID: "a", After: ids[2], Limit: 10})
		require.NoError(t, err)
		require.Len(t, rows, 1)
		require.Equal(t, ids[3], rows[0].ID)

		rows, err = f.st.EpisodeList(ctx, f.schema.DB, &store.EpisodeListParams{Statuses: []store.Status{store.StatusRunning}, Limit: 10})
		require.NoError(t, err)
		require.Empty(t, rows)
	})
}

// A move can carry its events in its statement: written only when the
// move matched its row (a fenced-off holder writes neither).
func TestEpisodeTransitionWritesItsEventsOnlyWhenItMoves(t *testing.T) {
	testdb.Each(t, testdb.Drivers, func(t *testing.T, driver string) {
		f := setup(t, driver)
		ctx := context.Background()
		ep := f.insert(t, store.EpisodeInsertParams{})
		run, err := f.move(t, store.TransitionParams{Move: store.TransitionClaim, ID: ep.ID, Node: "n1"})
		require.NoError(t, err)
		event := func() []store.Event {
			return []store.Event{{ID: uuid.Must(uuid.NewV7()), Type: "episode.completed", EpisodeID: ep.ID, ActorID: ep.ActorID, Status: "done"}}
		}
		complete := func(token int64) (*store.Episode, error) {
			return f.move(t, store.TransitionParams{Move: store.TransitionComplete, ID: ep.ID, ClaimToken: token, Result: `"ok"`, Events: event()})
		}
		if !f.st.Capabilities().StatementEvents {
			_, err := complete(run.ClaimToken)
			require.Error(t, err)
			got, err := f.st.EpisodeGet(ctx, f.schema.DB, ep.ID)
			require.NoError(t, err)
			require.Equal(t, store.StatusRunning, got.Status, "refused, not half done")
			return
		}
		_, err = complete(run.ClaimToken + 1)
		require.ErrorIs(t, err, dbx.ErrNotFound, "a stale token moves nothing")
		evs, err := f.st.EventReadAfter(ctx, f.schema.DB, 0, 10)
		require.NoError(t, err)
		require.Empty(t, evs, "and writes no event")

		done, err := complete(run.ClaimToken)
		require.NoError(t, err)
		require.Equal(t, store.StatusDone, done.Status)
		require.JSONEq(t, `"ok"`, string(done.Result))
		evs, err = f.st.EventReadAfter(ctx, f.schema.DB, 0, 10)
		require.NoError(t, err)
		require.Len(t, evs, 1)
		require.Equal(t, "episode.completed", evs[0].Event.Type)
		require.Equal(t, ep.ID, evs[0].Event.EpisodeID)
		require.Equal(t, "done", evs[0].Event.Status)
	})
}
