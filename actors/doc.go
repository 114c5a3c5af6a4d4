// Package actors keeps actor definitions: recovery policies stored in the
// database (table revenant_actor_definitions) rather than in code.
//
// A recovery sweep must decide, for every orphaned episode, whether to
// restart or fail it. For actors registered on the sweeping node it knows
// the policy from code (runner.Actor.Recovery). Definitions are the policy
// source for the others, "dynamic actors": actors whose code is not
// registered on the sweeping node, such as those run by another service
// or stack, or whose nodes registered them without a policy. This package
// replaces hand-written SQL against the table.
//
// Usage:
//
//	defs, err := actors.New(db, nil)
//	err = defs.Define(ctx, actors.Definition{
//		ID:                  "importer",
//		Recovery:            recovery.Restart,
//		ExpectationRecovery: map[string]recovery.Policy{"charge-card": recovery.Fail},
//	})
//	err = defs.Disable(ctx, "importer") // kept, but ignored by sweeps
//
// Every write has a …Tx variant taking an Executor (*sql.Tx, *sqlx.Tx), so
// it commits or rolls back with the caller's own work. A write takes effect
// from the next sweep pass.
//
// # How a sweep resolves a policy
//
// For each orphan a sweep asks, in order, and the first source that states
// a policy wins:
//
//  1. recovery.Options.ResolvePolicy, the callback: when set, it alone
//     decides every orphan (a value other than Restart or Fail leaves the
//     episode untouched, reported) and no source below is asked;
//  2. the sweeping node's registry (recovery.Options.Registry, usually the
//     runner): per expectation, then per actor;
//  3. the dead owner's published policies: what the node that owned the
//     episode registered in code, per expectation, then per actor;
//  4. the enabled definition of the actor, kept here: per expectation
//     (ExpectationRecovery), then per actor (Recovery);
//  5. recovery.Options.DefaultPolicy (Fail unless set).
//
// A source that states no policy for the actor falls through to the next:
// an actor registered in code without a policy (runner.Actor.Recovery and
// ExpectationRecovery unset) does not mask its definition. A disabled
// definition, or one that states no policy for the orphan's expectation
// and no Recovery, falls through likewise. recovery.Plan.PolicySource
// (recovery.SourceDefinitions for this package) reports which source
// decided; a dry run (recovery.Options.DryRun) shows it without changing
// anything.
//
// # Malformed rows
//
// Define validates everything it writes, so definitions written through
// this package are always readable. A row edited by hand into something
// this version cannot read (an unknown policy, expectation policies that
// are not a JSON object of policies) is never guessed at: a sweep that
// consults it leaves the orphan untouched and reports recovery.ErrBadPolicy,
// and Get and List return an error wrapping ErrCorruptRow that names the
// actor. Define the actor again, or Delete it, to repair the row.
package actors
