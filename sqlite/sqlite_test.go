package sqlite_test

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant"
	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/migrations"
	"github.com/revenant-go/revenant/sqlite"
)

func migrated(t *testing.T, path string, cfg *sqlite.Config) (*episodes.Store, func()) {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, path, cfg)
	require.NoError(t, err)
	_, err = migrations.Migrate(ctx, db)
	require.NoError(t, err)
	st, err := episodes.New(db, nil)
	require.NoError(t, err)
	return st, func() { _ = db.Close() }
}

func count(t *testing.T, path string) int {
	t.Helper()
	db, err := sqlite.Open(context.Background(), path, &sqlite.Config{ReadOnly: true})
	require.NoError(t, err)
	defer db.Close()
	var n int
	require.NoError(t, db.Get(&n, `SELECT count(*) FROM revenant_episodes`))
	return n
}

// A read-only database: writes fail with an error that says so, and what
// was in the file is still there.
func TestReadOnlyFileGivesAClearErrorAndLosesNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "ro.db")
	st, closeDB := migrated(t, path, nil)
	_, err := st.Create(ctx, episodes.CreateParams{ActorID: "kept"})
	require.NoError(t, err)
	closeDB()

	ro, err := sqlite.Open(ctx, path, &sqlite.Config{ReadOnly: true})
	require.NoError(t, err)
	defer ro.Close()
	roStore, err := episodes.New(ro, nil)
	require.NoError(t, err)
	_, err = roStore.Create(ctx, episodes.CreateParams{ActorID: "refused"})
	require.Error(t, err)
	require.Contains(t, err.Error(), "readonly")
	require.Contains(t, err.Error(), "read-only for this process")
	_, err = migrations.Migrate(ctx, ro)
	require.NoError(t, err, "nothing to apply: a read-only file that is up to date is fine")
	require.Equal(t, 1, count(t, path))

	// The file's permissions: only meaningful when not root, who may write
	// any file.
	if os.Geteuid() != 0 {
		require.NoError(t, os.Chmod(path, 0o444))
		_, err = sqlite.Open(ctx, path, nil)
		require.ErrorContains(t, err, "not writable by this process")
	}
	_, err = sqlite.Open(ctx, t.TempDir(), nil)
	require.ErrorIs(t, err, revenant.ErrInvalidInput, "a directory is not a database file")
}

// Another process (here: a handle outside revenant, with its own
// connection) holds the write lock for longer than the busy timeout:
// revenant's write fails with a retryable, explained error, and succeeds
// once the lock is gone. Two revenant handles on one file in one process
// queue on the same gate and fail the same way.
func TestFileLockedTooLongGivesARetryableErrorAndLosesNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "locked.db")
	st, closeDB := migrated(t, path, &sqlite.Config{BusyTimeout: 200 * time.Millisecond})
	defer closeDB()

	dsn, err := sqlite.DSN(path, &sqlite.Config{BusyTimeout: 200 * time.Millisecond})
	require.NoError(t, err)
	other, err := sql.Open("sqlite", dsn) // not gated: like another process
	require.NoError(t, err)
	defer other.Close()
	hold, err := other.BeginTx(ctx, nil) // BEGIN IMMEDIATE (the DSN says so)
	require.NoError(t, err)
	_, err = hold.ExecContext(ctx, `INSERT INTO revenant_actor_definitions (actor_id) VALUES ('holder')`)
	require.NoError(t, err)

	start := time.Now()
	_, err = st.Create(ctx, episodes.CreateParams{ActorID: "waits"})
	require.Error(t, err)
	require.GreaterOrEqual(t, time.Since(start), 150*time.Millisecond, "it waited for the busy timeout first")
	require.True(t, revenant.IsRetryable(err), "a locked file is worth retrying: %v", err)
	require.Contains(t, err.Error(), "busy_timeout")
	require.NoError(t, hold.Rollback())
	_, err = st.Create(ctx, episodes.CreateParams{ActorID: "waits"})
	require.NoError(t, err)
	require.Equal(t, 1, count(t, path))

	// Same process, two handles: the second waits on the gate.
	second, closeSecond := migrated(t, path, &sqlite.Config{BusyTimeout: 200 * time.Millisecond})
	defer closeSecond()
	tx, err := st.DB().BeginTxx(ctx, nil)
	require.NoError(t, err)
	_, err = second.Create(ctx, episodes.CreateParams{ActorID: "queued"})
	var locked *sqlite.LockedError
	require.True(t, errors.As(err, &locked), "%v", err)
	require.True(t, revenant.IsRetryable(err))
	require.NoError(t, tx.Rollback())
	_, err = second.Create(ctx, episodes.CreateParams{ActorID: "queued"})
	require.NoError(t, err)
	require.Equal(t, 2, count(t, path))
}

// A file migrated by a newer revenant: Migrate refuses with ErrSchemaTooNew
// and changes nothing.
func TestNewerSchemaVersionIsRefused(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "newer.db")
	st, closeDB := migrated(t, path, nil)
	defer closeDB()
	_, err := st.Create(ctx, episodes.CreateParams{ActorID: "kept"})
	require.NoError(t, err)
	_, err = st.DB().Exec(`INSERT INTO revenant_migrations (version, name) VALUES (99, 'from_the_future')`)
	require.NoError(t, err)

	res, err := migrations.Migrate(ctx, st.DB())
	require.ErrorIs(t, err, migrations.ErrSchemaTooNew)
	require.Contains(t, err.Error(), "[99]")
	require.Equal(t, []int{99}, res.Unknown)
	require.Empty(t, res.Applied)
	var versions int
	require.NoError(t, st.DB().Get(&versions, `SELECT count(*) FROM revenant_migrations`))
	require.Equal(t, len(migrations.AllSQLite())+1, versions)
	require.Equal(t, 1, count(t, path))
}

// A handle opened without revenant's settings, or a file that is not a
// database, is refused with a message saying what to do.
func TestHandlesAndFilesRevenantCannotUse(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	plain, err := sql.Open("sqlite", filepath.Join(dir, "plain.db"))
	require.NoError(t, err)
	defer plain.Close()
	_, err = migrations.Migrate(ctx, revenant.WrapDB(plain))
	require.ErrorIs(t, err, revenant.ErrInvalidInput)
	require.Contains(t, err.Error(), "busy_timeout")

	junk := filepath.Join(dir, "junk.db")
	require.NoError(t, os.WriteFile(junk, []byte("this is not a database, just some text that is long enough"), 0o644))
	_, err = sqlite.Open(ctx, junk, nil)
	require.ErrorContains(t, err, "not a database")

	_, err = sqlite.Open(ctx, "", nil)
	require.ErrorIs(t, err, revenant.ErrInvalidInput)
	_, err = sqlite.Open(ctx, "file:x.db?mode=ro", nil)
	require.ErrorIs(t, err, revenant.ErrInvalidInput)
	_, err = sqlite.Open(ctx, filepath.Join(dir, "x.db"), &sqlite.Config{BusyTimeout: -1})
	require.ErrorIs(t, err, revenant.ErrInvalidInput)
}

// The file opened is exactly the path given, whatever characters it holds
// ('#' would start a URI fragment, "%41" would decode to "A").
func TestOpenEscapesThePath(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	names := []string{"a#b.db", "c%41d.db", "50%.db", "with space.db", "ünïcode.db", "x%2Fy.db"}
	for _, name := range names {
		path := filepath.Join(dir, name)
		db, err := sqlite.Open(context.Background(), path, nil)
		require.NoError(t, err, name)
		_, err = db.Exec(`CREATE TABLE t (x integer)`)
		require.NoError(t, err, name)
		require.NoError(t, db.Close())
		_, err = os.Stat(path)
		require.NoError(t, err, "%s was created under its own name", name)
	}
	// A '?' is refused rather than read as the start of a query.
	_, err := sqlite.Open(context.Background(), filepath.Join(dir, "q?mode=ro.db"), nil)
	require.ErrorIs(t, err, revenant.ErrInvalidInput)
	require.ErrorContains(t, err, "'?'")
	// Nothing else was created (no "a", "cAd.db", "x", "q"...).
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	require.ElementsMatch(t, names, got)
}

// A busy timeout under a millisecond would be 0: no wait at all.
func TestBusyTimeoutRange(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "x.db")
	for _, d := range []time.Duration{-time.Second, 500 * time.Microsecond, 48 * time.Hour} {
		_, err := sqlite.Open(context.Background(), path, &sqlite.Config{BusyTimeout: d})
		require.ErrorIs(t, err, revenant.ErrInvalidInput, "%s", d)
	}
}
