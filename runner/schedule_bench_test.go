package runner_test

import (
	"context"
	"os"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/internal/testdb"
	"github.com/revenant-go/revenant/journal"
	"github.com/revenant-go/revenant/runner"
)

// BenchmarkScheduleLateness measures how late a runner claims scheduled
// episodes: one runner with the default PollInterval (1 s) and an actor
// that returns at once; each iteration enqueues 200 episodes one by one
// with delays spread evenly from 50 ms to 1 s (every other one with a
// shorter delay than the one enqueued just before it), and waits until all
// are done.
// Lateness is started_at - run_at, both from the database clock, one
// sample per episode (each is claimed once); p50, p99 and max over all
// iterations are reported in ms. A runner that waited for its poll instead
// of waking at the due time would show lateness up to 1 s. CI shrinks the
// count with REVENANT_BENCH_SCHEDULE_EPISODES.
func BenchmarkScheduleLateness(b *testing.B) {
	for _, backend := range testdb.Backends {
		b.Run("backend="+backend, func(b *testing.B) { benchScheduleLateness(b, backend) })
	}
}

func benchScheduleLateness(b *testing.B, driver string) {
	const (
		actorID  = "sched"
		minDelay = 50 * time.Millisecond
		maxDelay = time.Second
	)
	n := 200
	// CI sets a smaller count: it runs each benchmark once so that none
	// rots; figures come from full-size runs.
	if v, err := strconv.Atoi(os.Getenv("REVENANT_BENCH_SCHEDULE_EPISODES")); err == nil && v >= 1 {
		n = v
	}
	s := testdb.New(b, &testdb.Options{Driver: driver})
	db := s.DB
	ctx := context.Background()
	listen := s.DSN
	lateness := `extract(epoch FROM started_at - run_at) * 1000`
	// Both timestamps are whole milliseconds on SQLite, so the difference
	// is exact up to julianday's floating point.
	minLateness := 0.0
	if s.IsSQLite() {
		listen = "" // no LISTEN/NOTIFY: the runner polls, and wakes at due times
		lateness = `(julianday(started_at) - julianday(run_at)) * 86400000`
		minLateness = -1
	}
	// Default intervals: PollInterval is 1 s.
	r, err := runner.New(db, &runner.Config{Name: "bench", ListenDSN: listen})
	require.NoError(b, err)
	require.NoError(b, r.Register(runner.Actor{ID: actorID,
		Run: func(context.Context, *episodes.Episode, *journal.Journal) (any, error) { return nil, nil }}))
	require.NoError(b, r.Start(ctx))
	b.Cleanup(func() { _ = r.StopAndCancel(context.Background()) })

	// Delays in pairs swapped (1, 0, 3, 2, … steps): every other episode
	// has a shorter delay than the one enqueued just before it, so it
	// usually falls due first. The due times stay spread out: an order
	// that enqueued the long delays last would bunch their due times up
	// by however long the enqueues take.
	delays := make([]time.Duration, n)
	for i := range delays {
		k := i ^ 1
		if k >= n {
			k = i
		}
		delays[i] = minDelay
		if n > 1 {
			delays[i] += time.Duration(k) * (maxDelay - minDelay) / time.Duration(n-1)
		}
	}

	var samples []float64
	b.ResetTimer()
	for b.Loop() {
		for _, d := range delays {
			_, err := r.Enqueue(ctx, episodes.CreateParams{ActorID: actorID, Delay: d})
			require.NoError(b, err)
		}
		require.Eventually(b, func() bool {
			var done int
			require.NoError(b, db.Get(&done, `SELECT count(*) FROM revenant_episodes WHERE status = 'done'`))
			return done == n
		}, 30*time.Second, 5*time.Millisecond, "the scheduled episodes never all ran")
		b.StopTimer()
		var rows []struct {
			Lateness float64 `db:"lateness"`
			Attempts int     `db:"attempts"`
		}
		require.NoError(b, db.Select(&rows, `SELECT `+lateness+` AS lateness, attempts FROM revenant_episodes`))
		require.Len(b, rows, n)
		for _, row := range rows {
			require.Equal(b, 1, row.Attempts, "one claim per episode, so started_at is its only start")
			require.GreaterOrEqual(b, row.Lateness, minLateness, "an episode started before it was due")
			samples = append(samples, row.Lateness)
		}
		_, err := db.Exec(`DELETE FROM revenant_episodes`)
		require.NoError(b, err)
		b.StartTimer()
	}
	b.StopTimer()
	sort.Float64s(samples)
	p := func(q float64) float64 { return samples[int(q*float64(len(samples)-1)+0.5)] }
	b.ReportMetric(p(0.5), "lateness_p50_ms")
	b.ReportMetric(p(0.99), "lateness_p99_ms")
	b.ReportMetric(samples[len(samples)-1], "lateness_max_ms")
}
