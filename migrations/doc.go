// Package migrations carries revenant's schema as numbered SQL files
// embedded in the binary, and applies the missing ones.
//
// Call Migrate at boot from every node: a session advisory lock (scoped to
// the current schema) serialises concurrent callers, each version runs in its
// own transaction together with its row in revenant_migrations, and finding
// nothing to apply is success. A failing migration is rolled back whole and
// reported as a *PartialError listing what was applied before it; there is
// no "dirty" state to force: fix the cause and call Migrate again. Nothing
// pending means no DDL, so an app may boot as a role with DML privileges only.
//
// On SQLite the file's write lock serialises callers instead, the same
// versions come from the SQLite set (AllSQLite), and a file migrated by a
// newer binary is refused with ErrSchemaTooNew rather than reported.
//
//	res, err := migrations.Migrate(ctx, db)
//	for _, a := range res.Applied { log.Printf("applied %d %s", a.Version, a.Name) }
//
// Tables are created unqualified, in the first schema of the connection's
// search_path (set it in the DSN, e.g. ?search_path=jobs).
//
// Teams that run their own tool export the SQL instead: All returns every
// migration, WriteGoose wraps one for goose, and GolangMigrateFileName names
// the up-file golang-migrate (and atlas's golang-migrate format) expects.
// Migrations are forward-only.
package migrations
