package revenanttest

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/journal"
	"github.com/revenant-go/revenant/runner"
)

func TestCrashSchedules(t *testing.T) {
	eachBackend(t, func(t *testing.T, open func(TB) *sqlx.DB) {
		db := open(t)
		createOrders(t, db)
		opts := &CrashOptions{DB: db, Effects: countOrders, Seed: 42, Schedules: 4, MaxCrashes: 3}
		rep := CrashAtEveryStep(t, inserter(db, true), fruit, opts)
		require.Equal(t, uint64(42), rep.Seed)
		requirePassed(t, rep, 6+4)
		var multi [][]Boundary
		for _, sc := range rep.Scenarios[6:] {
			require.GreaterOrEqual(t, len(sc.Crashes), 2, sc.Name())
			require.LessOrEqual(t, len(sc.Crashes), 3, sc.Name())
			for i := 1; i < len(sc.Crashes); i++ {
				require.True(t, sc.Crashes[i-1].before(sc.Crashes[i]), "%s: crashes in the order a run meets them", sc.Name())
			}
			multi = append(multi, sc.Crashes)
		}
		// The same seed draws the same schedules.
		require.Equal(t, multi, randomSchedules(boundaries(rep.Reference, []Point{BeforeRecord, AfterRecord}), 42, 4, 3))

		// The broken inserter is caught by a schedule too, with each
		// crash named.
		db2 := open(t)
		createOrders(t, db2)
		bounds := []Boundary{{Step: 0, Point: BeforeRecord, Name: "insert-apple"}, {Step: 2, Point: BeforeRecord, Name: "insert-fig"}}
		c := newSimNode(t, (&CrashOptions{DB: db2}).withDefaults(t), inserter(db2, false))
		defer c.close()
		run, err := c.run(context.Background(), bounds, fruit)
		require.NoError(t, err)
		require.Equal(t, 2, run.crashed)
		require.Equal(t, 3, run.outcome.Episode.Attempts)
		n, err := countOrders(context.Background(), db2)
		require.NoError(t, err)
		require.Equal(t, 5, n, "apple and fig inserted twice each, pear once")
		sc := Scenario{Crashes: bounds}
		require.Equal(t, `crash inside step 0 ("insert-apple"), after its effect and before its journal entry, then crash inside step 2 ("insert-fig"), after its effect and before its journal entry`, sc.Name())
	})
}

func TestCrashInvariantsAndPoints(t *testing.T) {
	eachBackend(t, func(t *testing.T, open func(TB) *sqlx.DB) {
		db := open(t)
		createOrders(t, db)
		// Each episode's rows are its items: a doubled insert breaks it.
		oneRowPerItem := func(ctx context.Context, db *sqlx.DB, id uuid.UUID) error {
			var n int
			if err := db.GetContext(ctx, &n, `SELECT count(*) FROM orders WHERE episode = $1`, id.String()); err != nil {
				return err
			}
			if n != 3 {
				return fmt.Errorf("episode %s has %d order rows, want 3", id, n)
			}
			return nil
		}
		var rep *CrashReport
		r := recordOK(t, func(r *recorder) {
			rep = CrashAtEveryStep(r, inserter(db, false), fruit, &CrashOptions{DB: db, Points: []Point{BeforeRecord},
				Invariants: []func(context.Context, *sqlx.DB, uuid.UUID) error{oneRowPerItem}})
		})
		require.Len(t, rep.Scenarios, 3, "BeforeRecord only")
		for _, sc := range rep.Scenarios {
			require.Equal(t, BeforeRecord, sc.Crashes[0].Point)
			require.Len(t, sc.Problems, 1, "no Effects given: only the invariant")
			require.Contains(t, sc.Problems[0], "invariant 0 does not hold: episode "+sc.EpisodeID.String()+" has 4 order rows, want 3")
		}
		require.Contains(t, r.all(), `crash inside step 1 ("insert-pear"), after its effect and before its journal entry: invariant 0 does not hold`)

		r = record(t, func(r *recorder) {
			CrashAtEveryStep(r, inserter(db, true), fruit, &CrashOptions{DB: db, Points: []Point{7}})
		})
		require.Contains(t, r.fatalsText(), "CrashOptions.Points holds Point(7); use BeforeRecord, AfterRecord or both")
	})
}

// A failed run is an outcome like any other: the crashed runs must fail
// the same way, and a permanently failed step has no boundary.
func TestCrashFailingActor(t *testing.T) {
	eachBackend(t, func(t *testing.T, open func(TB) *sqlx.DB) {
		actor := runner.Actor{ID: "refuser", Run: func(ctx context.Context, ep *episodes.Episode, j *journal.Journal) (any, error) {
			n, err := journal.Step(ctx, j, "quote", func(context.Context) (int, error) { return 12, nil })
			if err != nil {
				return nil, err
			}
			_, err = journal.Step(ctx, j, "check", func(context.Context) (bool, error) {
				return false, journal.Permanent(fmt.Errorf("amount %d over the limit", n))
			})
			return nil, err
		}}
		rep := CrashAtEveryStep(t, actor, nil, &CrashOptions{DB: open(t)})
		require.Equal(t, episodes.StatusFailed, rep.Reference.Episode.Status)
		require.Len(t, rep.Scenarios, 2, "the failed step has no boundary")
		for _, sc := range rep.Scenarios {
			require.True(t, sc.Passed(), sc.Problems)
			require.Equal(t, episodes.StatusFailed, sc.Outcome.Episode.Status)
			require.Contains(t, sc.Outcome.Err.Error(), "amount 12 over the limit")
		}
	})
}

// An actor that recovers panics itself (as some middleware does) still
// crashes at the boundary: the attempt is over there.
func TestCrashActorRecoversPanics(t *testing.T) {
	eachBackend(t, func(t *testing.T, open func(TB) *sqlx.DB) {
		db := open(t)
		createOrders(t, db)
		inner := inserter(db, true)
		actor := inner
		actor.Run = func(ctx context.Context, ep *episodes.Episode, j *journal.Journal) (res any, err error) {
			defer func() {
				if v := recover(); v != nil {
					res, err = nil, errors.New("recovered")
				}
			}()
			return inner.Run(ctx, ep, j)
		}
		requirePassed(t, CrashAtEveryStep(t, actor, fruit, &CrashOptions{DB: db, Effects: countOrders}), 6)
	})
}

// An actor that recovers panics around each step and goes on (as "best
// effort" middleware does) must still stop at the crash: nothing it does
// after the boundary may reach the database, as nothing a killed process
// does would.
func TestCrashActorGoesOnAfterRecoveringPanics(t *testing.T) {
	eachBackend(t, func(t *testing.T, open func(TB) *sqlx.DB) {
		db := open(t)
		createOrders(t, db)
		actor := runner.Actor{ID: "best-effort", Run: func(ctx context.Context, ep *episodes.Episode, j *journal.Journal) (any, error) {
			in, err := decodeOrder(ep)
			if err != nil {
				return nil, err
			}
			var rows []int
			var first error
			for _, item := range in.Items {
				func() {
					defer func() {
						if v := recover(); v != nil && first == nil {
							first = fmt.Errorf("step panicked: %v", v)
						}
					}()
					n, err := journal.StepTx(ctx, j, "insert-"+item, func(ctx context.Context, tx *sqlx.Tx) (int, error) {
						_, err := tx.ExecContext(ctx, `INSERT INTO orders (episode, item) VALUES ($1, $2)`, ep.ID.String(), item)
						return len(item), err
					})
					if err != nil && first == nil {
						first = err
					}
					rows = append(rows, n)
				}()
			}
			return rows, first
		}}
		requirePassed(t, CrashAtEveryStep(t, actor, fruit, &CrashOptions{DB: db, Effects: countOrders}), 6)
	})
}
