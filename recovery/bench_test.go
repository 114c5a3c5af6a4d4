package recovery_test

import (
	"context"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant/bus"
	"github.com/revenant-go/revenant/internal/clusterdemo"
	"github.com/revenant-go/revenant/internal/testdb"
	"github.com/revenant-go/revenant/recovery"
)

// BenchmarkSweep: 1,000,000 episodes of which 100,000 are orphans of a dead
// node; 4 concurrent sweeps act as 4 nodes. x_bulk_update is their wall time
// over that of one raw UPDATE … RETURNING of the same 100,000 rows in the
// same run; double_claims counts orphans claimed more than once.
// The outbox variant also writes one lifecycle event per recovered episode
// in the same transaction (recovery.Options.Bus with the outbox bus). On
// SQLite (a file in WAL mode) the dead node is one whose TTL lapsed, and
// the baseline is the same raw UPDATE on the same file.
// REVENANT_BENCH_SWEEPERS and REVENANT_BENCH_SWEEP_BATCH change the number
// of sweepers and their batch size, to explore.
func BenchmarkSweep(b *testing.B) {
	for _, backend := range testdb.Backends {
		b.Run("backend="+backend+"/events=none", func(b *testing.B) { benchSweep(b, backend, false) })
		b.Run("backend="+backend+"/events=outbox", func(b *testing.B) { benchSweep(b, backend, true) })
	}
}

func benchSweep(b *testing.B, backend string, outbox bool) {
	sweepers := 4
	if v, err := strconv.Atoi(os.Getenv("REVENANT_BENCH_SWEEPERS")); err == nil {
		sweepers = v
	}
	total := 1_000_000
	// CI sets a smaller size: it runs each benchmark once so that none
	// rots; figures come from full-size runs.
	if v, err := strconv.Atoi(os.Getenv("REVENANT_BENCH_SWEEP_EPISODES")); err == nil && v >= 10 {
		total = v
	}
	orphans := total / 10
	s := testdb.New(b, &testdb.Options{Driver: backend, MaxOpenConns: 12})
	db := s.DB
	ctx := context.Background()
	dead := "dead-node"
	analyze := `VACUUM ANALYZE revenant_episodes`
	if s.IsSQLite() {
		analyze = `ANALYZE`
		_, err := db.Exec(`INSERT INTO revenant_nodes (node_id, expires_at) VALUES ($1, `+s.NowPlus(-time.Hour)+`)`, dead)
		require.NoError(b, err)
		// Ids in canonical UUID text form, as revenant writes them.
		_, err = db.Exec(`WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g WHERE i < $1)
		INSERT INTO revenant_episodes (id, actor_id, status, attempts, claim_token, created_at, started_at, last_activity_at, finished_at, run_at, owner_node)
		SELECT lower(printf('%s-%s-%s-%s-%s', hex(randomblob(4)), hex(randomblob(2)), hex(randomblob(2)), hex(randomblob(2)), hex(randomblob(6)))),
			'actor-' || (i % 4), CASE WHEN i <= $2 THEN 'running' ELSE 'done' END, 1, 1,
			`+s.NowPlus(0)+`, `+s.NowPlus(0)+`, `+s.NowPlus(0)+`, CASE WHEN i <= $2 THEN NULL ELSE `+s.NowPlus(0)+` END, `+s.NowPlus(0)+`,
			CASE WHEN i <= $2 THEN $3 ELSE 'old-node' END
		FROM g`, total, orphans, dead)
		require.NoError(b, err)
	} else {
		// A random key: advisory locks are the database's, shared with
		// any other test process.
		_, err := db.Exec(`INSERT INTO revenant_nodes (node_id, lock_key, expires_at) VALUES ($1, $2, now() + interval '1 day')`, dead, rand.Int64())
		require.NoError(b, err)
		// Finished history plus the orphans, spread over four actors.
		_, err = db.Exec(`INSERT INTO revenant_episodes (id, actor_id, status, attempts, claim_token, created_at, started_at, last_activity_at, finished_at, owner_node)
		SELECT gen_random_uuid(), 'actor-' || (i % 4), CASE WHEN i <= $2 THEN 'running' ELSE 'done' END, 1, 1,
			now(), now(), now(), CASE WHEN i <= $2 THEN NULL ELSE now() END, CASE WHEN i <= $2 THEN $3 ELSE 'old-node' END
		FROM generate_series(1, $1) AS i`, total, orphans, dead)
		require.NoError(b, err)
	}
	reset := func() {
		_, err := db.Exec(`UPDATE revenant_episodes SET status = 'running', owner_node = $1, claim_token = 1, phase = NULL
			WHERE status = 'pending'`, dead)
		require.NoError(b, err)
		_, err = db.Exec(`UPDATE revenant_nodes SET stopped_at = NULL WHERE node_id = $1`, dead)
		require.NoError(b, err)
		_, err = db.Exec(analyze)
		require.NoError(b, err)
	}
	_, err := db.Exec(analyze)
	require.NoError(b, err)
	reg := registry{"actor-0": recovery.Restart, "actor-1": recovery.Restart, "actor-2": recovery.Restart, "actor-3": recovery.Restart}
	opts := recovery.Options{Registry: reg, AllStacks: true, AllEnvs: true}
	if v, err := strconv.Atoi(os.Getenv("REVENANT_BENCH_SWEEP_BATCH")); err == nil {
		opts.BatchSize = v
	}
	if outbox {
		pub, err := bus.NewOutbox(db, nil)
		require.NoError(b, err)
		opts.Bus = pub
	}

	var rawTotal, sweepTotal time.Duration
	doubleClaims := 0
	raw := func() {
		start := time.Now()
		rows, err := db.QueryContext(ctx, `UPDATE revenant_episodes SET status = 'pending', owner_node = NULL, claim_token = claim_token + 1
			WHERE status = 'running' AND owner_node = $1 RETURNING id`, dead)
		require.NoError(b, err)
		n := 0
		for rows.Next() {
			n++
		}
		require.NoError(b, rows.Err())
		rows.Close()
		rawTotal += time.Since(start)
		require.Equal(b, orphans, n)
		reset()
	}
	sweep := func() {
		start := time.Now()
		var wg sync.WaitGroup
		restarted := make([]int, sweepers)
		for i := range sweepers {
			wg.Go(func() {
				o := opts
				res, err := recovery.Sweep(ctx, db, &o)
				require.NoError(b, err)
				restarted[i] = res.Restarted
			})
		}
		wg.Wait()
		sweepTotal += time.Since(start)
		sum := 0
		for _, r := range restarted {
			sum += r
		}
		require.Equal(b, orphans, sum)
		if outbox {
			var evs int
			require.NoError(b, db.Get(&evs, `SELECT count(*) FROM revenant_events WHERE type = 'episode.recovered'`))
			require.Equal(b, orphans, evs, "one event per recovered episode")
			_, err := db.Exec(`DELETE FROM revenant_events`)
			require.NoError(b, err)
		}
		var twice int
		require.NoError(b, db.Get(&twice, `SELECT count(*) FROM revenant_episodes WHERE status = 'pending' AND claim_token <> 2`))
		doubleClaims += twice
		reset()
	}
	// Alternate which goes first: the first write after the reset pays
	// for what the reset left (hint bits, dirty pages).
	for i := 0; b.Loop(); i++ {
		if i%2 == 0 {
			raw()
			sweep()
		} else {
			sweep()
			raw()
		}
	}
	b.ReportMetric(float64(sweepTotal)/float64(rawTotal), "x_bulk_update")
	b.ReportMetric(float64(doubleClaims), "double_claims")
	b.ReportMetric(float64(sweepTotal.Milliseconds())/float64(b.N), "ms/sweep")
	b.ReportMetric(float64(rawTotal.Milliseconds())/float64(b.N), "ms/raw_update")
}

// BenchmarkFailover measures, with default runner and sweeper settings,
// the time from a worker's death to its running episodes being claimed by
// a survivor: after SIGKILL (advisory-lock detection) and after SIGSTOP
// (heartbeat TTL). Each iteration is one sample; use -benchtime 20x.
func BenchmarkFailover(b *testing.B) {
	b.Run("sigkill", func(b *testing.B) { benchFailover(b, syscall.SIGKILL) })
	b.Run("sigstop", func(b *testing.B) { benchFailover(b, syscall.SIGSTOP) })
}

func benchFailover(b *testing.B, sig syscall.Signal) {
	s := testdb.New(b, nil)
	db := s.DB
	const held = 8
	enqueueDemo(b, s, 0, 5)
	var samples []time.Duration
	opts := func(name string) clusterdemo.Options {
		return clusterdemo.Options{DSN: s.DSN, Name: name, Concurrency: held, Steps: 1, StepSleep: time.Hour, MaxAttempts: 50}
	}
	for b.Loop() {
		b.StopTimer()
		_, err := db.Exec(`UPDATE revenant_episodes SET status = 'canceled', finished_at = now() WHERE status IN ('pending', 'running')`)
		require.NoError(b, err)
		victim := startWorker(b, opts("victim"))
		enqueueDemo(b, s, held, 5)
		var victimNode string
		require.Eventually(b, func() bool {
			var n int
			require.NoError(b, db.Get(&n, `SELECT count(*) FROM revenant_episodes WHERE status = 'running'`))
			return n == held
		}, 30*time.Second, 10*time.Millisecond, "victim never claimed its work: %s", victim.out)
		require.NoError(b, db.Get(&victimNode, `SELECT DISTINCT owner_node FROM revenant_episodes WHERE status = 'running'`))
		survivor := startWorker(b, opts("survivor"))
		var survivorNode string
		require.Eventually(b, func() bool {
			return db.Get(&survivorNode, `SELECT node_id FROM revenant_nodes WHERE name = 'survivor' AND stopped_at IS NULL ORDER BY started_at DESC LIMIT 1`) == nil
		}, 30*time.Second, 10*time.Millisecond)
		// The survivor is up: its failure watcher waits on the victim.
		waitLockWaiter(b, db, victimNode)
		// Die at a random moment relative to the survivor's timers.
		time.Sleep(time.Duration(rand.IntN(2000)) * time.Millisecond)

		b.StartTimer()
		start := time.Now()
		require.NoError(b, victim.cmd.Process.Signal(sig))
		require.Eventually(b, func() bool {
			var n int
			require.NoError(b, db.Get(&n, `SELECT count(*) FROM revenant_episodes WHERE status = 'running' AND owner_node = $1`, survivorNode))
			return n == held
		}, time.Minute, 5*time.Millisecond)
		samples = append(samples, time.Since(start))
		b.StopTimer()
		victim.kill()
		survivor.kill()
		_, err = db.Exec(`UPDATE revenant_nodes SET stopped_at = now() WHERE stopped_at IS NULL`)
		require.NoError(b, err)
		b.StartTimer()
	}
	reportPercentiles(b, samples)
}
