package main

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// Usage errors exit 2 with a message that says how to fix the call; the
// database URL is never printed, even when it cannot be used.
func TestUsageErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, dsn string
		args      []string
		says      string
	}{
		{"no command", "", nil, "no command given"},
		{"unknown command", "", []string{"statsu"}, `did you mean "status"?`},
		{"unknown subcommand", "", []string{"episodes", "lst"}, `unknown episodes subcommand "lst"`},
		{"group without subcommand", "", []string{"migrate"}, "migrate needs a subcommand: up, status, export"},
		{"unknown flag", "", []string{"status", "--frobnicate"}, "unknown flag: --frobnicate"},
		{"bad flag value", "", []string{"status", "--timeout", "soon"}, "invalid argument"},
		{"non-positive timeout", "", []string{"status", "--timeout", "0s"}, "--timeout must be positive"},
		{"no database", "", []string{"status"}, "pass --database-url or set DATABASE_URL"},
		{"unknown database", "mysql://root:hunter2@db/app", []string{"nodes"}, "neither Postgres nor SQLite"},
		{"missing argument", "", []string{"episodes", "show"}, "needs an episode id"},
		{"bad id", "", []string{"episodes", "explain", "not-a-uuid"}, `"not-a-uuid" is not an episode id`},
		{"bad status", "", []string{"episodes", "list", "--status", "zombie"}, `unknown status "zombie"`},
		{"requeue without a selection", "", []string{"requeue"}, "name the episodes to requeue"},
		{"requeue with both", "", []string{"requeue", "0190d5f2-7a3c-7b1e-9a4f-2c8e5d1b6f30", "--actor", "a"}, "not both"},
		{"actor without policy", "", []string{"actors", "define", "importer"}, "state a policy"},
		{"actor with a bad policy", "", []string{"actors", "define", "importer", "--recovery", "reboot"}, "neither restart nor fail"},
		{"export without format", "", []string{"migrate", "export"}, "pass --format"},
		{"export goose without dir", "", []string{"migrate", "export", "--format", "goose"}, "pass --dir"},
		{"ui on a public address", "", []string{"ui", "--addr", "0.0.0.0:0"}, "no built-in authentication"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := cli(t, tc.dsn, tc.args...)
			requireExit(t, exitUsage, r)
			require.Contains(t, r.stderr, tc.says)
			require.Contains(t, r.stderr, "--help' for usage")
			require.NotContains(t, r.stderr, "hunter2")
		})
	}
}

// An unreachable Postgres is an error (exit 1) that names neither the URL
// nor its password.
func TestConnectionErrorHidesTheURL(t *testing.T) {
	t.Parallel()
	r := cli(t, "postgres://ops:hunter2@127.0.0.1:1/app?sslmode=disable&connect_timeout=5", "nodes")
	requireExit(t, exitError, r)
	require.Contains(t, r.stderr, "connecting to Postgres")
	require.NotContains(t, r.stderr, "hunter2")
	require.NotContains(t, r.stderr, "ops:")

	// A SQLite path that does not exist is not created by a read.
	path := t.TempDir() + "/missing.db"
	r = cli(t, "sqlite:"+path, "status")
	requireExit(t, exitError, r)
	require.Contains(t, r.stderr, "no SQLite database at")
	require.NoFileExists(t, path)
}

// The root help documents the exit codes.
func TestHelpDocumentsExitCodes(t *testing.T) {
	t.Parallel()
	r := cli(t, "", "--help")
	requireExit(t, 0, r)
	for _, s := range []string{"Exit codes:", "4  declined or unconfirmed", "5  status found something needing attention", "6  a workflow request"} {
		require.Contains(t, r.stdout, s)
	}
}
