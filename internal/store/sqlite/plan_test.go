package sqlite

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant/internal/testdb"
)

func TestMain(m *testing.M) { testdb.Main(m) }

// Re-reading gaps uses the seq index per range, never a scan of the
// outbox.
func TestEventReadRangesIsARangeScan(t *testing.T) {
	t.Parallel()
	s := testdb.New(t, &testdb.Options{Driver: testdb.SQLite})
	const rows = 20_000
	_, err := s.DB.Exec(`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $1)
		INSERT INTO revenant_events (id, type) SELECT lower(hex(randomblob(16))), 'x' FROM n`, rows)
	require.NoError(t, err)
	_, err = s.DB.Exec(`ANALYZE`)
	require.NoError(t, err)
	// Two open gaps near the top and one holding two late rows, as the
	// statement reads them: [lo, hi] pairs.
	arg, err := jsonArray([][2]int64{{100, 101}, {rows + 5, rows + 9}, {rows + 20, rows + 4_000_000}})
	require.NoError(t, err)
	rs, err := s.DB.Query(`EXPLAIN QUERY PLAN `+eventReadRangesSQL, arg, 1000)
	require.NoError(t, err)
	var plan []string
	for rs.Next() {
		var id, parent, unused int
		var detail string
		require.NoError(t, rs.Scan(&id, &parent, &unused, &detail))
		plan = append(plan, detail)
	}
	require.NoError(t, rs.Err())
	require.NotEmpty(t, plan)
	for _, d := range plan {
		require.False(t, strings.HasPrefix(d, "SCAN revenant_events") || strings.HasPrefix(d, "SCAN e"), "plan:\n%s", strings.Join(plan, "\n"))
	}
}
