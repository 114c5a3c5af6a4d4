package dialect_test

import (
	"database/sql"
	"testing"

	"github.com/jmoiron/sqlx"
	_ "github.com/lib/pq"
	"github.com/stretchr/testify/require"
	_ "modernc.org/sqlite"

	"github.com/revenant-go/revenant/internal/dialect"
)

func TestDetectsTheBackendFromTheDriver(t *testing.T) {
	t.Parallel()
	pg, err := sql.Open("postgres", "postgres://127.0.0.1:1/x") // not connected: Open is lazy
	require.NoError(t, err)
	defer pg.Close()
	lite, err := sql.Open("sqlite", ":memory:")
	require.NoError(t, err)
	defer lite.Close()

	require.Equal(t, dialect.Postgres, dialect.OfDB(pg))
	require.Equal(t, dialect.SQLite, dialect.OfDB(lite))
	// Whatever name sqlx was given, the driver decides.
	require.Equal(t, dialect.SQLite, dialect.Of(sqlx.NewDb(lite, "postgres")))
	require.Equal(t, dialect.Postgres, dialect.Of(sqlx.NewDb(pg, "postgres")))
	require.Equal(t, dialect.Postgres, dialect.Of(nil))
}

func TestRewriteCoversThePortableSubset(t *testing.T) {
	t.Parallel()
	q := `UPDATE t SET a = greatest(a - 1, 0), at = now(), j = coalesce($1::jsonb, '{}'::jsonb)`
	require.Equal(t, q, dialect.Postgres.Rewrite(q), "Postgres SQL is left alone")
	got := dialect.SQLite.Rewrite(q)
	require.NotContains(t, got, "now()")
	require.NotContains(t, got, "::jsonb")
	require.NotContains(t, got, "greatest(")
	require.Contains(t, got, "max(a - 1, 0)")
	require.Contains(t, got, dialect.SQLiteNow)
}
