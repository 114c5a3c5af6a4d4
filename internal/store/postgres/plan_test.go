package postgres

import (
	"encoding/json"
	"testing"

	"github.com/lib/pq"
	"github.com/stretchr/testify/require"

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
	_, err = s.DB.Exec(`ANALYZE`)
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
	Relation string     `json:"Relation Name"`
	Rows     float64    `json:"Actual Rows"`
	Loops    float64    `json:"Actual Loops"`
	Filtered float64    `json:"Rows Removed by Filter"`
	Plans    []planNode `json:"Plans"`
}

func (n planNode) rowsFrom(rel string) float64 {
	total := 0.0
	if n.Relation == rel {
		total += (n.Rows + n.Filtered) * n.Loops
	}
	for _, c := range n.Plans {
		total += c.rowsFrom(rel)
	}
	return total
}
