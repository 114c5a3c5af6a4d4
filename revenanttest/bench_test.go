package revenanttest

import (
	"context"
	"fmt"
	"testing"

	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/journal"
	"github.com/revenant-go/revenant/runner"
)

// BenchmarkCrashAtEveryStep measures a full CrashAtEveryStep over a 10-step
// actor on SQLite in simulated mode: the uninterrupted run and 20 crashed
// ones (each step, at both points), each restarted by a sweep and claimed
// again. One op is the whole call.
func BenchmarkCrashAtEveryStep(b *testing.B) {
	actor := runner.Actor{ID: "ten", Run: func(ctx context.Context, ep *episodes.Episode, j *journal.Journal) (any, error) {
		sum := 0
		for i := range 10 {
			n, err := journal.Step(ctx, j, fmt.Sprintf("step-%d", i), func(context.Context) (int, error) { return i, nil })
			if err != nil {
				return nil, err
			}
			sum += n
		}
		return sum, nil
	}}
	db := sqliteDB(b)
	for b.Loop() {
		rep := CrashAtEveryStep(b, actor, nil, &CrashOptions{DB: db})
		if rep.Failed() || len(rep.Scenarios) != 20 {
			b.Fatalf("unexpected report: %v", rep.AllProblems())
		}
	}
}
