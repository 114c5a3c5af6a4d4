package main

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant/internal/testdb"
)

func TestMain(m *testing.M) { testdb.MainOrChild(m, main) }

// The README's demo, as written: run 1 crashes inside step 2, run 2
// recovers and completes without re-running step 1, run 3 finds it done,
// and -reset starts over. With no DATABASE_URL it runs on a SQLite file,
// where the crash is found when the node's TTL lapses; on Postgres the
// startup sweep finds it at once.
func TestQuickstartCrashesThenRecovers(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		var runOnce func(args ...string) (string, int)
		if driver == testdb.SQLite {
			file := filepath.Join(t.TempDir(), "quickstart.db")
			runOnce = func(args ...string) (string, int) {
				return testdb.RunChild(t, "", append([]string{"-sqlite", file}, args...)...)
			}
		} else {
			s := testdb.New(t, &testdb.Options{NoMigrate: true})
			runOnce = func(args ...string) (string, int) { return testdb.RunChild(t, s.DSN, args...) }
		}
		out, code := runOnce()
		require.Equal(t, 3, code, out)
		require.Contains(t, out, "run 1: started a new episode")
		require.Contains(t, out, "claim 1\n")
		require.Contains(t, out, "step 1 reserve-stock: running")
		require.Contains(t, out, "the process crashes now, on purpose")
		require.NotContains(t, out, "step 3")

		out, code = runOnce()
		require.Equal(t, 0, code, out)
		if driver == testdb.SQLite {
			require.Contains(t, out, "using SQLite file")
			require.Contains(t, out, "SQLite has no advisory locks")
		} else {
			require.Contains(t, out, "using Postgres from DATABASE_URL")
			require.NotContains(t, out, "postgres://", "the DSN is never printed")
			require.Contains(t, out, "startup sweep: restarted=1")
		}
		require.Regexp(t, `recovered: episode \S+ went back to pending \(its node died`, out)
		require.Contains(t, out, "claim 2\n")
		require.NotContains(t, out, "step 1 reserve-stock: running")
		require.Contains(t, out, "step 1 reserve-stock: not run again")
		require.Contains(t, out, "step 3 ship: done")
		require.Contains(t, out, "done, claimed 2 times")

		out, code = runOnce()
		require.Equal(t, 0, code, out)
		require.Contains(t, out, "already done")

		out, code = runOnce("-reset")
		require.Equal(t, 0, code, out)
		require.Contains(t, out, "reset: the next run starts a new episode")
		out, code = runOnce()
		require.Equal(t, 3, code, out)
		require.Contains(t, out, "run 1: started a new episode")
	})
}
