package episodes_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant"
	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/internal/testdb"
)

type bundle struct {
	schema *testdb.Schema
	store  *episodes.Store
}

func setup(t *testing.T, driver string) *bundle {
	t.Helper()
	s := testdb.New(t, &testdb.Options{Driver: driver, MaxOpenConns: 16})
	store, err := episodes.New(s.DB, &episodes.Config{Stack: "web", Env: "prod"})
	require.NoError(t, err)
	return &bundle{schema: s, store: store}
}

func create(t *testing.T, st *episodes.Store, p episodes.CreateParams) *episodes.Episode {
	t.Helper()
	if p.ActorID == "" {
		p.ActorID = "mailer"
	}
	res, err := st.Create(context.Background(), p)
	require.NoError(t, err)
	require.False(t, res.Duplicate)
	return res.Episode
}

// Both drivers go through the full lifecycle.
func TestLifecycle(t *testing.T) {
	t.Parallel()
	for _, driver := range testdb.Drivers {
		t.Run(driver, func(t *testing.T) {
			t.Parallel()
			b := setup(t, driver)
			ctx := context.Background()
			wf := uuid.New()
			ep := create(t, b.store, episodes.CreateParams{
				ActorID: "mailer", Expectation: "welcome", Input: map[string]any{"to": "ann@example.com"},
				WorkflowInstanceID: wf, WorkflowStepID: "send", Metadata: map[string]int{"v": 1},
			})
			require.Equal(t, episodes.StatusPending, ep.Status)
			require.Equal(t, 0, ep.Attempts)
			require.Equal(t, episodes.MaxAttemptsDefault, ep.MaxAttempts)
			require.Equal(t, "web", ep.SourceStack)
			require.Equal(t, "prod", ep.SourceEnv)
			require.Equal(t, wf, ep.WorkflowInstanceID)
			require.JSONEq(t, `{"to":"ann@example.com"}`, string(ep.Input))
			require.JSONEq(t, `{"v":1}`, string(ep.Metadata))
			require.Nil(t, ep.FinishedAt)
			require.Equal(t, byte(7), ep.ID[6]>>4, "ids are UUIDv7")

			claimed, err := b.store.Claim(ctx, ep.ID, "node-a")
			require.NoError(t, err)
			require.Equal(t, episodes.StatusRunning, claimed.Status)
			require.Equal(t, int64(1), claimed.ClaimToken)
			require.Equal(t, 1, claimed.Attempts)
			require.Equal(t, "node-a", claimed.OwnerNode)
			require.NotNil(t, claimed.StartedAt)

			_, err = b.store.SetPhase(ctx, ep.ID, claimed.ClaimToken, "drafting")
			require.NoError(t, err)

			done, err := b.store.Complete(ctx, ep.ID, claimed.ClaimToken, map[string]bool{"sent": true})
			require.NoError(t, err)
			require.Equal(t, episodes.StatusDone, done.Status)
			require.NotNil(t, done.FinishedAt)
			require.Equal(t, "drafting", done.Phase)
			require.JSONEq(t, `{"sent":true}`, string(done.Result))

			// done → running is refused, and so is a second completion.
			_, err = b.store.Claim(ctx, ep.ID, "node-b")
			require.ErrorIs(t, err, episodes.ErrIllegalTransition)
			require.Contains(t, err.Error(), "status is done")
			_, err = b.store.Complete(ctx, ep.ID, claimed.ClaimToken, nil)
			require.ErrorIs(t, err, episodes.ErrIllegalTransition)

			got, err := b.store.Get(ctx, ep.ID)
			require.NoError(t, err)
			require.Equal(t, episodes.StatusDone, got.Status)

			archived, err := b.store.Archive(ctx, ep.ID)
			require.NoError(t, err)
			require.NotNil(t, archived.ArchivedAt)
		})
	}
}

func TestTransitionsRefuseIllegalMovesAndStaleTokens(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		b := setup(t, driver)
		ctx := context.Background()
		st := b.store

		ep := create(t, st, episodes.CreateParams{})
		// A pending episode has no holder: fenced moves are refused.
		_, err := st.Complete(ctx, ep.ID, 0, nil)
		require.ErrorIs(t, err, episodes.ErrIllegalTransition)
		_, err = st.Resume(ctx, ep.ID)
		require.ErrorIs(t, err, episodes.ErrIllegalTransition)
		_, err = st.Archive(ctx, ep.ID)
		require.ErrorIs(t, err, episodes.ErrIllegalTransition)

		c1, err := st.Claim(ctx, ep.ID, "a")
		require.NoError(t, err)
		// Graceful release gives the attempt back.
		rel, err := st.Release(ctx, ep.ID, c1.ClaimToken)
		require.NoError(t, err)
		require.Equal(t, episodes.StatusPending, rel.Status)
		require.Equal(t, 0, rel.Attempts)
		require.Empty(t, rel.OwnerNode)

		c2, err := st.Claim(ctx, ep.ID, "b")
		require.NoError(t, err)
		require.Equal(t, c1.ClaimToken+1, c2.ClaimToken)

		// The old holder is fenced off on every write.
		_, err = st.Complete(ctx, ep.ID, c1.ClaimToken, "zombie")
		require.ErrorIs(t, err, episodes.ErrLeaseLost)
		require.NotErrorIs(t, err, episodes.ErrIllegalTransition)
		_, err = st.Fail(ctx, ep.ID, c1.ClaimToken, "x", nil)
		require.ErrorIs(t, err, episodes.ErrLeaseLost)
		_, err = st.SetPhase(ctx, ep.ID, c1.ClaimToken, "x")
		require.ErrorIs(t, err, episodes.ErrLeaseLost)
		_, err = st.Block(ctx, ep.ID, c1.ClaimToken, "x")
		require.ErrorIs(t, err, episodes.ErrLeaseLost)

		blocked, err := st.Block(ctx, ep.ID, c2.ClaimToken, "awaiting approval")
		require.NoError(t, err)
		require.Equal(t, episodes.StatusBlocked, blocked.Status)
		resumed, err := st.Resume(ctx, ep.ID)
		require.NoError(t, err)
		require.Equal(t, episodes.StatusPending, resumed.Status)

		c3, err := st.Claim(ctx, ep.ID, "c")
		require.NoError(t, err)
		failed, err := st.Fail(ctx, ep.ID, c3.ClaimToken, "panic", map[string]string{"stack": "..."})
		require.NoError(t, err)
		require.Equal(t, episodes.StatusFailed, failed.Status)
		require.Equal(t, "panic", failed.ErrorClass)
		require.NotNil(t, failed.FinishedAt)
		require.Equal(t, 2, failed.Attempts, "claims count attempts; the graceful release gave one back")

		_, err = st.Cancel(ctx, ep.ID, "too late")
		require.ErrorIs(t, err, episodes.ErrIllegalTransition)

		_, err = st.Claim(ctx, uuid.New(), "a")
		require.ErrorIs(t, err, episodes.ErrNotFound)
	})
}

func TestCancelFencesTheRunningHolder(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		b := setup(t, driver)
		ctx := context.Background()
		ep := create(t, b.store, episodes.CreateParams{})
		c, err := b.store.Claim(ctx, ep.ID, "a")
		require.NoError(t, err)

		canceled, err := b.store.Cancel(ctx, ep.ID, "user asked")
		require.NoError(t, err)
		require.Equal(t, episodes.StatusCanceled, canceled.Status)
		require.NotNil(t, canceled.CancelRequestedAt)
		require.NotNil(t, canceled.FinishedAt)
		require.JSONEq(t, `{"reason":"user asked"}`, string(canceled.ErrorDetail))

		_, err = b.store.Complete(ctx, ep.ID, c.ClaimToken, nil)
		require.ErrorIs(t, err, episodes.ErrLeaseLost, "the holder's token is unchanged but the episode was canceled under it")
	})
}

func TestConcurrentClaimsOneWinner(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		b := setup(t, driver)
		ctx := context.Background()
		ep := create(t, b.store, episodes.CreateParams{})

		const racers = 16
		var wins, refused atomic.Int32
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range racers {
			wg.Go(func() {
				<-start
				_, err := b.store.Claim(ctx, ep.ID, fmt.Sprintf("node-%d", i))
				switch {
				case err == nil:
					wins.Add(1)
				case errors.Is(err, episodes.ErrIllegalTransition):
					refused.Add(1)
				default:
					t.Errorf("unexpected error: %v", err)
				}
			})
		}
		close(start)
		wg.Wait()
		require.Equal(t, int32(1), wins.Load())
		require.Equal(t, int32(racers-1), refused.Load())
		got, err := b.store.Get(ctx, ep.ID)
		require.NoError(t, err)
		require.Equal(t, int64(1), got.ClaimToken)
		require.Equal(t, 1, got.Attempts)
	})
}

func TestConcurrentTerminalMovesOneWinner(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		b := setup(t, driver)
		ctx := context.Background()
		ep := create(t, b.store, episodes.CreateParams{})
		c, err := b.store.Claim(ctx, ep.ID, "a")
		require.NoError(t, err)

		const racers = 12
		var wins atomic.Int32
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range racers {
			wg.Go(func() {
				<-start
				var err error
				switch i % 3 {
				case 0:
					_, err = b.store.Complete(ctx, ep.ID, c.ClaimToken, i)
				case 1:
					_, err = b.store.Fail(ctx, ep.ID, c.ClaimToken, "boom", i)
				default:
					_, err = b.store.Cancel(ctx, ep.ID, "racing")
				}
				if err == nil {
					wins.Add(1)
					return
				}
				if !errors.Is(err, episodes.ErrIllegalTransition) && !errors.Is(err, episodes.ErrLeaseLost) {
					t.Errorf("unexpected error: %v", err)
				}
			})
		}
		close(start)
		wg.Wait()
		require.Equal(t, int32(1), wins.Load())
		got, err := b.store.Get(ctx, ep.ID)
		require.NoError(t, err)
		require.True(t, got.Status.Terminal())
	})
}

func TestDedupeKey(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		b := setup(t, driver)
		ctx := context.Background()

		const racers = 8
		results := make([]*episodes.CreateResult, racers)
		var wg sync.WaitGroup
		for i := range racers {
			wg.Go(func() {
				res, err := b.store.Create(ctx, episodes.CreateParams{ActorID: "billing", DedupeKey: "invoice-42", Input: i})
				require.NoError(t, err)
				results[i] = res
			})
		}
		wg.Wait()
		created := 0
		for _, r := range results {
			if !r.Duplicate {
				created++
			}
			require.Equal(t, results[0].Episode.ID, r.Episode.ID)
		}
		require.Equal(t, 1, created, "exactly one create wins; the others get the existing episode")
		var n int
		require.NoError(t, b.schema.DB.Get(&n, `SELECT count(*) FROM revenant_episodes WHERE dedupe_key = 'invoice-42'`))
		require.Equal(t, 1, n)

		// Once archived, the key is free again.
		id := results[0].Episode.ID
		c, err := b.store.Claim(ctx, id, "a")
		require.NoError(t, err)
		_, err = b.store.Complete(ctx, id, c.ClaimToken, nil)
		require.NoError(t, err)
		_, err = b.store.Archive(ctx, id)
		require.NoError(t, err)
		res, err := b.store.Create(ctx, episodes.CreateParams{ActorID: "billing", DedupeKey: "invoice-42"})
		require.NoError(t, err)
		require.False(t, res.Duplicate)
		require.NotEqual(t, id, res.Episode.ID)
	})
}

func TestCreateTxJoinsCallerTransaction(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		b := setup(t, driver)
		ctx := context.Background()
		tx, err := b.schema.DB.BeginTxx(ctx, nil)
		require.NoError(t, err)
		res, err := b.store.CreateTx(ctx, tx, episodes.CreateParams{ActorID: "a"})
		require.NoError(t, err)
		// Visible inside the transaction, gone after rollback.
		_, err = b.store.GetTx(ctx, tx, res.Episode.ID)
		require.NoError(t, err)
		require.NoError(t, tx.Rollback())
		_, err = b.store.Get(ctx, res.Episode.ID)
		require.ErrorIs(t, err, episodes.ErrNotFound)

		// A plain *sql.Tx works too.
		sqlTx, err := b.schema.DB.BeginTx(ctx, nil)
		require.NoError(t, err)
		res, err = b.store.CreateTx(ctx, sqlTx, episodes.CreateParams{ActorID: "a"})
		require.NoError(t, err)
		require.NoError(t, sqlTx.Commit())
		_, err = b.store.Get(ctx, res.Episode.ID)
		require.NoError(t, err)
	})
}

func TestListFiltersAndKeysetPaging(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		b := setup(t, driver)
		ctx := context.Background()
		wf := uuid.New()
		var mailers []uuid.UUID
		for i := range 7 {
			ep := create(t, b.store, episodes.CreateParams{ActorID: "mailer", Input: i})
			mailers = append(mailers, ep.ID)
		}
		create(t, b.store, episodes.CreateParams{ActorID: "billing", SourceStack: "jobs", SourceEnv: "staging", WorkflowInstanceID: wf})
		running := create(t, b.store, episodes.CreateParams{ActorID: "billing"})
		_, err := b.store.Claim(ctx, running.ID, "n")
		require.NoError(t, err)

		var paged []uuid.UUID
		p := episodes.ListParams{ActorID: "mailer", Limit: 3}
		pages := 0
		for {
			res, err := b.store.List(ctx, p)
			require.NoError(t, err)
			pages++
			for _, e := range res.Episodes {
				paged = append(paged, e.ID)
			}
			if res.Next == uuid.Nil {
				break
			}
			p.After = res.Next
		}
		require.Equal(t, mailers, paged, "every mailer once, in creation order")
		require.Equal(t, 3, pages)

		count := func(p episodes.ListParams) int {
			res, err := b.store.List(ctx, p)
			require.NoError(t, err)
			return len(res.Episodes)
		}
		require.Equal(t, 1, count(episodes.ListParams{Statuses: []episodes.Status{episodes.StatusRunning}}))
		require.Equal(t, 8, count(episodes.ListParams{Statuses: []episodes.Status{episodes.StatusPending}}))
		require.Equal(t, 1, count(episodes.ListParams{Stack: "jobs"}))
		require.Equal(t, 8, count(episodes.ListParams{Env: "prod"}))
		require.Equal(t, 1, count(episodes.ListParams{Env: "staging"}))
		require.Equal(t, 1, count(episodes.ListParams{WorkflowInstanceID: wf}))
		require.Equal(t, 9, count(episodes.ListParams{}))

		_, err = b.store.List(ctx, episodes.ListParams{Statuses: []episodes.Status{"zombie"}})
		require.ErrorIs(t, err, episodes.ErrInvalidInput)
		_, err = b.store.List(ctx, episodes.ListParams{Limit: -1})
		require.ErrorIs(t, err, episodes.ErrInvalidInput)
	})
}

func TestBadInputGivesErrorsNotPanics(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		_, err := episodes.New(nil, nil)
		require.ErrorIs(t, err, episodes.ErrInvalidInput)
		require.Contains(t, err.Error(), "WrapDB")
		require.Nil(t, revenant.WrapDB(nil))

		b := setup(t, driver)
		ctx := context.Background()
		_, err = episodes.New(b.schema.DB, &episodes.Config{MaxAttempts: -1})
		require.ErrorIs(t, err, episodes.ErrInvalidInput)

		_, err = b.store.Create(ctx, episodes.CreateParams{})
		require.ErrorIs(t, err, episodes.ErrInvalidInput)
		require.Contains(t, err.Error(), "ActorID")

		_, err = b.store.Create(ctx, episodes.CreateParams{ActorID: "a", Input: json.RawMessage(`{"broken":`)})
		require.ErrorIs(t, err, episodes.ErrInvalidInput)
		require.ErrorIs(t, err, revenant.ErrNotJSON)

		_, err = b.store.Create(ctx, episodes.CreateParams{ActorID: "a", Input: make(chan int)})
		require.ErrorIs(t, err, revenant.ErrNotJSON)

		small, err := episodes.New(b.schema.DB, &episodes.Config{MaxJSONBytes: 16})
		require.NoError(t, err)
		_, err = small.Create(ctx, episodes.CreateParams{ActorID: "a", Input: "a string longer than sixteen bytes"})
		require.ErrorIs(t, err, revenant.ErrTooLarge)

		_, err = b.store.Fail(ctx, uuid.New(), 1, "", nil)
		require.ErrorIs(t, err, episodes.ErrInvalidInput)
		_, err = b.store.Claim(ctx, uuid.New(), "")
		require.ErrorIs(t, err, episodes.ErrInvalidInput)

		var n int
		require.NoError(t, b.schema.DB.Get(&n, `SELECT count(*) FROM revenant_episodes`))
		require.Zero(t, n, "no bad input wrote anything")

		// A row with a status this version does not know is reported, not
		// mis-read (another tool or a newer version wrote it).
		ep := create(t, b.store, episodes.CreateParams{})
		if b.schema.IsSQLite() {
			// SQLite cannot drop a CHECK; bypass it on one connection.
			conn, err := b.schema.DB.Conn(ctx)
			require.NoError(t, err)
			_, err = conn.ExecContext(ctx, `PRAGMA ignore_check_constraints = ON`)
			require.NoError(t, err)
			_, err = conn.ExecContext(ctx, `UPDATE revenant_episodes SET status = 'zombie' WHERE id = $1`, ep.ID)
			require.NoError(t, err)
			_, err = conn.ExecContext(ctx, `PRAGMA ignore_check_constraints = OFF`)
			require.NoError(t, err)
			require.NoError(t, conn.Close())
		} else {
			_, err = b.schema.DB.Exec(`ALTER TABLE revenant_episodes DROP CONSTRAINT revenant_episodes_status_check`)
			require.NoError(t, err)
			_, err = b.schema.DB.Exec(`UPDATE revenant_episodes SET status = 'zombie' WHERE id = $1`, ep.ID)
			require.NoError(t, err)
		}
		_, err = b.store.Get(ctx, ep.ID)
		require.ErrorIs(t, err, episodes.ErrCorruptRow)
		require.Contains(t, err.Error(), "zombie")
		// List skips it, reporting its id, instead of failing the page.
		page, err := b.store.List(ctx, episodes.ListParams{})
		require.NoError(t, err)
		require.Empty(t, page.Episodes)
		require.Len(t, page.Skipped, 1)
		require.Equal(t, ep.ID, page.Skipped[0].ID)
		require.ErrorIs(t, page.Skipped[0].Err, episodes.ErrCorruptRow)
	})
}
