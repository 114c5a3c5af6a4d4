package journal_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant/journal"
)

// The effect both sides write: a one-row insert into a table of the
// user's.
const (
	createEffectsSQL = `CREATE TABLE bench_effects (id text NOT NULL, n integer NOT NULL)`
	insertEffectSQL  = `INSERT INTO bench_effects (id, n) VALUES ($1, $2)`
)

// BenchmarkStepTx measures, with 16 goroutines, a transactional step whose
// effect is a one-row insert against a raw transaction doing the same
// insert plus a journal-sized insert (into a copy of the journal table):
// BEGIN, two INSERTs, COMMIT. The step does BEGIN, SET LOCAL of the idle
// timeout (the runner's default; idle=0 leaves it out, as the runner does
// when the database gives sessions that timeout itself), the insert, the
// fenced journal write, COMMIT. Rounds of 16 of each alternate; x_raw_tx
// is the ratio of their times.
func BenchmarkStepTx(b *testing.B) {
	for _, driver := range []string{"postgres", "pgx", "sqlite"} {
		b.Run("driver="+driver, func(b *testing.B) {
			for _, idle := range []time.Duration{10 * time.Second, 0} {
				name := "idle=on"
				if idle == 0 {
					name = "idle=0"
				}
				b.Run(name, func(b *testing.B) { benchStepTx(b, driver, idle) })
			}
		})
	}
}

func benchStepTx(b *testing.B, driver string, idle time.Duration) {
	bb := setup(b, driver)
	ctx := context.Background()
	createRaw, insertRaw := createRawSQL, insertRawSQL
	if bb.schema.IsSQLite() {
		createRaw, insertRaw = sqliteCreateRawSQL, sqliteInsertRawSQL
	}
	for _, q := range []string{createRaw, createEffectsSQL} {
		_, err := bb.db.Exec(q)
		require.NoError(b, err)
	}
	const workers = 16
	type worker struct {
		j     *journal.Journal
		rawID uuid.UUID
		seq   int
	}
	ws := make([]*worker, workers)
	for w := range ws {
		ep := bb.claimed(b)
		j, err := journal.Open(ctx, bb.db, ep.ID, ep.ClaimToken, &journal.Config{TxIdleTimeout: idle})
		require.NoError(b, err)
		ws[w] = &worker{j: j, rawID: uuid.New()}
	}
	phase := func(op func(w *worker) error) time.Duration {
		var wg sync.WaitGroup
		start := time.Now()
		for _, w := range ws {
			wg.Go(func() {
				if err := op(w); err != nil {
					b.Error(err)
				}
			})
		}
		wg.Wait()
		return time.Since(start)
	}
	raw := func(w *worker) error {
		w.seq++
		tx, err := bb.db.BeginTxx(ctx, nil)
		if err != nil {
			return err
		}
		defer func() { _ = tx.Rollback() }()
		if _, err := tx.ExecContext(ctx, insertEffectSQL, w.rawID.String(), w.seq); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, insertRaw, w.rawID, w.seq, "effect", `{"n":1}`, int64(1)); err != nil {
			return err
		}
		return tx.Commit()
	}
	step := func(w *worker) error {
		_, err := journal.StepTx(ctx, w.j, "effect", func(ctx context.Context, tx *sqlx.Tx) (int, error) {
			_, err := tx.ExecContext(ctx, insertEffectSQL, w.j.EpisodeID().String(), 1)
			return 1, err
		})
		return err
	}
	var rawDur, stepDur time.Duration
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if i%2 == 0 {
			rawDur += phase(raw)
			stepDur += phase(step)
		} else {
			stepDur += phase(step)
			rawDur += phase(raw)
		}
	}
	b.ReportMetric(float64(stepDur.Nanoseconds())/float64(b.N), "ns/round")
	b.ReportMetric(float64(stepDur)/float64(rawDur), "x_raw_tx")
}
