// Package revenanttest helps users test their actors, and prove them
// crash-safe by crashing them at every step boundary.
//
// Revenant's promise holds only when an actor plays its part: its steps are
// deterministic in name and order, same-database effects go through
// journal.StepTx, external calls pass the step's idempotency key, and nothing
// important happens between steps. CrashAtEveryStep checks all of that:
//
//	func TestChargeIsCrashSafe(t *testing.T) {
//		db := revenanttest.DB(t)
//		_, _ = db.Exec(`CREATE TABLE payments (order_id TEXT, amount INTEGER)`)
//		revenanttest.CrashAtEveryStep(t, newCharge(db), order, &revenanttest.CrashOptions{
//			DB: db,
//			Effects: func(ctx context.Context, db *sqlx.DB) (int, error) {
//				var n int
//				err := db.GetContext(ctx, &n, `SELECT count(*) FROM payments`)
//				return n, err
//			},
//		})
//	}
//
// It runs the actor once without a crash to learn its steps, then, for every
// step, runs a fresh episode that crashes inside the step (its effect done,
// its journal entry not written) and another that crashes just after the
// entry is committed. Each crashed episode is restarted by the real sweep,
// claimed again through the normal claim path and run to its end, and must
// end as the uninterrupted run did: same result, same effects (counted by
// CrashOptions.Effects), same steps with the same names and outputs, no
// recorded output changed, and CrashOptions.Invariants holding. Each broken
// property is a test failure naming the crash and what to change, e.g.
//
//	crash inside step 1 ("charge"), after its effect and before its journal entry: the
//	effect counter rose by 2, the uninterrupted run's by 1: step 1's effect happened again
//	when the restarted run did the step again (an effect outside StepTx runs again on
//	replay); move it into journal.StepTx, ...
//
// CrashOptions.Schedules adds randomized multi-crash schedules (a crash,
// then another at a later boundary of the restarted run, …), drawn from
// CrashOptions.Seed.
//
// # Simulated and Process crashes
//
// A Simulated crash (the default) happens inside the test process: at the
// boundary the run is unwound (a StepTx transaction rolls back, as the
// database would roll back a dead process's), its node is declared dead in
// the database, the node's heartbeat finds out, cancels the run (which then
// writes nothing) and registers again under a new id, and the sweep restarts
// the episode. It takes milliseconds per crash (a 10-step actor is crashed
// at its 20 boundaries in about a quarter of a second on SQLite) and catches
// everything that lives in the database or in what the journal returns. It
// cannot catch what a real crash loses and a test process keeps: package
// variables and caches filled inside a step (a replayed step does not run its
// function again), goroutines the actor started, state in cgo libraries.
// The run is stopped by a panic on the goroutine that records the step, so
// an actor that records steps from goroutines of its own needs Process mode;
// and deferred functions of the actor run as the crash unwinds (with their
// context canceled, so their database writes fail), where a real crash runs
// none.
//
// Process mode (CrashOptions.Mode = Process) runs each crashed attempt in a
// child process, the test binary started again, and SIGKILLs it at the
// boundary, so everything in its memory is really lost; the restarted
// episode is finished in the test process. Use it for actors that keep
// state in memory between steps, start goroutines, or use cgo; it costs a
// process start per crash (and, on SQLite, the child's half-second TTL).
// It needs two lines in the test package:
//
//	func TestMain(m *testing.M) {
//		revenanttest.RegisterActor("charge", newCharge) // builds the actor in the child
//		revenanttest.Main(m)
//	}
//
// Effects made in a child process's memory die with it: in Process mode,
// count effects in the database.
//
// # Fixtures and assertions
//
// DB returns a fresh migrated database: a SQLite file in t.TempDir(), or a
// new schema in the PostgreSQL database named by REVENANT_TEST_DATABASE_URL.
// Client starts a node on it with fast timings; RunEpisode runs one episode
// synchronously and returns its result, error and journal (River's
// rivertest.Worker for revenant). RequireEnqueued, RequireEpisode and
// RequireSteps assert, in River's style, and say what they found instead.
//
// CrashAtEveryTransition does for workflows what CrashAtEveryStep does for
// actors: it crashes the node that runs the workflow engine after each of
// the instance's transitions and checks that the instance ends the same, with
// each step's episode run once.
package revenanttest
