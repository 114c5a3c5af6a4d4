package main

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant/internal/testdb"
)

func TestMain(m *testing.M) { testdb.MainOrChild(m, main) }

// The order service starts in 15 lines of wiring and runs its workflow.
func TestOrderServiceRuns(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		var out string
		var code int
		if driver == testdb.SQLite {
			out, code = testdb.RunChild(t, "", "-sqlite", filepath.Join(t.TempDir(), "orders.db"))
			require.Contains(t, out, "using SQLite file")
		} else {
			s := testdb.New(t, &testdb.Options{NoMigrate: true})
			out, code = testdb.RunChild(t, s.DSN)
			require.Contains(t, out, "using Postgres")
		}
		require.Equal(t, 0, code, out)
		require.Contains(t, out, "order workflow done: reserve done, charge done")
		require.Regexp(t, `startup: migrated [1-9][0-9]* migrations; sweep restarted 0`, out)
	})
}
