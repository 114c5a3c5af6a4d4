package storetest

import (
	"context"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant/internal/dbx"
	"github.com/revenant-go/revenant/internal/store"
	"github.com/revenant-go/revenant/internal/testdb"
)

func (f *fixture) claimMany(t *testing.T, p store.ClaimManyParams) []store.ClaimedRow {
	t.Helper()
	rows, err := f.st.EpisodeClaimMany(context.Background(), f.schema.DB, &p)
	require.NoError(t, err)
	return rows
}

func TestEpisodeClaimManyTakesOldestInScope(t *testing.T) {
	testdb.Each(t, testdb.Drivers, func(t *testing.T, driver string) {
		f := setup(t, driver)
		var mine []uuid.UUID
		for range 3 {
			mine = append(mine, f.insert(t, store.EpisodeInsertParams{ActorID: "a", SourceStack: "web", SourceEnv: "prod"}).ID)
		}
		anyStack := f.insert(t, store.EpisodeInsertParams{ActorID: "a", SourceEnv: "prod"}).ID
		f.insert(t, store.EpisodeInsertParams{ActorID: "a", SourceStack: "api", SourceEnv: "prod"})
		f.insert(t, store.EpisodeInsertParams{ActorID: "a", SourceStack: "web", SourceEnv: "dev"})
		f.insert(t, store.EpisodeInsertParams{ActorID: "a", SourceStack: "web"})
		f.insert(t, store.EpisodeInsertParams{ActorID: "b", SourceStack: "web", SourceEnv: "prod"})

		scope := store.Scope{Stack: "web", Env: "prod"}
		rows := f.claimMany(t, store.ClaimManyParams{Node: "n1", ActorID: "a", Limit: 2, Scope: scope})
		require.Len(t, rows, 2)
		for i, r := range rows {
			require.NoError(t, r.Err)
			require.Equal(t, mine[i], r.Episode.ID, "oldest first")
			require.Equal(t, store.StatusRunning, r.Episode.Status)
			require.Equal(t, "n1", r.Episode.OwnerNode)
			require.Equal(t, int64(1), r.Token)
			require.Equal(t, 1, r.Episode.Attempts)
		}
		rows = f.claimMany(t, store.ClaimManyParams{Node: "n2", ActorID: "a", Limit: 10, Scope: scope})
		var got []uuid.UUID
		for _, r := range rows {
			got = append(got, r.ID)
		}
		require.ElementsMatch(t, []uuid.UUID{mine[2], anyStack}, got, "a row without a stack matches any stack; env is strict")
		require.Empty(t, f.claimMany(t, store.ClaimManyParams{Node: "n2", ActorID: "a", Limit: 10, Scope: scope}))

		all := f.claimMany(t, store.ClaimManyParams{Node: "n3", ActorID: "a", Limit: 10, Scope: store.Scope{AllStacks: true, AllEnvs: true}})
		require.Len(t, all, 3)
	})
}

// Claimers on many connections never claim one episode twice.
func TestEpisodeClaimManyNeverOverlaps(t *testing.T) {
	testdb.Each(t, testdb.Drivers, func(t *testing.T, driver string) {
		f := setup(t, driver)
		const total = 60
		for range total {
			f.insert(t, store.EpisodeInsertParams{ActorID: "a"})
		}
		var mu sync.Mutex
		seen := map[uuid.UUID]int{}
		var wg sync.WaitGroup
		errs := make(chan error, 8*total)
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					rows, err := f.st.EpisodeClaimMany(context.Background(), f.schema.DB,
						&store.ClaimManyParams{Node: "n", ActorID: "a", Limit: 4, Scope: store.Scope{}})
					if err != nil && !dbx.IsRetryable(err) {
						errs <- err
						return
					}
					mu.Lock()
					for _, r := range rows {
						seen[r.ID]++
					}
					n := len(seen)
					mu.Unlock()
					if n == total {
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
		require.Len(t, seen, total)
		for id, n := range seen {
			require.Equal(t, 1, n, "episode %s claimed %d times", id, n)
		}
	})
}

// A pending episode whose counters are exhausted cannot be claimed (its
// token cannot be bumped) and does not stop the others being claimed; a
// claimed row that cannot be read comes back with its id and token.
func TestEpisodeClaimManyEdgeRows(t *testing.T) {
	testdb.Each(t, testdb.Drivers, func(t *testing.T, driver string) {
		f := setup(t, driver)
		ctx := context.Background()
		exhausted := f.insert(t, store.EpisodeInsertParams{ActorID: "a"})
		_, err := f.schema.DB.Exec(`UPDATE revenant_episodes SET claim_token = $2 WHERE id = $1`, exhausted.ID, int64(math.MaxInt64))
		require.NoError(t, err)
		corrupt := f.insert(t, store.EpisodeInsertParams{ActorID: "a"})
		bad := `UPDATE revenant_episodes SET cancel_requested_at = 'infinity' WHERE id = $1`
		if f.schema.IsSQLite() {
			bad = `UPDATE revenant_episodes SET cancel_requested_at = 'not a time' WHERE id = $1`
		}
		_, err = f.schema.DB.Exec(bad, corrupt.ID)
		require.NoError(t, err)
		good := f.insert(t, store.EpisodeInsertParams{ActorID: "a"})

		rows := f.claimMany(t, store.ClaimManyParams{Node: "n1", ActorID: "a", Limit: 10, Scope: store.Scope{}})
		byID := map[uuid.UUID]store.ClaimedRow{}
		for _, r := range rows {
			byID[r.ID] = r
		}
		require.Len(t, rows, 2, "the exhausted row is left alone")
		require.NoError(t, byID[good.ID].Err)
		bc := byID[corrupt.ID]
		require.ErrorIs(t, bc.Err, dbx.ErrCorruptRow)
		require.Equal(t, int64(1), bc.Token)

		require.NoError(t, f.st.EpisodeFailUnreadable(ctx, f.schema.DB, bc.ID, bc.Token, `{"message":"unreadable"}`))
		status, _, err := f.st.EpisodeState(ctx, f.schema.DB, bc.ID)
		require.NoError(t, err)
		require.Equal(t, "failed", status)
	})
}

func TestEpisodeHandBackIsFencedByTokenAndOwner(t *testing.T) {
	testdb.Each(t, testdb.Drivers, func(t *testing.T, driver string) {
		f := setup(t, driver)
		ctx := context.Background()
		ep := f.insert(t, store.EpisodeInsertParams{ActorID: "a"})
		rows := f.claimMany(t, store.ClaimManyParams{Node: "n1", ActorID: "a", Limit: 1, Scope: store.Scope{}})
		require.Len(t, rows, 1)

		for _, tc := range []struct {
			token int64
			node  string
		}{{rows[0].Token + 1, "n1"}, {rows[0].Token, "n2"}} {
			ok, err := f.st.EpisodeHandBack(ctx, f.schema.DB, ep.ID, tc.token, tc.node)
			require.NoError(t, err)
			require.False(t, ok)
		}
		ok, err := f.st.EpisodeHandBack(ctx, f.schema.DB, ep.ID, rows[0].Token, "n1")
		require.NoError(t, err)
		require.True(t, ok)
		got, err := f.st.EpisodeGet(ctx, f.schema.DB, ep.ID)
		require.NoError(t, err)
		require.Equal(t, store.StatusPending, got.Status)
		require.Equal(t, 1, got.Attempts, "the attempt stays counted: the run did not finish")
		require.Empty(t, got.OwnerNode)
	})
}

// A claim returns each episode's journal, the same as StepLoad reads it,
// so that a restarted run starts without a read of its own.
func TestEpisodeClaimManyReturnsTheJournal(t *testing.T) {
	testdb.Each(t, testdb.Drivers, func(t *testing.T, driver string) {
		f := setup(t, driver)
		ctx := context.Background()
		ep := f.insert(t, store.EpisodeInsertParams{ActorID: "a"})
		fresh := f.insert(t, store.EpisodeInsertParams{ActorID: "a"})
		rows := f.claimMany(t, store.ClaimManyParams{Node: "n1", ActorID: "a", Limit: 1})
		require.Len(t, rows, 1)
		require.Equal(t, ep.ID, rows[0].ID)
		first := rows[0].Journal
		require.NotNil(t, first)
		require.Empty(t, first.Steps)
		require.Equal(t, 1, first.Attempts)
		require.Equal(t, rows[0].Token, first.ClaimToken)

		// Recorded out of order (seq 1 first), with a JSON null output and
		// a failed step.
		for _, s := range []store.StepRecordParams{
			{Seq: 1, Name: "second", Status: "done", Output: `null`},
			{Seq: 0, Name: "first", Status: "done", Output: `{"n": 1, "s": "x"}`},
			{Seq: 2, Name: "third", Status: "failed", Error: `{"message":"card declined"}`},
		} {
			s.EpisodeID, s.ClaimToken = ep.ID, rows[0].Token
			out, err := f.st.StepRecord(ctx, f.schema.DB, &s)
			require.NoError(t, err)
			require.Equal(t, store.StepRecorded, out)
		}
		ok, err := f.st.EpisodeHandBack(ctx, f.schema.DB, ep.ID, rows[0].Token, "n1")
		require.NoError(t, err)
		require.True(t, ok)

		rows = f.claimMany(t, store.ClaimManyParams{Node: "n2", ActorID: "a", Limit: 2})
		require.Len(t, rows, 2)
		byID := map[uuid.UUID]store.ClaimedRow{rows[0].ID: rows[0], rows[1].ID: rows[1]}
		got := byID[ep.ID].Journal
		require.NotNil(t, got)
		want, err := f.st.StepLoad(ctx, f.schema.DB, ep.ID)
		require.NoError(t, err)
		require.Equal(t, want.Status, got.Status)
		require.Equal(t, want.ClaimToken, got.ClaimToken)
		require.Equal(t, want.Attempts, got.Attempts)
		require.Equal(t, want.MaxAttempts, got.MaxAttempts)
		require.Len(t, got.Steps, 3)
		for i := range want.Steps {
			w, g := want.Steps[i], got.Steps[i]
			require.Equal(t, i, g.Seq)
			require.Equal(t, w.Name, g.Name)
			require.Equal(t, w.Status, g.Status)
			if len(w.Output) == 0 || string(w.Output) == "null" {
				require.Empty(t, g.Output, "step %d: JSON null reads as no output", i)
			} else {
				require.JSONEq(t, string(w.Output), string(g.Output))
			}
			if len(w.Error) == 0 {
				require.Empty(t, g.Error)
			} else {
				require.JSONEq(t, string(w.Error), string(g.Error))
			}
		}
		require.Equal(t, []string{"first", "second", "third"}, []string{got.Steps[0].Name, got.Steps[1].Name, got.Steps[2].Name})
		require.Empty(t, byID[fresh.ID].Journal.Steps)

		// The journal rides on a context for its own episode and claim only.
		jctx := store.WithClaimedJournal(ctx, ep.ID, got)
		require.Same(t, got, store.ClaimedJournal(jctx, ep.ID, got.ClaimToken))
		require.Nil(t, store.ClaimedJournal(jctx, ep.ID, got.ClaimToken+1))
		require.Nil(t, store.ClaimedJournal(jctx, fresh.ID, got.ClaimToken))
		require.Nil(t, store.ClaimedJournal(ctx, ep.ID, got.ClaimToken))
	})
}

// Where one statement can write events, a claim writes each claimed
// episode's event itself; elsewhere asking for it is refused, never
// ignored.
func TestEpisodeClaimManyWritesStartedEvents(t *testing.T) {
	testdb.Each(t, testdb.Drivers, func(t *testing.T, driver string) {
		f := setup(t, driver)
		ctx := context.Background()
		a := f.insert(t, store.EpisodeInsertParams{ActorID: "a"})
		b := f.insert(t, store.EpisodeInsertParams{ActorID: "a"})
		p := store.ClaimManyParams{Node: "n1", ActorID: "a", Limit: 5, StartedEvent: "episode.started"}
		if !f.st.Capabilities().StatementEvents {
			_, err := f.st.EpisodeClaimMany(ctx, f.schema.DB, &p)
			require.Error(t, err)
			return
		}
		rows := f.claimMany(t, p)
		require.Len(t, rows, 2)
		evs, err := f.st.EventReadAfter(ctx, f.schema.DB, 0, 10)
		require.NoError(t, err)
		require.Len(t, evs, 2)
		got := map[uuid.UUID]bool{}
		for _, rec := range evs {
			ev := rec.Event
			require.Equal(t, "episode.started", ev.Type)
			require.Equal(t, "a", ev.ActorID)
			require.Equal(t, "running", ev.Status)
			require.Equal(t, uuid.Version(7), ev.ID.Version(), "time-ordered, as Go's event ids")
			require.Less(t, time.Since(time.Unix(ev.ID.Time().UnixTime())).Abs(), time.Hour, "the id's time is now")
			got[ev.EpisodeID] = true
		}
		require.Equal(t, map[uuid.UUID]bool{a.ID: true, b.ID: true}, got)
		require.Empty(t, f.claimMany(t, p), "nothing left to claim")
		evs, err = f.st.EventReadAfter(ctx, f.schema.DB, 0, 10)
		require.NoError(t, err)
		require.Len(t, evs, 2, "a claim of nothing writes no event")
	})
}

// A step row whose JSON is malformed (SQLite stores text as given) does
// not fail the claim: that episode comes back without a journal, for
// journal.Open to read and report, and the rest of the batch is claimed.
func TestEpisodeClaimManySurvivesAMalformedStep(t *testing.T) {
	t.Parallel()
	f := setup(t, testdb.SQLite)
	ctx := context.Background()
	bad := f.insert(t, store.EpisodeInsertParams{ActorID: "a"})
	good := f.insert(t, store.EpisodeInsertParams{ActorID: "a"})
	_, err := f.schema.DB.ExecContext(ctx, `INSERT INTO revenant_steps (episode_id, seq, name, status, output, claim_token, started_at)
		VALUES ($1, 0, 'broken', 'done', '{not json', 0, `+f.schema.NowPlus(0)+`)`, bad.ID.String())
	require.NoError(t, err)
	rows := f.claimMany(t, store.ClaimManyParams{Node: "n1", ActorID: "a", Limit: 5})
	require.Len(t, rows, 2)
	byID := map[uuid.UUID]store.ClaimedRow{rows[0].ID: rows[0], rows[1].ID: rows[1]}
	require.NoError(t, byID[bad.ID].Err)
	require.Nil(t, byID[bad.ID].Journal, "no journal the claim could not read")
	require.NotNil(t, byID[good.ID].Journal)
	require.Empty(t, byID[good.ID].Journal.Steps)
}
