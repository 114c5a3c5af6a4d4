package revenanttest

import (
	"strings"
	"testing"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/runner"
)

var fruit = orderInput{Items: []string{"apple", "pear", "fig"}}

// requireCaught runs CrashAtEveryStep on a broken actor and checks that
// every failure message contains each of want, and that it failed at
// least once.
func requireCaught(t *testing.T, actor runner.Actor, input any, opts *CrashOptions, want ...string) *CrashReport {
	t.Helper()
	var rep *CrashReport
	r := recordOK(t, func(r *recorder) { rep = CrashAtEveryStep(r, actor, input, opts) })
	require.True(t, rep.Failed(), "the broken actor passed")
	msgs := r.all()
	require.Equal(t, strings.Join(rep.AllProblems(), "\n"), msgs, "the report and the test's failures differ")
	for _, w := range want {
		require.Contains(t, msgs, w)
	}
	t.Logf("caught, as expected:\n%s", msgs)
	return rep
}

// requirePassed checks that every scenario crashed as planned, was
// restarted (one attempt more per crash) and passed.
func requirePassed(t *testing.T, rep *CrashReport, scenarios int) {
	t.Helper()
	require.False(t, rep.Failed(), "problems: %v", rep.AllProblems())
	require.Len(t, rep.Scenarios, scenarios)
	require.Equal(t, 1, rep.Reference.Episode.Attempts)
	for _, sc := range rep.Scenarios {
		require.Equal(t, len(sc.Crashes), sc.Crashed, sc.Name())
		require.Equal(t, episodes.StatusDone, sc.Outcome.Episode.Status, sc.Name())
		// Each crash restarts the episode once; in Process mode a child
		// taken for dead early on a loaded machine adds a fenced attempt.
		require.GreaterOrEqual(t, sc.Outcome.Episode.Attempts, len(sc.Crashes)+1, "%s: each crash restarts the episode", sc.Name())
		require.LessOrEqual(t, sc.Outcome.Episode.Attempts, len(sc.Crashes)+1+processAttemptSlack, sc.Name())
		require.JSONEq(t, string(rep.Reference.Result), string(sc.Outcome.Result), sc.Name())
	}
}

func TestCrashAtEveryStepOutsideStepTx(t *testing.T) {
	eachBackend(t, func(t *testing.T, open func(TB) *sqlx.DB) {
		t.Run("broken", func(t *testing.T) {
			db := open(t)
			createOrders(t, db)
			rep := requireCaught(t, inserter(db, false), fruit, &CrashOptions{DB: db, Effects: countOrders},
				`crash inside step 1 ("insert-pear"), after its effect and before its journal entry: the effect counter rose by 4, the uninterrupted run's by 3`,
				"move it into journal.StepTx")
			// A crash after the entry is recorded replays the step: no
			// double insert there.
			for _, sc := range rep.Scenarios {
				require.Equal(t, sc.Crashes[0].Point == AfterRecord, sc.Passed(), sc.Name())
			}
		})
		t.Run("correct", func(t *testing.T) {
			db := open(t)
			createOrders(t, db)
			rep := CrashAtEveryStep(t, inserter(db, true), fruit, &CrashOptions{DB: db, Effects: countOrders})
			requirePassed(t, rep, 6)
			require.Equal(t, 3, rep.ReferenceEffects)
		})
	})
}

func TestCrashAtEveryStepNonDeterministicNames(t *testing.T) {
	eachBackend(t, func(t *testing.T, open func(TB) *sqlx.DB) {
		t.Run("broken", func(t *testing.T) {
			rep := requireCaught(t, namer(true), nil, &CrashOptions{DB: open(t)},
				"journal.ErrStepMismatch", "step 0 is recorded as \"fetch-0-", "but the run asked for \"fetch-0-",
				"must depend only on the input")
			for _, sc := range rep.Scenarios {
				require.False(t, sc.Passed(), sc.Name())
			}
		})
		t.Run("correct", func(t *testing.T) {
			requirePassed(t, CrashAtEveryStep(t, namer(false), nil, &CrashOptions{DB: open(t)}), 6)
		})
	})
}

func TestCrashAtEveryStepGoVariable(t *testing.T) {
	eachBackend(t, func(t *testing.T, open func(TB) *sqlx.DB) {
		t.Run("broken", func(t *testing.T) {
			requireCaught(t, counter(true), nil, &CrashOptions{DB: open(t)},
				`crash after step 1 ("batch-1") was recorded: the result is 10, the uninterrupted run's was 20`,
				"a Go variable set inside a step")
		})
		t.Run("correct", func(t *testing.T) {
			requirePassed(t, CrashAtEveryStep(t, counter(false), nil, &CrashOptions{DB: open(t)}), 8)
		})
	})
}

func TestCrashAtEveryStepIdempotencyKey(t *testing.T) {
	eachBackend(t, func(t *testing.T, open func(TB) *sqlx.DB) {
		t.Run("broken", func(t *testing.T) {
			svc := &fakeMailer{}
			requireCaught(t, mailer(svc, false), fruit, &CrashOptions{DB: open(t), Effects: svc.Sent},
				`crash inside step 2 ("mail-fig"), after its effect and before its journal entry: the effect counter rose by 4, the uninterrupted run's by 3`,
				"journal.Info(ctx).IdempotencyKey")
		})
		t.Run("correct", func(t *testing.T) {
			svc := &fakeMailer{}
			rep := CrashAtEveryStep(t, mailer(svc, true), fruit, &CrashOptions{DB: open(t), Effects: svc.Sent})
			requirePassed(t, rep, 6)
			require.Equal(t, 7*3, svc.sent, "each of the 7 runs sent each mail once")
		})
	})
}
