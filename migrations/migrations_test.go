package migrations_test

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant"
	"github.com/revenant-go/revenant/internal/testdb"
	"github.com/revenant-go/revenant/migrations"
)

func tablesIn(t *testing.T, s *testdb.Schema, schema string) []string {
	t.Helper()
	var names []string
	if s.IsSQLite() {
		require.NoError(t, s.DB.Select(&names,
			`SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'revenant_%' ORDER BY 1`))
		return names
	}
	require.NoError(t, s.DB.Select(&names,
		`SELECT table_name FROM information_schema.tables WHERE table_schema = $1 AND table_name LIKE 'revenant_%' ORDER BY 1`, schema))
	return names
}

func allFor(s *testdb.Schema) []migrations.Migration {
	if s.IsSQLite() {
		return migrations.AllSQLite()
	}
	return migrations.All()
}

func TestMigrateFreshSchemaThenNothingPending(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		s := testdb.New(t, &testdb.Options{Driver: driver, NoMigrate: true})
		ctx := context.Background()
		publicBefore := tablesIn(t, s, "public") // a demo run may have used public

		res, err := migrations.Migrate(ctx, s.DB)
		require.NoError(t, err)
		all := allFor(s)
		require.Len(t, res.Applied, len(all))
		require.Equal(t, all[len(all)-1].Version, res.Version)

		// Everything landed in the search_path schema, which is not public.
		require.Equal(t, []string{"revenant_actor_definitions", "revenant_breakers", "revenant_episodes", "revenant_events",
			"revenant_migrations", "revenant_nodes", "revenant_steps", "revenant_workflow_definitions", "revenant_workflow_instances", "revenant_workflow_steps"}, tablesIn(t, s, s.Name))
		if !s.IsSQLite() {
			require.Equal(t, publicBefore, tablesIn(t, s, "public"), "nothing landed in public")
		}

		again, err := migrations.Migrate(ctx, s.DB)
		require.NoError(t, err, "nothing pending is success")
		require.Empty(t, again.Applied)
		require.Equal(t, res.Version, again.Version)

		m, err := migrations.New(s.DB, nil)
		require.NoError(t, err)
		pending, err := m.Pending(ctx)
		require.NoError(t, err)
		require.Empty(t, pending)
	})
}

func TestMigrateConcurrentlyAppliesOnce(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		s := testdb.New(t, &testdb.Options{Driver: driver, NoMigrate: true, MaxOpenConns: 10})
		ctx := context.Background()

		const nodes = 8
		var wg sync.WaitGroup
		results := make([]*migrations.Result, nodes)
		errs := make([]error, nodes)
		for i := range nodes {
			wg.Go(func() { results[i], errs[i] = migrations.Migrate(ctx, s.DB) })
		}
		wg.Wait()

		applied := map[int]int{}
		for i := range nodes {
			require.NoError(t, errs[i])
			for _, a := range results[i].Applied {
				applied[a.Version]++
			}
		}
		for _, m := range allFor(s) {
			require.Equal(t, 1, applied[m.Version], "version %d applied exactly once", m.Version)
		}
		var rows int
		require.NoError(t, s.DB.Get(&rows, `SELECT count(*) FROM revenant_migrations`))
		require.Equal(t, len(allFor(s)), rows)
	})
}

func TestMigrateFailureRollsBackAndCanBeRetried(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		s := testdb.New(t, &testdb.Options{Driver: driver, NoMigrate: true})
		ctx := context.Background()
		list := []migrations.Migration{
			{Version: 1, Name: "one", SQL: `CREATE TABLE revenant_t1 (id int)`},
			{Version: 2, Name: "two", SQL: `CREATE TABLE revenant_t2 (id int); CREATE TABLE revenant_t2b (id int); SELEC broken`},
		}
		m, err := migrations.NewWithMigrations(s.DB, nil, list)
		require.NoError(t, err)

		res, err := m.Migrate(ctx)
		var partial *migrations.PartialError
		require.ErrorAs(t, err, &partial)
		require.Equal(t, 2, partial.Failed.Version)
		require.Len(t, partial.Applied, 1)
		require.Equal(t, 1, res.Version)
		require.Contains(t, err.Error(), "rolled back")
		// Version 2's first statements were rolled back with it: nothing dirty.
		require.Equal(t, []string{"revenant_migrations", "revenant_t1"}, tablesIn(t, s, s.Name))

		list[1].SQL = `CREATE TABLE revenant_t2 (id int)`
		m, err = migrations.NewWithMigrations(s.DB, nil, list)
		require.NoError(t, err)
		res, err = m.Migrate(ctx)
		require.NoError(t, err)
		require.Len(t, res.Applied, 1)
		require.Equal(t, 2, res.Applied[0].Version)
		v, err := m.Version(ctx)
		require.NoError(t, err)
		require.Equal(t, 2, v)
	})
}

// On Postgres a newer version is reported, not refused: during a rolling
// deploy old and new nodes share the database. (SQLite refuses it; see the
// sqlite package's tests.)
func TestMigrateReportsVersionsFromANewerBinary(t *testing.T) {
	t.Parallel()
	s := testdb.New(t, nil)
	ctx := context.Background()
	_, err := s.DB.Exec(`INSERT INTO revenant_migrations (version, name) VALUES (9999, 'from_the_future')`)
	require.NoError(t, err)
	res, err := migrations.Migrate(ctx, s.DB)
	require.NoError(t, err)
	require.Empty(t, res.Applied)
	require.Equal(t, []int{9999}, res.Unknown)
}

func TestMigrateWithPgxStdlibDriver(t *testing.T) {
	t.Parallel()
	s := testdb.New(t, &testdb.Options{Driver: "pgx", NoMigrate: true})
	res, err := migrations.Migrate(context.Background(), s.DB)
	require.NoError(t, err)
	require.Len(t, res.Applied, len(migrations.All()))
	require.Len(t, tablesIn(t, s, s.Name), 10)
}

func TestBadInput(t *testing.T) {
	t.Parallel()
	_, err := migrations.New(nil, nil)
	require.ErrorIs(t, err, migrations.ErrNilDB)
	_, err = migrations.Migrate(context.Background(), nil)
	require.ErrorIs(t, err, migrations.ErrNilDB)
	require.True(t, strings.Contains(err.Error(), "WrapDB"), "the error says how to fix it")
}

func TestExportFormats(t *testing.T) {
	t.Parallel()
	all := migrations.All()
	require.NotEmpty(t, all)
	for i, m := range all {
		require.Equal(t, i+1, m.Version)
		require.Contains(t, m.SQL, "revenant_")
		g := migrations.WriteGoose(m)
		require.True(t, strings.HasPrefix(g, "-- +goose Up\n"))
		require.Contains(t, g, "-- +goose StatementEnd")
		require.Equal(t, "00001_revenant_core.sql", migrations.GooseFileName(all[0]))
		require.Equal(t, "000001_revenant_core.up.sql", migrations.GolangMigrateFileName(all[0]))
	}
	require.False(t, errors.Is(nil, migrations.ErrNilDB))
}

// Versions <= 0 are written by no revenant: both backends refuse them the
// same way, say how to fix it, and change nothing, pending work or not.
func TestMigrateRefusesVersionsBelowOne(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		s := testdb.New(t, &testdb.Options{Driver: driver})
		ctx := context.Background()
		all := allFor(s)
		_, err := s.DB.Exec(`INSERT INTO revenant_migrations (version, name) VALUES (0, 'zero'), (-1, 'negative')`)
		require.NoError(t, err)
		rows := func() int {
			var n int
			require.NoError(t, s.DB.Get(&n, `SELECT count(*) FROM revenant_migrations`))
			return n
		}

		res, err := migrations.Migrate(ctx, s.DB)
		require.ErrorIs(t, err, migrations.ErrInvalidVersions)
		require.NotErrorIs(t, err, migrations.ErrSchemaTooNew)
		require.Contains(t, err.Error(), "[-1 0]")
		require.Contains(t, err.Error(), "DELETE FROM revenant_migrations WHERE version <= 0")
		if res != nil {
			require.Empty(t, res.Applied)
			require.Empty(t, res.Unknown)
		}
		require.Equal(t, len(all)+2, rows(), "nothing deleted")

		// With a migration pending, nothing is applied either.
		extra := migrations.Migration{Version: len(all) + 1, Name: "extra", SQL: `CREATE TABLE revenant_extra (id int)`}
		m, err := migrations.NewWithMigrations(s.DB, nil, append(all, extra))
		require.NoError(t, err)
		_, err = m.Migrate(ctx)
		require.ErrorIs(t, err, migrations.ErrInvalidVersions)
		require.NotContains(t, tablesIn(t, s, s.Name), "revenant_extra")
		require.Equal(t, len(all)+2, rows())
		_, err = m.Version(ctx)
		require.ErrorIs(t, err, migrations.ErrInvalidVersions)
		_, err = m.Pending(ctx)
		require.ErrorIs(t, err, migrations.ErrInvalidVersions)

		// The fix the message names works.
		_, err = s.DB.Exec(`DELETE FROM revenant_migrations WHERE version <= 0`)
		require.NoError(t, err)
		res, err = m.Migrate(ctx)
		require.NoError(t, err)
		require.Len(t, res.Applied, 1)
		require.Equal(t, extra.Version, res.Version)
	})
}

// A SQLite handle that begins transactions DEFERRED (not sqlite.Open's
// IMMEDIATE) still migrates one process at a time: Migrate's first write
// takes the file's write lock before it reads the versions.
func TestMigrateSQLiteDeferredTransactionsApplyOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "deferred.db")
	plain, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)")
	require.NoError(t, err)
	t.Cleanup(func() { _ = plain.Close() })
	plain.SetMaxOpenConns(8)
	db := revenant.WrapDB(plain)
	// The file exists before the race, as it would for several processes.
	require.NoError(t, db.PingContext(ctx))

	const nodes = 8
	var wg sync.WaitGroup
	results := make([]*migrations.Result, nodes)
	errs := make([]error, nodes)
	for i := range nodes {
		wg.Go(func() { results[i], errs[i] = migrations.Migrate(ctx, db) })
	}
	wg.Wait()
	applied := map[int]int{}
	for i := range nodes {
		require.NoError(t, errs[i])
		for _, a := range results[i].Applied {
			applied[a.Version]++
		}
	}
	for _, m := range migrations.AllSQLite() {
		require.Equal(t, 1, applied[m.Version], "version %d applied exactly once", m.Version)
	}
}
