// Package recovery finds episodes orphaned by dead nodes and restarts or
// fails them, by the recovery policy registered for their actor.
//
// Call Sweep from app startup, and run a Sweeper for the life of the
// process:
//
//	r, _ := runner.New(db, &runner.Config{Name: host, Stack: "billing", Env: "prod", ListenDSN: dsn})
//	_ = r.Register(runner.Actor{ID: "invoicer", Run: runInvoice, Recovery: recovery.Restart})
//
//	res, err := recovery.Sweep(ctx, db, &recovery.Options{Node: r}) // at startup
//	log.Printf("restarted %d, failed %d, skipped %d", res.Restarted, res.Failed, res.Skipped)
//	_ = r.Start(ctx)
//
//	sw, _ := recovery.NewSweeper(db, &recovery.SweeperConfig{Options: recovery.Options{Node: r}})
//	_ = sw.Start(ctx) // periodic passes, plus instant ones when a node dies
//	defer sw.Stop(context.Background())
//
// # What is an orphan
//
// A running episode is orphaned when its owner node is known dead: it
// stopped, or its session advisory lock vanished (the process or its
// connection died; seen at once, with one cheap query against pg_locks), or
// its heartbeat TTL expired (power cut, partition, SIGSTOP). Only an episode
// whose owner is not a known node at all falls back to journal activity: no
// activity for StaleAfter (2 minutes). A live node's long, silent step is
// never swept.
//
// On SQLite (no advisory locks) a dead node is one that stopped or whose
// heartbeat TTL expired; see sqlite.go in this package for how its sweeps
// claim without SKIP LOCKED.
//
// # How a sweep claims
//
// Each batch is one guarded statement: a MATERIALIZED
// SELECT … FOR UPDATE SKIP LOCKED re-checks "running and orphaned" on every
// row it locks, and the UPDATE applies the decision and bumps the claim token
// (fencing the old owner, were it only paused). Any number of sweeps may run
// at once; each orphan is claimed exactly once. Restart puts the episode back
// to pending for any node's runner, so recovered work spreads over the
// fleet; its journal makes completed steps return their recorded outputs.
// An episode that reached its max attempts is dead-lettered (failed, error
// class "max_attempts_exceeded") instead of restarted.
//
// # Policies
//
// Options.ResolvePolicy wins; then the registry (the sweeping node's
// actors, per expectation, then per actor); then the policies the dead
// owner published in its node row when it registered the actor; then
// enabled actor definitions (package actors; per expectation, then per
// actor); then Options.DefaultPolicy (Fail unless set; Skip leaves the
// orphan running and reports it with ErrNoPolicy). An actor registered
// without a policy states none, so resolution falls through. A malformed
// value leaves the episode untouched and is reported in Result.Errors and
// the log, never silently failed. A dry run resolves exactly as the sweep
// does, so any process, with or without a registry, gets the same answer
// as the node that acts.
//
// # Scope
//
// Stack defaults to the node's; episodes with no stack match any stack;
// AllStacks sweeps every stack. Env defaults to the node's and matches
// strictly (no env matches only no env); AllEnvs sweeps every env.
//
// # Connection poolers
//
// The advisory lock is a session lock held on one dedicated connection per
// node. Behind a transaction-mode pooler (PgBouncer pool_mode=transaction)
// session locks do not work: set runner.Config.DisableLockDetection, point
// the runner at a session-mode pool or a direct connection, or accept that
// failures are seen only when the heartbeat TTL lapses. pg_locks must be
// readable (it is, by default, for every role).
package recovery
