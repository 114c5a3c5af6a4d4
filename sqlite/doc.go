// Package sqlite opens SQLite databases for revenant, so the whole library
// (migrations, episodes, journal, runner, recovery) runs on one local file
// with nothing installed: development, tests, demos and single-host
// deployments.
//
// It uses modernc.org/sqlite, a pure-Go SQLite (no cgo). Only programs
// that import this package compile SQLite in; the core packages detect the
// backend from the handle's driver and never import it.
//
//	db, err := sqlite.Open(ctx, "revenant.db", nil)
//	if err != nil { ... }
//	defer db.Close()
//	if _, err := migrations.Migrate(ctx, db); err != nil { ... }
//	r, err := runner.New(db, &runner.Config{Name: "worker"})
//
// Open sets what revenant relies on: WAL mode (readers never block the
// writer), a busy timeout (writers queue instead of failing at once),
// BEGIN IMMEDIATE transactions (a transaction takes the write lock when it
// starts, so a read followed by a write cannot fail half way) and foreign
// keys. Several processes on one host may share the file; claims stay
// exclusive because SQLite admits one writer at a time and every claim
// re-checks its predicate inside that writer's UPDATE.
//
// What differs from Postgres is listed in the README: no advisory-lock
// failure detection (a dead node is found when its heartbeat TTL lapses),
// polling instead of LISTEN/NOTIFY, and no SKIP LOCKED.
package sqlite
