package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant/internal/testdb"
	"github.com/revenant-go/revenant/migrations"
)

// migrate status shows what is pending, migrate up asks first and then
// applies it all, on both backends.
func TestMigrateUpAndStatus(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		s := testdb.New(t, &testdb.Options{Driver: driver, NoMigrate: true})
		all := migrations.All()
		if s.IsSQLite() {
			all = migrations.AllSQLite()
		}
		latest := all[len(all)-1].Version

		var st migrateStatusJSON
		requireExit(t, 0, cliJSON(t, s.DSN, &st, "migrate", "status"))
		require.Zero(t, st.Version)
		require.Equal(t, latest, st.Latest)
		require.False(t, st.UpToDate)
		require.Len(t, st.Pending, len(all))

		r := cli(t, s.DSN, "migrate", "up")
		requireExit(t, exitDeclined, r)
		require.Contains(t, r.stderr, "pass --yes")

		var up migrateUpJSON
		requireExit(t, 0, cliJSON(t, s.DSN, &up, "migrate", "up", "--yes"))
		require.Len(t, up.Applied, len(all))
		require.Equal(t, latest, up.Version)

		r = cli(t, s.DSN, "migrate", "status")
		requireExit(t, 0, r)
		require.Contains(t, r.stdout, "up to date")
		r = cli(t, s.DSN, "migrate", "up")
		requireExit(t, 0, r) // nothing pending: nothing to confirm
		require.Contains(t, r.stdout, "nothing to apply")
	})
}

// A new SQLite file is created by migrate up only once confirmed.
func TestMigrateUpCreatesSQLiteFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "new.sqlite3")
	requireExit(t, exitDeclined, cli(t, path, "migrate", "up"))
	require.NoFileExists(t, path)
	r := cli(t, path, "migrate", "up", "--yes")
	requireExit(t, 0, r)
	require.Contains(t, r.stdout, "applied 0001 core")
	require.FileExists(t, path)
}

// export writes one file per migration in the tool's naming, leaves
// identical files alone, and refuses to overwrite an edited one.
func TestMigrateExport(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		format string
		name   func(migrations.Migration) string
		body   func(migrations.Migration) string
	}{
		{formatGoose, migrations.GooseFileName, migrations.WriteGoose},
		{formatGolangMigrate, migrations.GolangMigrateFileName, func(m migrations.Migration) string { return m.SQL }},
	} {
		t.Run(tc.format, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), "db", "migrations")
			var out exportJSON
			requireExit(t, 0, cliJSON(t, "", &out, "migrate", "export", "--format", tc.format, "--dir", dir))
			all := migrations.All()
			require.Len(t, out.Files, len(all))
			for i, m := range all {
				path := filepath.Join(dir, tc.name(m))
				require.Equal(t, path, out.Files[i].Path)
				require.Equal(t, "written", out.Files[i].Status)
				got, err := os.ReadFile(path)
				require.NoError(t, err)
				require.Equal(t, tc.body(m), string(got))
			}

			r := cli(t, "", "migrate", "export", "--format", tc.format, "--dir", dir)
			requireExit(t, 0, r)
			require.Contains(t, r.stdout, "unchanged")
			require.NotContains(t, r.stdout, "written")

			edited := filepath.Join(dir, tc.name(all[0]))
			require.NoError(t, os.WriteFile(edited, []byte("-- edited by hand\n"), 0o600))
			r = cli(t, "", "migrate", "export", "--format", tc.format, "--dir", dir)
			requireExit(t, exitError, r)
			require.Contains(t, r.stderr, "--force")
			requireExit(t, 0, cli(t, "", "migrate", "export", "--format", tc.format, "--dir", dir, "--force"))
			got, err := os.ReadFile(edited)
			require.NoError(t, err)
			require.Equal(t, tc.body(all[0]), string(got))
		})
	}
	t.Run("sql", func(t *testing.T) {
		t.Parallel()
		r := cli(t, "", "migrate", "export", "--format", "sql")
		requireExit(t, 0, r)
		for _, m := range migrations.All() {
			require.Contains(t, r.stdout, m.SQL)
		}
		r = cli(t, "", "migrate", "export", "--format", "sql", "--dialect", "sqlite")
		requireExit(t, 0, r)
		require.Contains(t, r.stdout, migrations.AllSQLite()[0].SQL)

		dir := t.TempDir()
		var out exportJSON
		requireExit(t, 0, cliJSON(t, "", &out, "migrate", "export", "--format", "sql", "--dir", dir))
		require.Len(t, out.Files, len(migrations.All()))
		got, err := os.ReadFile(filepath.Join(dir, "0001_revenant_core.sql"))
		require.NoError(t, err)
		require.Equal(t, migrations.All()[0].SQL, string(got))
	})
}
