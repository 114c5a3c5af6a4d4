package main

import (
	"errors"
	"os"
	"os/exec"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant/internal/testdb"
)

func TestMain(m *testing.M) {
	if os.Getenv("REVENANT_QUICKSTART_CHILD") == "1" {
		main()
		os.Exit(0)
	}
	testdb.Main(m)
}

// The README's demo, as written: run 1 crashes inside step 2, run 2
// recovers at startup and completes without re-running step 1.
func TestQuickstartCrashesThenRecovers(t *testing.T) {
	t.Parallel()
	s := testdb.New(t, &testdb.Options{NoMigrate: true})
	runOnce := func(args ...string) (string, int) {
		cmd := exec.Command(os.Args[0], append([]string{"-test.run=^$"}, args...)...)
		cmd.Env = append(os.Environ(), "REVENANT_QUICKSTART_CHILD=1", "DATABASE_URL="+s.DSN)
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return string(out), exit.ExitCode()
		}
		require.NoError(t, err, string(out))
		return string(out), 0
	}
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
