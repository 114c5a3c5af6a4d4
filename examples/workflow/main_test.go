package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant/internal/testdb"
)

func TestMain(m *testing.M) { testdb.MainOrChild(m, main) }

// The README's workflow demo, as a real process on each backend: run 1
// crashes mid-way, run 2 recovers the crashed step and completes (every
// step runs once across both runs), run 3 finds the instance already done,
// and -reset starts over.
func TestWorkflowExampleCrashesThenCompletes(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		var runOnce func(args ...string) (string, int)
		if driver == testdb.SQLite {
			file := filepath.Join(t.TempDir(), "workflow.db")
			runOnce = func(args ...string) (string, int) {
				return testdb.RunChild(t, "", append([]string{"-sqlite", file}, args...)...)
			}
		} else {
			s := testdb.New(t, &testdb.Options{NoMigrate: true})
			runOnce = func(args ...string) (string, int) { return testdb.RunChild(t, s.DSN, args...) }
		}
		out1, code := runOnce()
		require.Equal(t, 3, code, out1)
		require.Contains(t, out1, "run 1: started instance")
		require.Contains(t, out1, "watermark: the process crashes now, on purpose")

		out2, code := runOnce()
		require.Equal(t, 0, code, out2)
		if driver == testdb.SQLite {
			require.Contains(t, out2, "using SQLite file")
		} else {
			require.Contains(t, out2, "using Postgres from DATABASE_URL")
			require.NotContains(t, out2, "postgres://", "the DSN is never printed")
		}
		require.Contains(t, out2, "resuming instance")
		require.Contains(t, out2, "recovered: step watermark went back to pending")
		require.Contains(t, out2, "running watermark (episode claim 2)")
		require.Contains(t, out2, ": done\n")
		require.Regexp(t, `watermark +done: step try 1, episode claims 2 \(restarted after a crash\)`, out2)
		require.Regexp(t, `download +done: step try 1, episode claims 1\n`, out2)
		both := out1 + out2
		for _, step := range []string{"download", "resize", "watermark", "caption", "publish"} {
			require.Equal(t, 1, strings.Count(both, "running "+step+" "), "step %s ran once across both runs:\n%s", step, both)
		}

		out3, code := runOnce()
		require.Equal(t, 0, code, out3)
		require.Contains(t, out3, "the instance for photo-123 is already done")
		require.Regexp(t, `publish +done: step try 1, episode claims 1`, out3)
		require.NotContains(t, out3, "running ")

		out, code := runOnce("-reset")
		require.Equal(t, 0, code, out)
		require.Contains(t, out, "reset: the next run starts a new instance")
		out, code = runOnce()
		require.Equal(t, 3, code, out)
		require.Contains(t, out, "run 1: started instance")
	})
}
