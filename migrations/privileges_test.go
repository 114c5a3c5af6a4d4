package migrations_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"testing"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant/internal/testdb"
	"github.com/revenant-go/revenant/migrations"
)

// dmlRole creates a login role with the privileges README's "Privileges"
// section lists for running revenant in s (no CREATE), and returns a pool
// connected as that role.
func dmlRole(t *testing.T, s *testdb.Schema) (*sqlx.DB, string) {
	t.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	role := "rvt_dml_" + hex.EncodeToString(b[:])
	r, sch := pq.QuoteIdentifier(role), pq.QuoteIdentifier(s.Name)
	_, err := s.DB.Exec(`CREATE ROLE ` + r + ` LOGIN`)
	require.NoError(t, err)

	u, err := url.Parse(s.DSN)
	require.NoError(t, err)
	require.Contains(t, []string{"postgres", "postgresql"}, u.Scheme, "TEST_DATABASE_URL must be a postgres:// URL for this test")
	u.User = url.User(role)
	db, err := sqlx.Open("postgres", u.String())
	require.NoError(t, err)
	db.SetMaxOpenConns(2)
	// Registered after testdb.New's, so it runs before the schema is dropped.
	t.Cleanup(func() {
		_ = db.Close()
		if _, err := s.DB.Exec(`DROP OWNED BY ` + r + `; DROP ROLE ` + r); err != nil {
			t.Logf("dropping role %s: %v", role, err)
		}
	})

	_, err = s.DB.Exec(`GRANT USAGE ON SCHEMA ` + sch + ` TO ` + r + `;
		GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA ` + sch + ` TO ` + r + `;
		GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA ` + sch + ` TO ` + r + `;
		GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA ` + sch + ` TO ` + r)
	require.NoError(t, err)
	return db, role
}

// A role without CREATE on the schema can call Migrate at every boot once
// the schema is current, and can run revenant's statements.
func TestMigrateAsDMLOnlyRoleWhenSchemaIsCurrent(t *testing.T) {
	t.Parallel()
	s := testdb.New(t, nil)
	ctx := context.Background()
	db, _ := dmlRole(t, s)

	res, err := migrations.Migrate(ctx, db)
	require.NoError(t, err)
	require.Empty(t, res.Applied)
	all := migrations.All()
	require.Equal(t, all[len(all)-1].Version, res.Version)
	m, err := migrations.New(db, nil)
	require.NoError(t, err)
	v, err := m.Version(ctx)
	require.NoError(t, err)
	require.Equal(t, res.Version, v)

	// The sequence and the function README lists are usable.
	_, err = db.Exec(`INSERT INTO revenant_events (id, type) VALUES ($1, $2)`, uuid.New(), "privileges_test")
	require.NoError(t, err)
	var recorded int
	require.NoError(t, db.Get(&recorded, `SELECT revenant_record_step($1, $2, $3, $4, $5, NULL, NULL, $6)`,
		uuid.New(), 1, 0, "step", "done", 0))
	require.Equal(t, 0, recorded, "no such episode: fenced out, nothing written")
}

// With something pending, the same role gets an error that says what to
// do, not a hang, and nothing changes.
func TestMigrateWithoutPrivilegeSaysWhatToDo(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("migrated", func(t *testing.T) {
		t.Parallel()
		s := testdb.New(t, nil)
		db, role := dmlRole(t, s)
		all := migrations.All()
		extra := migrations.Migration{Version: len(all) + 1, Name: "extra", SQL: `CREATE TABLE revenant_extra (id int)`}
		m, err := migrations.NewWithMigrations(db, nil, append(all, extra))
		require.NoError(t, err)

		res, err := m.Migrate(ctx)
		require.ErrorIs(t, err, migrations.ErrInsufficientPrivilege)
		var partial *migrations.PartialError
		require.ErrorAs(t, err, &partial)
		require.Equal(t, extra.Version, partial.Failed.Version)
		require.Empty(t, res.Applied)
		require.Contains(t, err.Error(), role)
		require.Contains(t, err.Error(), "GRANT CREATE ON SCHEMA")
		require.Contains(t, err.Error(), "owner")
		require.NotContains(t, tablesIn(t, s, s.Name), "revenant_extra")
		var rows int
		require.NoError(t, s.DB.Get(&rows, `SELECT count(*) FROM revenant_migrations`))
		require.Equal(t, len(all), rows)
	})

	t.Run("empty", func(t *testing.T) {
		t.Parallel()
		s := testdb.New(t, &testdb.Options{NoMigrate: true})
		db, role := dmlRole(t, s)

		res, err := migrations.Migrate(ctx, db)
		require.ErrorIs(t, err, migrations.ErrInsufficientPrivilege)
		require.Nil(t, res)
		require.Contains(t, err.Error(), role)
		require.Contains(t, err.Error(), "GRANT CREATE ON SCHEMA")
		require.Empty(t, tablesIn(t, s, s.Name))
	})
}
