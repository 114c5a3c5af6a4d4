package main

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant/internal/testdb"
)

func TestMain(m *testing.M) { testdb.MainOrChild(m, main) }

// The README's workflow demo: run 1 crashes mid-way, run 2 sweeps and
// reconciles at startup and completes; every step prints exactly once.
func TestWorkflowExampleCrashesThenCompletes(t *testing.T) {
	t.Parallel()
	s := testdb.New(t, &testdb.Options{NoMigrate: true})
	runOnce := func() (string, int) { return testdb.RunChild(t, s.DSN) }
	out1, code := runOnce()
	require.Equal(t, 3, code, out1)
	require.Contains(t, out1, "crashes now")
	out2, code := runOnce()
	require.Equal(t, 0, code, out2)
	// The crashed step is recovered by the startup sweep, or a moment later
	// by the Sweeper if the dead process's lock was still held at startup.
	require.Regexp(t, `startup: sweep restarted=1|sweeper: episode.recovered watermark`, out2)
	require.Contains(t, out2, ": done")
	both := out1 + out2
	for _, step := range []string{"download", "resize", "watermark", "caption", "publish"} {
		require.Equal(t, 1, strings.Count(both, "running "+step+"\n"), "step %s printed once across both runs:\n%s", step, both)
	}
}
