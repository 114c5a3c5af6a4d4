package main

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant/internal/clusterdemo"
	"github.com/revenant-go/revenant/internal/testdb"
)

func TestMain(m *testing.M) { testdb.MainOrChild(m, main) }

// One node, as a real process on each backend, enqueues its episodes, runs
// them, prints its progress and exits once they are done. The crash tests
// (package recovery) run several and kill them.
func TestClusterNodeRunsItsEpisodes(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		args := []string{"-name", "solo", "-enqueue", "6", "-steps", "3", "-step-time", "10ms", "-exit-when-done"}
		dsn := ""
		if driver == testdb.SQLite {
			args = append(args, "-sqlite", filepath.Join(t.TempDir(), "cluster.db"))
		} else {
			dsn = testdb.New(t, &testdb.Options{NoMigrate: true}).DSN
		}
		out, code := testdb.RunChild(t, dsn, args...)
		require.Equal(t, 0, code, out)
		if driver == testdb.SQLite {
			require.Contains(t, out, "on SQLite file")
		} else {
			require.Contains(t, out, "on Postgres from DATABASE_URL")
			require.NotContains(t, out, "postgres://", "the DSN is never printed")
		}
		require.Regexp(t, `node solo-\S+ \(pid \d+\)`, out)
		require.Contains(t, out, "enqueued 6 episodes")
		require.Regexp(t, `#0 started \(claim 1\)`, out)
		require.Regexp(t, `#5 done in \S+ \(claim 1\)`, out)
		require.Contains(t, out, "no episode is pending or running: stopping")
		require.Regexp(t, `node=solo-\S+ ran=6 steps=18 resumed=0 recoveries_seen=0`, out)
	})
}

// The crash tests create the side-effect table and enqueue the program's
// episodes through internal/clusterdemo, which must agree with it.
func TestClusterdemoMatchesTheProgram(t *testing.T) {
	t.Parallel()
	require.Equal(t, clusterdemo.ActorID, actorID)
	require.Equal(t, clusterdemo.Schema, schema)
	require.Equal(t, clusterdemo.SQLiteSchema, sqliteSchema)
}
