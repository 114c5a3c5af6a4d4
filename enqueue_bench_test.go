package revenant_test

import (
	"context"
	"encoding/json"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/lib/pq"
	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant"
	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/internal/testdb"
	"github.com/revenant-go/revenant/runner"
)

// Raw baselines: one multi-row INSERT of the same rows (id, actor, input,
// max attempts), without RETURNING, dedupe or validation.
const (
	enqueueRawPG = `INSERT INTO revenant_episodes (id, actor_id, input, max_attempts)
SELECT * FROM unnest($1::uuid[], $2::text[], $3::jsonb[], $4::int[])`
	enqueueRawSQLite = `INSERT INTO revenant_episodes (id, actor_id, input, max_attempts)
SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3 FROM json_each($1)`
)

// BenchmarkEnqueueMany enqueues n episodes (10,000; CI shrinks it with
// REVENANT_BENCH_ENQUEUE_EPISODES) per iteration through
// Client.EnqueueMany, and in the same iteration the same number of rows
// through one raw multi-row INSERT (x_raw is the ratio of their times),
// and n/10 episodes (at most 1,000) one Client.Enqueue each (per_row_x is
// how many times more each of those costs than one of EnqueueMany's).
// The order of the three alternates between iterations. Use -benchtime 5x.
func BenchmarkEnqueueMany(b *testing.B) {
	n := 10_000
	if v, err := strconv.Atoi(os.Getenv("REVENANT_BENCH_ENQUEUE_EPISODES")); err == nil && v >= 10 {
		n = v
	}
	perRow := min(n/10, 1000)
	for _, backend := range testdb.Backends {
		b.Run(backend, func(b *testing.B) {
			s := testdb.New(b, &testdb.Options{Driver: backend})
			ctx := context.Background()
			// Not started: nothing claims the rows while they are written.
			c, err := revenant.New(s.DB, &revenant.Config{Name: "bench", SkipMigrate: true})
			require.NoError(b, err)
			require.NoError(b, c.Register(runner.Actor{ID: "mailer", Run: noop}))

			params := func(k int) []episodes.CreateParams {
				ps := make([]episodes.CreateParams, k)
				for i := range ps {
					ps[i] = episodes.CreateParams{ActorID: "mailer", Input: map[string]int{"n": i}}
				}
				return ps
			}
			raw := func() {
				ids, actors, inputs, maxes := make([]string, n), make([]string, n), make([]string, n), make([]int64, n)
				rows := make([][4]any, n)
				for i := range n {
					id, err := uuid.NewV7()
					require.NoError(b, err)
					in, err := json.Marshal(map[string]int{"n": i})
					require.NoError(b, err)
					ids[i], actors[i], inputs[i], maxes[i] = id.String(), "mailer", string(in), 3
					rows[i] = [4]any{ids[i], "mailer", string(in), 3}
				}
				if s.IsSQLite() {
					arg, err := json.Marshal(rows)
					require.NoError(b, err)
					_, err = s.DB.ExecContext(ctx, enqueueRawSQLite, string(arg))
					require.NoError(b, err)
					return
				}
				_, err := s.DB.ExecContext(ctx, enqueueRawPG, pq.Array(ids), pq.Array(actors), pq.Array(inputs), pq.Array(maxes))
				require.NoError(b, err)
			}
			var lib, rawT, row time.Duration
			b.ResetTimer()
			for i := range b.N {
				steps := []func(){
					func() {
						start := time.Now()
						res, err := c.EnqueueMany(ctx, params(n))
						lib += time.Since(start)
						require.NoError(b, err)
						require.Len(b, res, n)
					},
					func() {
						start := time.Now()
						raw()
						rawT += time.Since(start)
					},
					func() {
						start := time.Now()
						for _, p := range params(perRow) {
							_, err := c.Enqueue(ctx, p)
							require.NoError(b, err)
						}
						row += time.Since(start)
					},
				}
				for k := range steps {
					steps[(k+i)%len(steps)]()
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(n*b.N)/lib.Seconds(), "episodes/s")
			b.ReportMetric(lib.Seconds()/rawT.Seconds(), "x_raw")
			b.ReportMetric((row.Seconds()/float64(perRow))/(lib.Seconds()/float64(n)), "per_row_x")
		})
	}
}
