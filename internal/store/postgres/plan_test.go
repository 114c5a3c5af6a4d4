package postgres

import (
	"context"
	"database/sql"
	"encoding/json"
	"math/rand/v2"
	"net/url"
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
	var out []byte
	require.NoError(t, s.DB.QueryRow(`EXPLAIN (ANALYZE, FORMAT JSON) `+eventReadRangesSQL, pq.Array(lo), pq.Array(hi), 1000).Scan(&out))
	var plan []struct{ Plan planNode }
	require.NoError(t, json.Unmarshal(out, &plan))
	read := plan[0].Plan.rowsFrom("revenant_events")
	require.Less(t, read, 50.0, "rows read from the outbox to re-check gaps holding 2 rows:\n%s", out)
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

	var out []byte
	require.NoError(t, s.DB.QueryRow(`EXPLAIN (ANALYZE, FORMAT JSON) `+query, 60_000).Scan(&out))
	var plan []struct{ Plan planNode }
	require.NoError(t, json.Unmarshal(out, &plan))
	read := plan[0].Plan.rowsFrom("revenant_episodes")
	require.Less(t, read, 100.0, "episode rows read to list the pairs of 20,000 orphans:\n%s", out)
}

// The pairs query's estimate is far above jit_above_cost; compiling it
// cost 40–55 ms of a sub-millisecond query. OrphanGroups plans it with
// JIT off, even where the server JITs everything.
func TestOrphanPairsArePlannedWithoutJIT(t *testing.T) {
	t.Parallel()
	s := testdb.New(t, &testdb.Options{})
	db, err := sql.Open("postgres", s.DSN+"&options="+url.QueryEscape("-c jit_above_cost=0"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	ctx := context.Background()
	tx, err := db.BeginTx(ctx, nil)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback() }()
	query := pairsSQL("")
	explain := func() string {
		var out []byte
		require.NoError(t, tx.QueryRowContext(ctx, `EXPLAIN (ANALYZE, FORMAT JSON) `+query, 60_000).Scan(&out))
		return string(out)
	}
	var jit string
	require.NoError(t, tx.QueryRowContext(ctx, `SHOW jit`).Scan(&jit))
	if jit != "on" {
		t.Skip("this server has JIT off: nothing to show") // counted as skipped, not passed
	}
	require.Contains(t, explain(), `"JIT"`, "this connection JITs every query")
	_, err = orphanGroupsWithoutJIT(ctx, tx, &store.OrphanQuery{StaleAfter: time.Minute})
	require.NoError(t, err)
	require.NotContains(t, explain(), `"JIT"`)
	// And through the pool, as sweeps call it.
	_, err = Store{}.OrphanGroups(ctx, sqlx.NewDb(db, "postgres"), &store.OrphanQuery{StaleAfter: time.Minute})
	require.NoError(t, err)
}

// A sweep batch updates the rows it locked by their tuple ids: each row
// is read once to lock it and once to update it, whatever the batch.
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
	for name, query := range map[string]string{"rows": batchByPairSQL("", 2), "summarized": summarizedBatchSQL("", 2, true, 8)} {
		args := []any{60_000, one("a"), one(""), one("restart"), one("registry"), limit, one("dead")}
		if name == "summarized" {
			args = append(args, "recovered", "failed", "dead_lettered")
		}
		tx, err := s.DB.Begin()
		require.NoError(t, err)
		var out []byte
		require.NoError(t, tx.QueryRow(`EXPLAIN (ANALYZE, FORMAT JSON) `+query, args...).Scan(&out))
		require.NoError(t, tx.Rollback())
		require.Contains(t, string(out), `"Tid Scan"`, name)
		var plan []struct{ Plan planNode }
		require.NoError(t, json.Unmarshal(out, &plan))
		read := plan[0].Plan.rowsFrom("revenant_episodes")
		require.LessOrEqual(t, read, 2.0*limit+10, "%s: episode rows read to recover %d:\n%s", name, limit, out)
		require.GreaterOrEqual(t, read, 2.0*limit, name)
	}
}
