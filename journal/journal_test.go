package journal_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant"
	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/internal/testdb"
	"github.com/revenant-go/revenant/journal"
)

type bundle struct {
	db     *sqlx.DB
	store  *episodes.Store
	schema *testdb.Schema
}

func setup(t testing.TB, driver string) *bundle {
	t.Helper()
	s := testdb.New(t, &testdb.Options{Driver: driver, MaxOpenConns: 20})
	store, err := episodes.New(s.DB, nil)
	require.NoError(t, err)
	return &bundle{db: s.DB, store: store, schema: s}
}

// claimed creates an episode and claims it.
func (b *bundle) claimed(t testing.TB) *episodes.Episode {
	t.Helper()
	ctx := context.Background()
	res, err := b.store.Create(ctx, episodes.CreateParams{ActorID: "orders"})
	require.NoError(t, err)
	ep, err := b.store.Claim(ctx, res.Episode.ID, "node-1")
	require.NoError(t, err)
	return ep
}

// crashAndReclaim does to the episode what a recovery restart does: it goes
// back to pending and another node claims it with a new token.
func (b *bundle) crashAndReclaim(t testing.TB, ep *episodes.Episode) *episodes.Episode {
	t.Helper()
	_, err := b.db.Exec(`UPDATE revenant_episodes SET status = 'pending', owner_node = NULL WHERE id = $1`, ep.ID)
	require.NoError(t, err)
	again, err := b.store.Claim(context.Background(), ep.ID, "node-2")
	require.NoError(t, err)
	require.Greater(t, again.ClaimToken, ep.ClaimToken)
	return again
}

func (b *bundle) steps(t testing.TB, ep *episodes.Episode) int {
	t.Helper()
	var n int
	require.NoError(t, b.db.Get(&n, `SELECT count(*) FROM revenant_steps WHERE episode_id = $1`, ep.ID))
	return n
}

type order struct {
	ID    int      `json:"id"`
	Items []string `json:"items"`
}

func TestStepsAreMemoizedAcrossRestart(t *testing.T) {
	t.Parallel()
	for _, driver := range testdb.Drivers {
		t.Run(driver, func(t *testing.T) {
			t.Parallel()
			b := setup(t, driver)
			ctx := context.Background()
			ep := b.claimed(t)
			var fetchRuns, priceRuns, shipRuns atomic.Int32

			run := func(ep *episodes.Episode, crashAfterPrice bool) (string, error) {
				j, err := journal.Open(ctx, b.db, ep.ID, ep.ClaimToken, nil)
				if err != nil {
					return "", err
				}
				o, err := journal.Step(ctx, j, "fetch", func(ctx context.Context) (order, error) {
					fetchRuns.Add(1)
					return order{ID: 7, Items: []string{"tea", "cup"}}, nil
				})
				if err != nil {
					return "", err
				}
				total, err := journal.Step(ctx, j, "price", func(ctx context.Context) (float64, error) {
					priceRuns.Add(1)
					return float64(len(o.Items)) * 2.5, nil
				})
				if err != nil {
					return "", err
				}
				if crashAfterPrice {
					return "", errors.New("process died")
				}
				return journal.Step(ctx, j, "ship", func(ctx context.Context) (string, error) {
					shipRuns.Add(1)
					require.Equal(t, 5.0, total)
					require.Equal(t, 7, o.ID)
					return "shipped", nil
				})
			}

			_, err := run(ep, true)
			require.Error(t, err)
			require.Equal(t, 2, b.steps(t, ep))

			ep2 := b.crashAndReclaim(t, ep)
			out, err := run(ep2, false)
			require.NoError(t, err)
			require.Equal(t, "shipped", out)
			require.Equal(t, int32(1), fetchRuns.Load(), "completed steps are not run again")
			require.Equal(t, int32(1), priceRuns.Load())
			require.Equal(t, int32(1), shipRuns.Load())
			require.Equal(t, 3, b.steps(t, ep))

			var tokens []int64
			require.NoError(t, b.db.Select(&tokens, `SELECT claim_token FROM revenant_steps WHERE episode_id = $1 ORDER BY seq`, ep.ID))
			require.Equal(t, []int64{ep.ClaimToken, ep.ClaimToken, ep2.ClaimToken}, tokens, "each entry records the token that wrote it")
		})
	}
}

func TestStaleTokenWritesNothing(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		b := setup(t, driver)
		ctx := context.Background()
		ep := b.claimed(t)
		zombie, err := journal.Open(ctx, b.db, ep.ID, ep.ClaimToken, nil)
		require.NoError(t, err)
		_, err = journal.Step(ctx, zombie, "one", func(context.Context) (int, error) { return 1, nil })
		require.NoError(t, err)

		ep2 := b.crashAndReclaim(t, ep)

		// A plain step: fn runs (it cannot know), but nothing is recorded.
		_, err = journal.Step(ctx, zombie, "two", func(context.Context) (int, error) { return 2, nil })
		require.ErrorIs(t, err, journal.ErrLeaseLost)
		require.Equal(t, 1, b.steps(t, ep))

		// A transactional step's effect is rolled back with its refused
		// record: the fence is in the journal write, after fn.
		_, err = b.db.ExecContext(ctx, `CREATE TABLE zombie_effects (n integer)`)
		require.NoError(t, err)
		var ran atomic.Bool
		_, err = journal.StepTx(ctx, zombie, "two", func(ctx context.Context, tx *sqlx.Tx) (int, error) {
			ran.Store(true)
			_, err := tx.ExecContext(ctx, `INSERT INTO zombie_effects (n) VALUES (2)`)
			return 2, err
		})
		require.ErrorIs(t, err, journal.ErrLeaseLost)
		require.True(t, ran.Load())
		var effects int
		require.NoError(t, b.db.GetContext(ctx, &effects, `SELECT count(*) FROM zombie_effects`))
		require.Zero(t, effects, "the zombie's effect rolled back")
		require.Equal(t, 1, b.steps(t, ep))

		// Opening with the stale token is refused too; the new holder proceeds.
		_, err = journal.Open(ctx, b.db, ep.ID, ep.ClaimToken, nil)
		require.ErrorIs(t, err, journal.ErrLeaseLost)
		j2, err := journal.Open(ctx, b.db, ep.ID, ep2.ClaimToken, nil)
		require.NoError(t, err)
		require.Equal(t, 1, j2.Recorded())
		_, err = journal.Step(ctx, j2, "one", func(context.Context) (int, error) { panic("must not run") })
		require.NoError(t, err)
		_, err = journal.Step(ctx, j2, "two", func(context.Context) (int, error) { return 2, nil })
		require.NoError(t, err)
		require.Equal(t, 2, b.steps(t, ep))

		// Cancel from elsewhere: the holder's next write is refused.
		_, err = b.store.Cancel(ctx, ep.ID, "")
		require.NoError(t, err)
		_, err = journal.Step(ctx, j2, "three", func(context.Context) (int, error) { return 3, nil })
		require.ErrorIs(t, err, journal.ErrLeaseLost)
		require.Equal(t, 2, b.steps(t, ep))
	})
}

func TestStepUpdatesLastActivity(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		b := setup(t, driver)
		ctx := context.Background()
		ep := b.claimed(t)
		_, err := b.db.Exec(`UPDATE revenant_episodes SET last_activity_at = `+b.schema.NowPlus(-time.Hour)+` WHERE id = $1`, ep.ID)
		require.NoError(t, err)
		j, err := journal.Open(ctx, b.db, ep.ID, ep.ClaimToken, nil)
		require.NoError(t, err)
		_, err = journal.Step(ctx, j, "a", func(context.Context) (struct{}, error) { return struct{}{}, nil })
		require.NoError(t, err)
		var recent bool
		require.NoError(t, b.db.Get(&recent, `SELECT last_activity_at > `+b.schema.NowPlus(-time.Minute)+` FROM revenant_episodes WHERE id = $1`, ep.ID))
		require.True(t, recent)
	})
}

func TestReorderedStepsAreRefused(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		b := setup(t, driver)
		ctx := context.Background()
		ep := b.claimed(t)
		j, err := journal.Open(ctx, b.db, ep.ID, ep.ClaimToken, nil)
		require.NoError(t, err)
		_, err = journal.Step(ctx, j, "reserve", func(context.Context) (string, error) { return "R1", nil })
		require.NoError(t, err)
		_, err = journal.Step(ctx, j, "charge", func(context.Context) (string, error) { return "C1", nil })
		require.NoError(t, err)

		ep2 := b.crashAndReclaim(t, ep)
		j2, err := journal.Open(ctx, b.db, ep.ID, ep2.ClaimToken, nil)
		require.NoError(t, err)
		out, err := journal.Step(ctx, j2, "charge", func(context.Context) (string, error) { return "C2", nil })
		require.ErrorIs(t, err, journal.ErrStepMismatch)
		require.Empty(t, out, "never another step's output")
		require.Contains(t, err.Error(), `recorded as "reserve"`)
	})
}

func TestStepTxEffectAndRecordCommitTogether(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		b := setup(t, driver)
		ctx := context.Background()
		_, err := b.db.Exec(`CREATE TABLE effects (episode_id text, step text, UNIQUE (episode_id, step))`)
		require.NoError(t, err)
		effects := func() int {
			var n int
			require.NoError(t, b.db.Get(&n, `SELECT count(*) FROM effects`))
			return n
		}
		insertEffect := func(ctx context.Context, tx *sqlx.Tx) (string, error) {
			info, ok := journal.Info(ctx)
			require.True(t, ok)
			_, err := tx.ExecContext(ctx, `INSERT INTO effects (episode_id, step) VALUES ($1, $2)`, info.EpisodeID, info.Name)
			return info.IdempotencyKey, err
		}
		ep := b.claimed(t)
		j, err := journal.Open(ctx, b.db, ep.ID, ep.ClaimToken, nil)
		require.NoError(t, err)

		key, err := journal.StepTx(ctx, j, "debit", insertEffect)
		require.NoError(t, err)
		require.Equal(t, 1, effects())
		require.Equal(t, journal.IdempotencyKey(ep.ID, 0, "debit"), key)

		// Make the journal write itself fail at the database: the effect made
		// in the same transaction must roll back with it.
		refuse := `CREATE FUNCTION refuse_steps() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN RAISE EXCEPTION 'journal write refused'; END $$;
		CREATE TRIGGER refuse BEFORE INSERT ON revenant_steps FOR EACH ROW EXECUTE FUNCTION refuse_steps();`
		dropRefuse := `DROP TRIGGER refuse ON revenant_steps`
		if b.schema.IsSQLite() {
			refuse = `CREATE TRIGGER refuse BEFORE INSERT ON revenant_steps BEGIN SELECT RAISE(ABORT, 'journal write refused'); END`
			dropRefuse = `DROP TRIGGER refuse`
		}
		_, err = b.db.Exec(refuse)
		require.NoError(t, err)
		_, err = journal.StepTx(ctx, j, "credit", insertEffect)
		require.ErrorContains(t, err, "journal write refused")
		require.Equal(t, 1, effects(), "the credit effect was rolled back with its journal entry")
		_, err = b.db.Exec(dropRefuse)
		require.NoError(t, err)

		// An output that cannot be recorded rolls the effect back too.
		_, err = journal.StepTx(ctx, j, "credit", func(ctx context.Context, tx *sqlx.Tx) (func(), error) {
			_, err := insertEffect(ctx, tx)
			return func() {}, err
		})
		require.ErrorIs(t, err, journal.ErrNotJSON)
		require.Equal(t, 1, effects())

		// The failed attempts consumed nothing: the retry lands in sequence 1.
		_, err = journal.StepTx(ctx, j, "credit", insertEffect)
		require.NoError(t, err)
		require.Equal(t, 2, effects())
		require.Equal(t, 2, b.steps(t, ep))

		// After a restart both are replayed, with no second effect.
		ep2 := b.crashAndReclaim(t, ep)
		j2, err := journal.Open(ctx, b.db, ep.ID, ep2.ClaimToken, nil)
		require.NoError(t, err)
		k1, err := journal.StepTx(ctx, j2, "debit", insertEffect)
		require.NoError(t, err)
		require.Equal(t, key, k1, "the idempotency key is stable across restarts")
		_, err = journal.StepTx(ctx, j2, "credit", insertEffect)
		require.NoError(t, err)
		require.Equal(t, 2, effects())
	})
}

func TestOutputsThatCannotBeRecorded(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		b := setup(t, driver)
		ctx := context.Background()
		ep := b.claimed(t)
		j, err := journal.Open(ctx, b.db, ep.ID, ep.ClaimToken, &journal.Config{MaxOutputBytes: 64})
		require.NoError(t, err)

		_, err = journal.Step(ctx, j, "chan", func(context.Context) (chan int, error) { return make(chan int), nil })
		require.ErrorIs(t, err, journal.ErrNotJSON)
		_, err = journal.Step(ctx, j, "big", func(context.Context) (string, error) { return strings.Repeat("x", 100), nil })
		require.ErrorIs(t, err, journal.ErrTooLarge)
		require.Contains(t, err.Error(), "cap is 64")
		require.Equal(t, 0, b.steps(t, ep), "nothing corrupt was written")

		v, err := journal.Step(ctx, j, "small", func(context.Context) (string, error) { return "ok", nil })
		require.NoError(t, err)
		require.Equal(t, "ok", v)
		require.Equal(t, 1, b.steps(t, ep))

		// Default cap is 1 MiB.
		j2, err := journal.Open(ctx, b.db, ep.ID, ep.ClaimToken, nil)
		require.NoError(t, err)
		_, err = journal.Step(ctx, j2, "small", func(context.Context) (string, error) { return "", nil })
		require.NoError(t, err)
		_, err = journal.Step(ctx, j2, "huge", func(context.Context) (string, error) { return strings.Repeat("x", journal.MaxOutputBytesDefault), nil })
		require.ErrorIs(t, err, journal.ErrTooLarge)
	})
}

func TestErrorsTransientRetriedPermanentRecorded(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		b := setup(t, driver)
		ctx := context.Background()
		ep := b.claimed(t)
		j, err := journal.Open(ctx, b.db, ep.ID, ep.ClaimToken, nil)
		require.NoError(t, err)

		var keys []string
		flaky := func(ctx context.Context) (int, error) {
			info, _ := journal.Info(ctx)
			keys = append(keys, info.IdempotencyKey)
			return 0, errors.New("503 from provider")
		}
		_, err = journal.Step(ctx, j, "call-api", flaky)
		require.ErrorContains(t, err, "503")
		require.Equal(t, 0, b.steps(t, ep), "a transient error is not recorded")

		_, err = journal.Step(ctx, j, "call-api", func(ctx context.Context) (int, error) {
			return 0, journal.Permanent(errors.New("card declined"))
		})
		var perm *journal.PermanentError
		require.ErrorAs(t, err, &perm)
		require.Equal(t, 1, b.steps(t, ep))

		ep2 := b.crashAndReclaim(t, ep)
		j2, err := journal.Open(ctx, b.db, ep.ID, ep2.ClaimToken, nil)
		require.NoError(t, err)
		_, err = journal.Step(ctx, j2, "call-api", flaky)
		var rec *journal.RecordedError
		require.ErrorAs(t, err, &rec)
		require.Contains(t, rec.Message, "card declined")
		require.Len(t, keys, 1, "the recorded failure is replayed, not retried")
	})
}

func TestBadInput(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		ctx := context.Background()
		_, err := journal.Open(ctx, nil, [16]byte{1}, 1, nil)
		require.ErrorIs(t, err, journal.ErrInvalidInput)

		b := setup(t, driver)
		ep := b.claimed(t)
		_, err = journal.Open(ctx, b.db, [16]byte{}, 1, nil)
		require.ErrorIs(t, err, journal.ErrInvalidInput)
		_, err = journal.Open(ctx, b.db, ep.ID, ep.ClaimToken, &journal.Config{MaxOutputBytes: -1})
		require.ErrorIs(t, err, journal.ErrInvalidInput)
		_, err = journal.Open(ctx, b.db, [16]byte{9}, 1, nil)
		require.ErrorIs(t, err, revenant.ErrNotFound)

		j, err := journal.Open(ctx, b.db, ep.ID, ep.ClaimToken, nil)
		require.NoError(t, err)
		_, err = journal.Step(ctx, j, "", func(context.Context) (int, error) { return 1, nil })
		require.ErrorIs(t, err, journal.ErrInvalidInput)
		_, err = journal.Step[int](ctx, j, "x", nil)
		require.ErrorIs(t, err, journal.ErrInvalidInput)

		// A recorded output that no longer decodes into the asked type is an
		// error, not a zero value.
		_, err = journal.Step(ctx, j, "x", func(context.Context) (string, error) { return "text", nil })
		require.NoError(t, err)
		j2, err := journal.Open(ctx, b.db, ep.ID, ep.ClaimToken, nil)
		require.NoError(t, err)
		_, err = journal.Step(ctx, j2, "x", func(context.Context) (int, error) { return 1, nil })
		require.ErrorContains(t, err, "decoding recorded output")
	})
}
