package revenanttest

import (
	"context"
	"errors"
	"testing"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/journal"
	"github.com/revenant-go/revenant/runner"
)

func TestRunEpisode(t *testing.T) {
	eachBackend(t, func(t *testing.T, open func(TB) *sqlx.DB) {
		db := open(t)
		createOrders(t, db)
		res := RunEpisode(t, db, inserter(db, true), fruit)
		require.NoError(t, res.Err)
		require.JSONEq(t, `[5, 4, 3]`, string(res.Result))
		require.Equal(t, episodes.StatusDone, res.Episode.Status)
		require.Equal(t, []string{"insert-apple", "insert-pear", "insert-fig"}, stepNames(res.Steps))
		require.JSONEq(t, `4`, string(res.Steps[1].Output))
		n, err := countOrders(context.Background(), db)
		require.NoError(t, err)
		require.Equal(t, 3, n)

		failing := runner.Actor{ID: "failing", Run: func(ctx context.Context, ep *episodes.Episode, j *journal.Journal) (any, error) {
			if _, err := journal.Step(ctx, j, "first", func(context.Context) (int, error) { return 1, nil }); err != nil {
				return nil, err
			}
			return nil, errors.New("the warehouse is closed")
		}}
		res = RunEpisode(t, db, failing, nil)
		var epErr *EpisodeError
		require.ErrorAs(t, res.Err, &epErr)
		require.Equal(t, episodes.StatusFailed, epErr.Status)
		require.Equal(t, "error", epErr.Class)
		require.Equal(t, "the warehouse is closed", epErr.Message)
		require.Equal(t, 1, res.Episode.Attempts, "one attempt, no retry")
		require.Equal(t, []string{"first"}, stepNames(res.Steps))
	})
}

func TestRequireAssertions(t *testing.T) {
	eachBackend(t, func(t *testing.T, open func(TB) *sqlx.DB) {
		db := open(t)
		ctx := context.Background()
		st, err := episodes.New(db, nil)
		require.NoError(t, err)
		res, err := st.Create(ctx, episodes.CreateParams{ActorID: "invoicer", Input: map[string]int{"order": 42}, DedupeKey: "invoice-42"})
		require.NoError(t, err)
		id := res.Episode.ID
		_, err = st.Create(ctx, episodes.CreateParams{ActorID: "mailer", Input: "hello"})
		require.NoError(t, err)

		ep := RequireEnqueued(t, db, "invoicer", &RequireEnqueuedOpts{Input: map[string]int{"order": 42}, Status: episodes.StatusPending, DedupeKey: "invoice-42", Count: 1})
		require.Equal(t, id, ep.ID)
		require.Equal(t, id, RequireEpisode(t, db, id, episodes.StatusPending).ID)

		r := record(t, func(r *recorder) {
			RequireEnqueued(r, db, "invoicer", &RequireEnqueuedOpts{Input: map[string]int{"order": 7}})
		})
		require.Contains(t, r.fatalsText(), `no episode of actor "invoicer" with input {"order":7} was enqueued; the episodes of "invoicer" are:`)
		require.Contains(t, r.fatalsText(), id.String()+`: pending, input {"order":42}, dedupe key "invoice-42"`)

		r = record(t, func(r *recorder) { RequireEnqueued(r, db, "invoicr", nil) })
		require.Contains(t, r.fatalsText(), `no episode of actor "invoicr" was enqueued; there is no episode of that actor at all; episodes exist for: "invoicer" (1), "mailer" (1)`)

		r = record(t, func(r *recorder) { RequireEnqueued(r, db, "invoicer", &RequireEnqueuedOpts{Count: 2}) })
		require.Contains(t, r.fatalsText(), `want 2 episodes of actor "invoicer", found 1 matching`)

		r = record(t, func(r *recorder) { RequireEpisode(r, db, id, episodes.StatusDone) })
		require.Contains(t, r.fatalsText(), `episode `+id.String()+` of actor "invoicer" is pending, want done (attempt 0 of 3)`)

		// Steps, from a real run.
		createOrders(t, db)
		run := RunEpisode(t, db, inserter(db, true), orderInput{Items: []string{"a", "b"}})
		steps := RequireSteps(t, db, run.Episode.ID, "insert-a", "insert-b")
		require.Len(t, steps, 2)
		r = record(t, func(r *recorder) { RequireSteps(r, db, run.Episode.ID, "insert-a", "insert-c") })
		require.Contains(t, r.fatalsText(), `recorded steps ["insert-a", "insert-b"], want ["insert-a", "insert-c"]; step 1 is "insert-b", want "insert-c"`)
		r = record(t, func(r *recorder) { RequireSteps(r, db, run.Episode.ID, "insert-a") })
		require.Contains(t, r.fatalsText(), `step 1 is "insert-b", want nothing`)
	})
}
