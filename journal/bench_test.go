package journal_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant/journal"
)

// The baseline is a raw single-row INSERT, committed on its own, into a table
// with the journal's columns, defaults, checks and primary key, on the same
// pool in the same run.
const (
	createRawSQL = `CREATE TABLE bench_raw_steps (LIKE revenant_steps INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES)`
	insertRawSQL = `INSERT INTO bench_raw_steps (episode_id, seq, name, status, output, error, claim_token, started_at)
VALUES ($1, $2, $3, 'done', $4, NULL, $5, now())`

	// On SQLite: the same table as revenant_steps (see migrations), and
	// the same insert with SQLite's clock.
	sqliteCreateRawSQL = `CREATE TABLE bench_raw_steps (
    episode_id  text        NOT NULL,
    seq         integer     NOT NULL CHECK (seq >= 0),
    name        text        NOT NULL CHECK (name <> ''),
    status      text        NOT NULL CHECK (status IN ('done', 'failed')),
    output      text,
    error       text,
    claim_token integer     NOT NULL,
    started_at  timestamp   NOT NULL,
    finished_at timestamp   NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    PRIMARY KEY (episode_id, seq)
) WITHOUT ROWID`
	sqliteInsertRawSQL = `INSERT INTO bench_raw_steps (episode_id, seq, name, status, output, error, claim_token, started_at)
VALUES ($1, $2, $3, 'done', $4, NULL, $5, strftime('%Y-%m-%d %H:%M:%f', 'now'))`
)

type noop struct{}

// BenchmarkJournalStep measures a durable no-op step against the raw insert,
// alternating the two so drift hits both equally, on lib/pq and on pgx's
// stdlib driver (each against its own baseline: pgx caches prepared
// statements for both, lib/pq for neither), and on a SQLite file in WAL
// mode (against a raw insert into the same file; sqlite.Open's handle
// caches prepared statements for both). It reports ns per step and per raw
// insert, and their ratio as x_raw_insert.
func BenchmarkJournalStep(b *testing.B) {
	for _, driver := range []string{"postgres", "pgx", "sqlite"} {
		b.Run("driver="+driver, func(b *testing.B) { benchJournalStep(b, driver) })
	}
}

func benchJournalStep(b *testing.B, driver string) {
	bb := setup(b, driver)
	createRaw, insertRawSQL := createRawSQL, insertRawSQL
	if bb.schema.IsSQLite() {
		createRaw, insertRawSQL = sqliteCreateRawSQL, sqliteInsertRawSQL
	}
	_, err := bb.db.Exec(createRaw)
	require.NoError(b, err)
	rawExec := func(ctx context.Context, args ...any) error {
		_, err := bb.db.ExecContext(ctx, insertRawSQL, args...)
		return err
	}
	ctx := context.Background()
	b.Run("sequential", func(b *testing.B) {
		ep := bb.claimed(b)
		j, err := journal.Open(ctx, bb.db, ep.ID, ep.ClaimToken, nil)
		require.NoError(b, err)
		rawID := uuid.New()
		fn := func(context.Context) (noop, error) { return noop{}, nil }
		var rawDur, stepDur time.Duration
		b.ResetTimer()
		raw := func(i int) time.Duration {
			t0 := time.Now()
			err := rawExec(ctx, rawID, i, "noop", "{}", int64(1))
			d := time.Since(t0)
			require.NoError(b, err)
			return d
		}
		step := func() time.Duration {
			t0 := time.Now()
			_, err := journal.Step(ctx, j, "noop", fn)
			d := time.Since(t0)
			require.NoError(b, err)
			return d
		}
		// Alternate which goes first: measured here, the first of two
		// back-to-back writes costs ~15 µs more on SQLite whatever it is.
		for i := 0; b.Loop(); i++ {
			if i%2 == 0 {
				rawDur += raw(i)
				stepDur += step()
			} else {
				stepDur += step()
				rawDur += raw(i)
			}
		}
		report(b, rawDur, stepDur)
	})

	b.Run("parallel16", func(b *testing.B) {
		const workers = 16
		type worker struct {
			j     *journal.Journal
			rawID uuid.UUID
			seq   int
		}
		ws := make([]*worker, workers)
		for w := range ws {
			ep := bb.claimed(b)
			j, err := journal.Open(ctx, bb.db, ep.ID, ep.ClaimToken, nil)
			require.NoError(b, err)
			ws[w] = &worker{j: j, rawID: uuid.New()}
		}
		fn := func(context.Context) (noop, error) { return noop{}, nil }
		// phase runs n ops on every worker at once and returns the wall time.
		phase := func(n int, op func(w *worker) error) time.Duration {
			var wg sync.WaitGroup
			start := time.Now()
			for _, w := range ws {
				wg.Go(func() {
					for range n {
						if err := op(w); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			return time.Since(start)
		}
		raw := func(w *worker) error {
			w.seq++
			return rawExec(ctx, w.rawID, w.seq, "noop", "{}", int64(1))
		}
		step := func(w *worker) error {
			_, err := journal.Step(ctx, w.j, "noop", fn)
			return err
		}
		var rawDur, stepDur time.Duration
		b.ResetTimer()
		// Each loop iteration is one round of `workers` ops of each kind, in
		// alternating order.
		for i := 0; b.Loop(); i++ {
			if i%2 == 0 {
				rawDur += phase(1, raw)
				stepDur += phase(1, step)
			} else {
				stepDur += phase(1, step)
				rawDur += phase(1, raw)
			}
		}
		report(b, rawDur, stepDur)
	})
}

func report(b *testing.B, raw, step time.Duration) {
	b.ReportMetric(float64(step.Nanoseconds())/float64(b.N), "ns/step")
	b.ReportMetric(float64(raw.Nanoseconds())/float64(b.N), "ns/raw_insert")
	b.ReportMetric(float64(step)/float64(raw), "x_raw_insert")
}
