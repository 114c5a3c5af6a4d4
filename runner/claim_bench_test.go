package runner_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant/internal/store"
	"github.com/revenant-go/revenant/internal/store/backend"
	"github.com/revenant-go/revenant/internal/testdb"
)

const (
	// claimBenchBatch is how many episodes one claim asks for.
	claimBenchBatch = 10
	// claimBenchChunk is how many due episodes are loaded at a time: at
	// the start and whenever fewer than one iteration's worth remain.
	claimBenchChunk = 5000
	claimBenchActor = "a"
)

// The baseline: a minimal hand-written claim of the same rows (due, in due
// order), without the scope, breaker and counter tests, reading back the
// ids only.
const (
	claimBenchRawSQL = `WITH c AS MATERIALIZED (
	SELECT id FROM revenant_episodes
	WHERE status = 'pending' AND actor_id = $2 AND run_at <= now()
	ORDER BY run_at, id
	LIMIT $3
	FOR UPDATE SKIP LOCKED
)
UPDATE revenant_episodes e
SET status = 'running', owner_node = $1, claim_token = e.claim_token + 1, attempts = e.attempts + 1,
	started_at = now(), last_activity_at = now()
FROM c
WHERE e.id = c.id
RETURNING e.id`
	claimBenchSQLiteNow    = `(SELECT strftime('%Y-%m-%d %H:%M:%f', 'now'))`
	claimBenchSQLiteRawSQL = `UPDATE revenant_episodes
SET status = 'running', owner_node = $1, claim_token = claim_token + 1, attempts = attempts + 1,
	started_at = ` + claimBenchSQLiteNow + `, last_activity_at = ` + claimBenchSQLiteNow + `
WHERE id IN (
	SELECT id FROM revenant_episodes
	WHERE status = 'pending' AND actor_id = $2 AND run_at <= ` + claimBenchSQLiteNow + `
	ORDER BY run_at, id
	LIMIT $3
)
RETURNING id`
)

// BenchmarkClaim measures the runner's claim statement
// (store.EpisodeClaimMany) taking batches of 10 due episodes of one actor,
// on a table that also holds 100,000 pending episodes of the same actor
// due an hour from now (future=100000) or none (future=0). The partial
// index on (actor_id, run_at, id) keeps future rows past now, so the two
// variants should be within noise of each other; compare their claims/s.
// The future rows are the same in every run (ids, due times). claims/s
// counts claim statements of 10 episodes each; raw_claims/s is a minimal
// hand-written claim of the same rows, alternated with the library's in
// the same run, and x_raw_claim the ratio of their times. Due rows are
// loaded 5,000 at a time, timer stopped, followed by VACUUM ANALYZE (ANALYZE
// on SQLite), so that the dead index entries of claimed rows stay bounded
// whatever the number of iterations. Use -benchtime 200x for figures; CI
// shrinks the future rows with REVENANT_BENCH_FUTURE_ROWS.
func BenchmarkClaim(b *testing.B) {
	future := 100_000
	// CI sets a smaller size: it runs each benchmark once so that none
	// rots; figures come from full-size runs.
	if v, err := strconv.Atoi(os.Getenv("REVENANT_BENCH_FUTURE_ROWS")); err == nil && v >= 1 {
		future = v
	}
	for _, backend := range testdb.Backends {
		for _, n := range []int{0, future} {
			b.Run(fmt.Sprintf("backend=%s/future=%d", backend, n), func(b *testing.B) { benchClaim(b, backend, n) })
		}
	}
}

func benchClaim(b *testing.B, driver string, future int) {
	s := testdb.New(b, &testdb.Options{Driver: driver})
	db := s.DB
	ctx := context.Background()
	st := backend.For(db)

	// Ids are canonical UUID text, deterministic: kind 1 for due rows
	// (numbered on across loads), kind 2 for future rows.
	analyze := `VACUUM ANALYZE revenant_episodes`
	loadDue := func(from, n int) {
		_, err := db.Exec(`INSERT INTO revenant_episodes (id, actor_id, run_at)
		SELECT ('00000001-0000-4000-8000-' || lpad(to_hex($1::bigint + i), 12, '0'))::uuid, $3,
			now() - ($2 - i + 1) * interval '1 millisecond'
		FROM generate_series(1, $2::bigint) AS i`, from, n, claimBenchActor)
		require.NoError(b, err)
	}
	loadFuture := func(n int) {
		_, err := db.Exec(`INSERT INTO revenant_episodes (id, actor_id, run_at)
		SELECT ('00000002-0000-4000-8000-' || lpad(to_hex(i), 12, '0'))::uuid, $2,
			now() + interval '1 hour' + i * interval '1 millisecond'
		FROM generate_series(1, $1::bigint) AS i`, n, claimBenchActor)
		require.NoError(b, err)
	}
	rawSQL, now := claimBenchRawSQL, "now()"
	if s.IsSQLite() {
		analyze, rawSQL, now = `ANALYZE`, claimBenchSQLiteRawSQL, claimBenchSQLiteNow
		loadDue = func(from, n int) {
			_, err := db.Exec(`WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g WHERE i < $2)
			INSERT INTO revenant_episodes (id, actor_id, run_at)
			SELECT printf('00000001-0000-4000-8000-%012x', $1 + i), $3,
				strftime('%Y-%m-%d %H:%M:%f', 'now', printf('%+.3f seconds', -($2 - i + 1) / 1000.0))
			FROM g`, from, n, claimBenchActor)
			require.NoError(b, err)
		}
		loadFuture = func(n int) {
			_, err := db.Exec(`WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g WHERE i < $1)
			INSERT INTO revenant_episodes (id, actor_id, run_at)
			SELECT printf('00000002-0000-4000-8000-%012x', i), $2,
				strftime('%Y-%m-%d %H:%M:%f', 'now', printf('%+.3f seconds', 3600 + i / 1000.0))
			FROM g`, n, claimBenchActor)
			require.NoError(b, err)
		}
	}
	if future > 0 {
		loadFuture(future)
	}
	loaded, left := 0, 0
	load := func() {
		loadDue(loaded, claimBenchChunk)
		loaded += claimBenchChunk
		left += claimBenchChunk
		_, err := db.Exec(analyze)
		require.NoError(b, err)
	}
	load()

	params := &store.ClaimManyParams{Node: "bench-node", ActorID: claimBenchActor, Limit: claimBenchBatch, Scope: store.Scope{}}
	claim := func() time.Duration {
		t0 := time.Now()
		rows, err := st.EpisodeClaimMany(ctx, db, params)
		d := time.Since(t0)
		require.NoError(b, err)
		require.Len(b, rows, claimBenchBatch)
		for _, r := range rows {
			require.NoError(b, r.Err)
		}
		return d
	}
	raw := func() time.Duration {
		t0 := time.Now()
		rows, err := db.QueryContext(ctx, rawSQL, "bench-raw", claimBenchActor, claimBenchBatch)
		require.NoError(b, err)
		n := 0
		for rows.Next() {
			var id uuid.UUID
			require.NoError(b, rows.Scan(&id))
			n++
		}
		require.NoError(b, rows.Err())
		require.NoError(b, rows.Close())
		d := time.Since(t0)
		require.Equal(b, claimBenchBatch, n)
		return d
	}

	var claimDur, rawDur time.Duration
	claims := 0
	b.ResetTimer()
	// Alternate which goes first, so that drift hits both equally.
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		if left < 2*claimBenchBatch {
			load()
		}
		left -= 2 * claimBenchBatch
		if i%2 == 0 {
			rawDur += raw()
			b.StartTimer()
			claimDur += claim()
		} else {
			b.StartTimer()
			claimDur += claim()
			b.StopTimer()
			rawDur += raw()
			b.StartTimer()
		}
		claims++
	}
	b.StopTimer()

	// Nothing was claimed before it was due, and every future row is
	// still pending.
	var early, claimed, pendingFuture int
	require.NoError(b, db.Get(&early, `SELECT count(*) FROM revenant_episodes
		WHERE status <> 'pending' AND (run_at > started_at OR run_at > `+now+`)`))
	require.Zero(b, early, "episodes claimed before they were due")
	require.NoError(b, db.Get(&claimed, `SELECT count(*) FROM revenant_episodes WHERE status = 'running'`))
	require.Equal(b, 2*claims*claimBenchBatch, claimed)
	require.NoError(b, db.Get(&pendingFuture, `SELECT count(*) FROM revenant_episodes WHERE status = 'pending' AND run_at > `+now))
	require.Equal(b, future, pendingFuture)

	b.ReportMetric(float64(claims)/claimDur.Seconds(), "claims/s")
	b.ReportMetric(float64(claims)/rawDur.Seconds(), "raw_claims/s")
	b.ReportMetric(float64(claimDur)/float64(rawDur), "x_raw_claim")
}
