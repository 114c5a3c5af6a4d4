// Package revenant makes in-flight work survive crashes.
//
// Host applications embed revenant and run their work as episodes: one run
// of a named actor, whose steps are written to a step journal in a shared
// PostgreSQL database (or a SQLite file: see the sqlite package). When a process dies mid-episode, another node (or the
// same one after a restart) finds the orphan, claims it so that exactly one
// node wins, and either restarts it (completed steps are not run again) or
// fails it, by the recovery policy registered for its actor. Workflows are
// DAGs of steps, each step an episode.
//
// # Principles
//
//   - The database is the only truth: no in-memory queue, timer or lease is
//     needed for correctness.
//   - One clock, the database's: every lease, staleness test and timestamp
//     uses the server's now().
//   - Every claim is a compare-and-set, and every write by a worker is fenced
//     by the claim token it holds: a zombie gets zero rows and stops.
//
// # Packages
//
//   - [github.com/revenant-go/revenant/migrations]: the schema, applied at
//     boot from every node (advisory-locked), or exported for goose,
//     golang-migrate or atlas.
//   - [github.com/revenant-go/revenant/episodes]: create, read, list and move
//     episodes through their lifecycle (pending, running, blocked, done,
//     failed, canceled) with compare-and-set transitions.
//   - [github.com/revenant-go/revenant/journal]: durable, memoized steps
//     inside an episode run, optionally in the same transaction as a
//     same-database side effect.
//   - [github.com/revenant-go/revenant/runner]: nodes (liveness, instant
//     failure detection through a session advisory lock), actors and the
//     claim-and-run loop.
//   - [github.com/revenant-go/revenant/recovery]: recovery.Sweep at startup
//     and a Sweeper for the life of the process, with per-actor restart or
//     fail policies, dead-lettering and dry runs.
//   - [github.com/revenant-go/revenant/bus]: lifecycle events, in process
//     or across nodes through an outbox table written in the same
//     transaction as the state change.
//   - [github.com/revenant-go/revenant/workflow]: DAG workflows of episodes
//     with retry, abort (with saga compensation) and pause policies;
//     recovery.ReconcileWorkflows repairs instances that missed events.
//   - [github.com/revenant-go/revenant/actors]: recovery policies kept in
//     the database, for actors whose code runs on other nodes.
//   - [github.com/revenant-go/revenant/sqlite]: opens a SQLite file (pure
//     Go) for all of the above with nothing installed. The backend is read
//     from the handle's driver; the README lists what differs (no
//     advisory-lock failure detection, polling instead of LISTEN/NOTIFY, no
//     SKIP LOCKED).
//
// # The client
//
// One Client per node wires everything with one scope, one logger and one
// bus, and starts it in an order that loses nothing (see Client.Start):
//
//	db := sqlx.MustOpen("postgres", os.Getenv("DATABASE_URL")) // or sqlite.Open, or revenant.WrapDB(sqlDB)
//	client, _ := revenant.New(db, &revenant.Config{Name: host, Stack: "shop", Env: "prod", ListenDSN: dsn})
//	_ = client.Register(runner.Actor{ID: "invoicer", Recovery: recovery.Restart, Run: invoice})
//	_ = client.RegisterWorkflow(checkout)
//	if err := client.Start(ctx); err != nil { ... } // migrate, node, bus, startup sweep, reconcile, Sweeper
//	defer client.Stop(shutdownCtx)                  // drain until the deadline, then hand back
//	_, _ = client.Enqueue(ctx, episodes.CreateParams{ActorID: "invoicer", DedupeKey: "invoice-42", Input: in})
//
// The packages below stay public for wiring by hand: call recovery.Sweep
// from app startup, register actor recovery policies, run reconcile after
// workflow registration.
//
// Revenant accepts the caller's *sqlx.DB (lib/pq or pgx's stdlib driver,
// or modernc.org/sqlite through sqlite.Open) and never closes it. Its tables are named revenant_* and live in the first
// schema of the connection's search_path.
package revenant
