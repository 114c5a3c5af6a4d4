package revenant_test

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant"
	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/internal/testdb"
	"github.com/revenant-go/revenant/journal"
	"github.com/revenant-go/revenant/runner"
)

// BenchmarkThroughput enqueues n episodes (2,000; CI shrinks it with
// REVENANT_BENCH_THROUGHPUT_EPISODES) of an actor doing 5 StepTx steps,
// each a one-row insert, on one node running 16 at once, and times
// enqueue → all done. The raw baseline, in the same iteration: 16
// goroutines doing the same 5 one-row-insert transactions per unit,
// without revenant. x_raw is the ratio of the two wall times.
//
// A second baseline, x_raw_journal, adds to each of those transactions
// the least a journal must write in it: one row into a copy of the step
// journal's table (its columns, checks and primary key). It is the floor
// for any library that records each step in the step's own transaction,
// before claiming, finishing or announcing anything.
func BenchmarkThroughput(b *testing.B) {
	n := 2000
	if v, err := strconv.Atoi(os.Getenv("REVENANT_BENCH_THROUGHPUT_EPISODES")); err == nil && v > 0 {
		n = v
	}
	const steps, concurrency = 5, 16
	variants := []struct{ name, backend, dbIdleTimeout string }{
		{"postgres", "postgres", ""},
		// The database gives sessions an idle-in-transaction timeout:
		// transactional steps need not set one (a round trip each).
		{"postgres/db_idle_timeout", "postgres", "10000"},
		{"sqlite", testdb.SQLite, ""},
	}
	for _, v := range variants {
		b.Run(v.name, func(b *testing.B) {
			s := testdb.New(b, &testdb.Options{Driver: v.backend, MaxOpenConns: concurrency + 8})
			ctx := context.Background()
			_, err := s.DB.Exec(`CREATE TABLE bench_work (unit text NOT NULL, step integer NOT NULL)`)
			require.NoError(b, err)
			journalInsert := benchJournalTable(b, s)
			cfg := &revenant.Config{Name: "throughput", SkipMigrate: true}
			db, statements := s.DB, (*atomic.Int64)(nil)
			if !s.IsSQLite() {
				cfg.ListenDSN = s.DSN
				// Round trips counted on the library's side only.
				dsn := s.DSN
				if v.dbIdleTimeout != "" {
					u, err := url.Parse(dsn)
					require.NoError(b, err)
					q := u.Query()
					q.Set("idle_in_transaction_session_timeout", v.dbIdleTimeout)
					u.RawQuery = q.Encode()
					dsn = u.String()
				}
				db, statements = testdb.Counting(b, dsn, concurrency+8)
			}
			c, err := revenant.New(db, cfg)
			require.NoError(b, err)
			// finished receives one value per completed run of the current
			// iteration (buffered: a run never waits on it).
			finished := make(chan struct{}, n)
			var stmts int64 // sent by the library over the lib phases
			require.NoError(b, c.Register(runner.Actor{ID: "work", MaxConcurrent: concurrency,
				Run: func(ctx context.Context, ep *episodes.Episode, j *journal.Journal) (any, error) {
					for i := range steps {
						if _, err := journal.StepTx(ctx, j, fmt.Sprintf("step-%d", i), func(ctx context.Context, tx *sqlx.Tx) (int, error) {
							_, err := tx.ExecContext(ctx, `INSERT INTO bench_work (unit, step) VALUES ($1, $2)`, ep.ID.String(), i)
							return i, err
						}); err != nil {
							return nil, err
						}
					}
					finished <- struct{}{}
					return "ok", nil
				}}))
			require.NoError(b, c.Start(ctx))
			b.Cleanup(func() { _ = c.StopAndCancel(context.Background()) })

			// The journal baseline's episode ids: new ones each iteration,
			// as the library's.
			var units []string
			// raw runs the baseline; withJournal adds the journal-sized row.
			raw := func(withJournal bool) time.Duration {
				next := make(chan int, n)
				for i := range n {
					next <- i
				}
				close(next)
				start := time.Now()
				var wg sync.WaitGroup
				for range concurrency {
					wg.Go(func() {
						for u := range next {
							for i := range steps {
								tx, err := s.DB.BeginTxx(ctx, nil)
								if err == nil {
									_, err = tx.ExecContext(ctx, `INSERT INTO bench_work (unit, step) VALUES ($1, $2)`, fmt.Sprintf("raw-%d", u), i)
									if err == nil && withJournal {
										_, err = tx.ExecContext(ctx, journalInsert, units[u], i, fmt.Sprintf("step-%d", i), strconv.Itoa(i))
									}
									if err == nil {
										err = tx.Commit()
									} else {
										_ = tx.Rollback()
									}
								}
								if err != nil {
									b.Error(err)
									return
								}
							}
						}
					})
				}
				wg.Wait()
				return time.Since(start)
			}
			lib := func() time.Duration {
				ps := make([]episodes.CreateParams, n)
				for i := range ps {
					ps[i] = episodes.CreateParams{ActorID: "work"}
				}
				start := time.Now()
				if statements != nil {
					before := statements.Load()
					defer func() { stmts += statements.Load() - before }()
				}
				_, err := c.EnqueueMany(ctx, ps)
				require.NoError(b, err)
				// A run that never finishes (an actor failing for good)
				// fails the benchmark instead of hanging it.
				deadline := time.After(5 * time.Minute)
				for i := range n {
					select {
					case <-finished:
					case <-deadline:
						b.Fatalf("%d of %d episodes finished within 5 minutes", i, n)
					}
				}
				// finished counts runs; the last completions commit right after.
				require.Eventually(b, func() bool {
					var left int
					return s.DB.Get(&left, `SELECT count(*) FROM revenant_episodes WHERE status <> 'done'`) == nil && left == 0
				}, time.Minute, time.Millisecond)
				return time.Since(start)
			}
			var rawT, rawJournalT, libT time.Duration
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				units = units[:0]
				for range n {
					units = append(units, uuid.NewString())
				}
				// Which goes first rotates, so that drift hits all three alike.
				phases := []func(){func() { rawT += raw(false) }, func() { rawJournalT += raw(true) }, func() { libT += lib() }}
				for k := range phases {
					phases[(i+k)%len(phases)]()
				}
			}
			b.ReportMetric(float64(n*b.N)/libT.Seconds(), "episodes/s")
			b.ReportMetric(libT.Seconds()/rawT.Seconds(), "x_raw")
			b.ReportMetric(libT.Seconds()/rawJournalT.Seconds(), "x_raw_journal")
			b.ReportMetric(rawJournalT.Seconds()/rawT.Seconds(), "journal_floor_x_raw")
			if statements != nil {
				// The raw unit sends 15: BEGIN, INSERT, COMMIT, five times.
				b.ReportMetric(float64(stmts)/float64(n*b.N), "stmts/episode")
			}
		})
	}
}

// benchJournalTable creates bench_journal, a copy of the step journal's
// table (columns, checks, primary key), and returns the insert of one
// step's row into it: episode id, seq, name and output as parameters.
func benchJournalTable(b *testing.B, s *testdb.Schema) string {
	if s.IsSQLite() {
		var ddl string
		require.NoError(b, s.DB.Get(&ddl, `SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'revenant_steps'`))
		_, err := s.DB.Exec(strings.Replace(ddl, "revenant_steps", "bench_journal", 1))
		require.NoError(b, err)
		return `INSERT INTO bench_journal (episode_id, seq, name, status, output, error, claim_token, started_at)
VALUES ($1, $2, $3, 'done', $4, NULL, 1, strftime('%Y-%m-%d %H:%M:%f', 'now'))`
	}
	_, err := s.DB.Exec(`CREATE TABLE bench_journal (LIKE revenant_steps INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES)`)
	require.NoError(b, err)
	return `INSERT INTO bench_journal (episode_id, seq, name, status, output, error, claim_token, started_at)
VALUES ($1, $2, $3, 'done', $4, NULL, 1, now())`
}
