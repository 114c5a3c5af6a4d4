package postgres

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant/internal/store"
	"github.com/revenant-go/revenant/internal/testdb"
)

func TestMain(m *testing.M) { testdb.Main(m) }

// Re-reading gaps touches the rows inside them only, not the whole outbox
// (a join on BETWEEN is planned as a walk of the table in seq order, on
// every catch-up while any gap is open).
func TestEventReadRangesIsARangeScan(t *testing.T) {
	t.Parallel()
	s := testdb.New(t, &testdb.Options{})
	const rows = 20_000
	_, err := s.DB.Exec(`INSERT INTO revenant_events (id, type) SELECT gen_random_uuid(), 'x' FROM generate_series(1, $1)`, rows)
	require.NoError(t, err)
	_, err = s.DB.Exec(`ANALYZE revenant_events`)
	require.NoError(t, err)
	// Two open gaps near the top and one holding two late rows.
	lo := []int64{100, rows + 5, rows + 20}
	hi := []int64{101, rows + 9, rows + 4_000_000}
	plan, out := explain(t, s.DB, eventReadRangesSQL, pq.Array(lo), pq.Array(hi), 1000)
	read := plan.rowsFrom("revenant_events")
	require.Less(t, read, 50.0, "rows read from the outbox to re-check gaps holding 2 rows:\n%s", out)
}

// explain runs query under EXPLAIN (ANALYZE, FORMAT JSON) on q and
// returns its top plan node, and the plan as text for failure messages.
func explain(t *testing.T, q store.Querier, query string, args ...any) (planNode, string) {
	t.Helper()
	var out []byte
	require.NoError(t, q.QueryRowContext(context.Background(), `EXPLAIN (ANALYZE, FORMAT JSON) `+query, args...).Scan(&out))
	var plan []struct{ Plan planNode }
	require.NoError(t, json.Unmarshal(out, &plan))
	return plan[0].Plan, string(out)
}

type planNode struct {
	NodeType string     `json:"Node Type"`
	Relation string     `json:"Relation Name"`
	Rows     float64    `json:"Actual Rows"`
	Loops    float64    `json:"Actual Loops"`
	Filtered float64    `json:"Rows Removed by Filter"`
	Plans    []planNode `json:"Plans"`
}

// rowsFrom counts the rows read from rel (rows an update writes are not
// counted).
func (n planNode) rowsFrom(rel string) float64 {
	total := 0.0
	if n.Relation == rel && n.NodeType != "ModifyTable" {
		total += (n.Rows + n.Filtered) * n.Loops
	}
	for _, c := range n.Plans {
		total += c.rowsFrom(rel)
	}
	return total
}

// A sweep lists the pairs of a dead node's 20,000 orphans by probing the
// index a few times per pair, and never reads a live node's episodes.
func TestOrphanPairsIsALooseIndexScan(t *testing.T) {
	t.Parallel()
	s := testdb.New(t, &testdb.Options{})
	// Dead: its advisory lock (a random key) is not held.
	_, err := s.DB.Exec(`INSERT INTO revenant_nodes (node_id, lock_key, expires_at) VALUES
		('dead', $1, now() + interval '1 hour'), ('live', NULL, now() + interval '1 hour')`, rand.Int64())
	require.NoError(t, err)
	_, err = s.DB.Exec(`INSERT INTO revenant_episodes (id, actor_id, expectation, status, attempts, claim_token, started_at, owner_node)
		SELECT gen_random_uuid(), 'actor-' || (i % 2), CASE WHEN i % 3 = 0 THEN 'x' END, 'running', 1, 1, now(),
			CASE WHEN i <= 20000 THEN 'dead' ELSE 'live' END
		FROM generate_series(1, 25000) AS i`)
	require.NoError(t, err)
	// Owners no node row names fall back to activity: an old run of an
	// unknown owner and one of none are orphans; a fresh one is not.
	_, err = s.DB.Exec(`INSERT INTO revenant_episodes (id, actor_id, status, attempts, claim_token, started_at, owner_node) VALUES
		(gen_random_uuid(), 'ghostly', 'running', 1, 1, now() - interval '1 hour', 'ghost'),
		(gen_random_uuid(), 'fresh', 'running', 1, 1, now(), 'ghost'),
		(gen_random_uuid(), 'ownerless', 'running', 1, 1, now() - interval '1 hour', NULL)`)
	require.NoError(t, err)
	_, err = s.DB.Exec(`ANALYZE revenant_episodes, revenant_nodes`)
	require.NoError(t, err)
	query := pairsSQL("")
	rows, err := s.DB.Query(query, 60_000)
	require.NoError(t, err)
	var got []string
	for rows.Next() {
		var owner, actor, expectation string
		require.NoError(t, rows.Scan(&owner, &actor, &expectation))
		got = append(got, owner+"/"+actor+"/"+expectation)
	}
	require.NoError(t, rows.Err())
	require.ElementsMatch(t, []string{"dead/actor-0/", "dead/actor-0/x", "dead/actor-1/", "dead/actor-1/x",
		"ghost/ghostly/", "/ownerless/"}, got)

	plan, out := explain(t, s.DB, query, 60_000)
	read := plan.rowsFrom("revenant_episodes")
	require.Less(t, read, 100.0, "episode rows read to list the pairs of 20,000 orphans:\n%s", out)
}

// The pairs query's estimate is far above jit_above_cost; compiling it
// cost 40–55 ms of a sub-millisecond query. OrphanGroups plans it with
// JIT off (withoutJIT), even where the server JITs everything.
func TestOrphanPairsArePlannedWithoutJIT(t *testing.T) {
	t.Parallel()
	s := testdb.New(t, &testdb.Options{})
	var available bool
	require.NoError(t, s.DB.QueryRow(`SELECT pg_jit_available()`).Scan(&available))
	if !available {
		t.Skip("this server cannot JIT: nothing to show") // reported as skipped
	}
	// A pool whose sessions JIT every query.
	db, err := sqlx.Open("postgres", s.DSN)
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	db.SetMaxOpenConns(1)
	ctx := context.Background()
	_, err = db.ExecContext(ctx, `SET jit_above_cost = 0`)
	require.NoError(t, err)
	query := pairsSQL("")
	jitted := func(q store.Querier) bool {
		_, out := explain(t, q, query, 60_000)
		return strings.Contains(out, `"JIT"`)
	}
	require.True(t, jitted(db), "this pool JITs every query")
	require.NoError(t, withoutJIT(ctx, db, func(q store.Querier) error {
		require.False(t, jitted(q))
		return nil
	}))
	require.True(t, jitted(db), "the setting ends with withoutJIT's transaction")
	_, err = Store{}.OrphanGroups(ctx, db, &store.OrphanQuery{StaleAfter: time.Minute})
	require.NoError(t, err)
}

// A summarized sweep batch updates the rows it locked by their tuple ids:
// each row is read once to lock it and once to update it.
func TestOrphanBatchUpdatesLockedRowsByTID(t *testing.T) {
	t.Parallel()
	s := testdb.New(t, &testdb.Options{})
	_, err := s.DB.Exec(`INSERT INTO revenant_nodes (node_id, lock_key, expires_at) VALUES ('dead', $1, now() + interval '1 hour')`, rand.Int64())
	require.NoError(t, err)
	_, err = s.DB.Exec(`INSERT INTO revenant_episodes (id, actor_id, status, attempts, claim_token, started_at, owner_node)
		SELECT gen_random_uuid(), 'a', 'running', 1, 1, now(), 'dead' FROM generate_series(1, 20000)`)
	require.NoError(t, err)
	_, err = s.DB.Exec(`ANALYZE revenant_episodes, revenant_nodes`)
	require.NoError(t, err)
	const limit = 5000
	one := func(v string) any { return pq.Array([]string{v}) }
	tx, err := s.DB.Begin()
	require.NoError(t, err)
	defer func() { _ = tx.Rollback() }()
	plan, out := explain(t, tx, summarizedBatchSQL("", 2, true, 8),
		60_000, one("a"), one(""), one("restart"), one("registry"), limit, one("dead"), "recovered", "failed", "dead_lettered")
	require.Contains(t, out, `"Tid Scan"`)
	read := plan.rowsFrom("revenant_episodes")
	require.Equal(t, 2.0*limit, read, "episode rows read to recover %d:\n%s", limit, out)
}

// A row another transaction updates and commits after a batch's snapshot
// but before the batch locks it is locked under its new version, which
// the tuple-id update cannot see: that batch leaves it. A batch that left
// a row is not the last, so that the next one (a fresh snapshot) takes
// it; a batch that recovered nothing is, so that no pass can spin.
func TestOrphanBatchLeavesNoRowItLockedButMissed(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		orphans, restarted int
		done               bool
	}{{3, 2, false}, {1, 0, true}} {
		t.Run(strconv.Itoa(tc.orphans), func(t *testing.T) {
			t.Parallel()
			s := testdb.New(t, &testdb.Options{})
			ctx := context.Background()
			_, err := s.DB.Exec(`INSERT INTO revenant_nodes (node_id, lock_key, expires_at) VALUES ('dead', $1, now() + interval '1 hour')`, rand.Int64())
			require.NoError(t, err)
			_, err = s.DB.Exec(`INSERT INTO revenant_episodes (id, actor_id, status, attempts, claim_token, started_at, owner_node)
				SELECT gen_random_uuid(), 'a', 'running', 1, 1, now(), 'dead' FROM generate_series(1, $1)`, tc.orphans)
			require.NoError(t, err)
			var touched string
			require.NoError(t, s.DB.Get(&touched, `SELECT id FROM revenant_episodes ORDER BY id LIMIT 1`))
			p := &store.OrphanRecoverParams{Query: store.OrphanQuery{StaleAfter: time.Minute}, Limit: 10, Summarize: true,
				Policies: []store.PairPolicy{{Owner: "dead", ActorID: "a", Policy: "restart", Source: "registry"}}}

			// The batch's scan waits on an advisory lock, evaluated once,
			// after its snapshot is taken: meanwhile a zombie's step
			// touches one of the rows and commits.
			gate := rand.Int64()
			holder, err := s.DB.Conn(ctx)
			require.NoError(t, err)
			defer func() { _ = holder.Close() }()
			_, err = holder.ExecContext(ctx, `SELECT pg_advisory_lock($1)`, gate)
			require.NoError(t, err)
			scope, args := orphanArgs(&p.Query)
			scope += " AND (SELECT pg_advisory_xact_lock_shared(" + strconv.FormatInt(gate, 10) + ")::text) IS NOT NULL"
			query := summarizedBatchSQL(scope, len(args)+1, false, 0)
			args = append(args, pq.Array([]string{"a"}), pq.Array([]string{""}), pq.Array([]string{"restart"}),
				pq.Array([]string{"registry"}), p.Limit, pq.Array([]string{"dead"}))
			first := make(chan error, 1)
			go func() {
				_, err := runSummarizedBatch(ctx, s.DB, query, args, p)
				first <- err
			}()
			require.Eventually(t, func() bool {
				var waiting bool
				err := s.DB.Get(&waiting, `SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted
					AND ((classid::bigint << 32) | objid::bigint) = $1)`, gate)
				return err == nil && waiting
			}, time.Minute, 5*time.Millisecond, "the batch never waited on the gate")
			_, err = s.DB.Exec(`UPDATE revenant_episodes SET last_activity_at = now() WHERE id = $1`, touched)
			require.NoError(t, err)
			_, err = holder.ExecContext(ctx, `SELECT pg_advisory_unlock($1)`, gate)
			require.NoError(t, err)
			require.NoError(t, <-first)
			require.Equal(t, tc.restarted, p.Restarted, "the touched row is locked under its new version and left")
			require.Equal(t, tc.done, p.Done)

			// The next batch (or pass), as OrphanRecover runs it, takes it.
			p.Done = false
			recovered, err := Store{}.OrphanRecover(ctx, s.DB, p)
			require.NoError(t, err)
			require.Empty(t, recovered)
			require.Equal(t, 1, p.Restarted)
			require.True(t, p.Done)
			var left int
			require.NoError(t, s.DB.Get(&left, `SELECT count(*) FROM revenant_episodes WHERE status = 'running'`))
			require.Zero(t, left)
		})
	}
}

// Reading the outbox's tail reads, through its primary key, only the rows
// after the reader's position, even before the table has statistics (a
// new outbox, or one autovacuum has not analyzed yet): not the whole
// table, sorted, on every read.
func TestEventReadAfterUsesTheKeyWithoutStatistics(t *testing.T) {
	t.Parallel()
	s := testdb.New(t, &testdb.Options{})
	const rows = 12_000
	_, err := s.DB.Exec(`INSERT INTO revenant_events (id, type) SELECT gen_random_uuid(), 'x' FROM generate_series(1, $1)`, rows)
	require.NoError(t, err)
	plan, out := explain(t, s.DB, eventReadAfterSQL, rows-10, 1000)
	require.Less(t, plan.rowsFrom("revenant_events"), 50.0, "rows read from the outbox to return its last 10:\n%s", out)
}

// A step's fence finds its episode by primary key: a generic plan made
// while the table was small and had no statistics must not walk the
// partial index of running episodes (migration 10). Measured as the
// episode rows one recorded step fetches once 2,000 other episodes run:
// the table's own counters, in the step's transaction. (When other
// sessions change the catalogs enough meanwhile, the session drops its
// plans and the kept one is remade with the rows counted: the old query
// would then pass too. The window is kept short for that reason.)
func TestStepFenceReadsOneEpisode(t *testing.T) {
	t.Parallel()
	s := testdb.New(t, &testdb.Options{})
	ctx := context.Background()
	conn, err := s.DB.Connx(ctx)
	require.NoError(t, err)
	defer func() { _ = conn.Close() }()
	// One session: PL/pgSQL keeps its plans per session.
	_, err = conn.ExecContext(ctx, `SET plan_cache_mode = force_generic_plan`)
	require.NoError(t, err)
	newRunning := func(n int) []string {
		var ids []string
		require.NoError(t, sqlx.SelectContext(ctx, conn, &ids, `INSERT INTO revenant_episodes
			(id, actor_id, status, attempts, claim_token, started_at, last_activity_at, owner_node)
			SELECT gen_random_uuid(), 'a', 'running', 1, 7, now(), now(), 'n' FROM generate_series(1, $1) RETURNING id::text`, n))
		return ids
	}
	record := func(q sqlx.QueryerContext, id string, seq int) {
		var outcome int
		require.NoError(t, q.QueryRowxContext(ctx, stepRecordSQL, id, 7, seq, "s", "done", nil, nil, 0).Scan(&outcome))
		require.Equal(t, 1, outcome, "the step must be recorded")
	}
	// The plan is made, and kept, while three episodes run.
	for i, id := range newRunning(3) {
		record(conn, id, i+1)
	}
	// Then 2,000 more start, and one last: the partial index would hold
	// that one's entry after all of theirs.
	newRunning(2000)
	last := newRunning(1)[0]

	tx, err := conn.BeginTxx(ctx, nil)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback() }()
	// The transaction's counters, before and after: they may hold counts
	// from earlier statements not yet flushed, hence the difference.
	fetched := func() int64 {
		var n int64
		require.NoError(t, tx.GetContext(ctx, &n, `SELECT coalesce(idx_tup_fetch, 0) + seq_tup_read
			FROM pg_stat_xact_user_tables WHERE relid = 'revenant_episodes'::regclass`))
		return n
	}
	before := fetched()
	record(tx, last, 1)
	require.LessOrEqual(t, fetched()-before, int64(2), "episode rows one step's record fetched with 2,003 running")
}
