package main

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant/internal/testdb"
)

func TestMain(m *testing.M) { testdb.MainOrChild(m, main) }

// The README's demo, as written: run 1 crashes inside step 2, run 2
// recovers at startup and completes without re-running step 1.
func TestQuickstartCrashesThenRecovers(t *testing.T) {
	t.Parallel()
	s := testdb.New(t, &testdb.Options{NoMigrate: true})
	runOnce := func(args ...string) (string, int) { return testdb.RunChild(t, s.DSN, args...) }
	out, code := runOnce()
	require.Equal(t, 3, code, out)
	require.Contains(t, out, "run 1: started a new episode")
	require.Contains(t, out, "step 1 reserve-stock: running")
	require.Contains(t, out, "the process crashes now")
	require.NotContains(t, out, "step 3")

	out, code = runOnce()
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "startup sweep: restarted=1")
	require.NotContains(t, out, "step 1 reserve-stock: running")
	require.Contains(t, out, "step 1 reserve-stock: not run again")
	require.Contains(t, out, "step 3 ship: done")
	require.Contains(t, out, "done after 2 attempts")

	out, code = runOnce()
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "already done")
}
