// Package episodes stores episodes: one run of a named actor, with its JSON
// input and result, status, attempts and the claim token that fences its
// current holder.
//
// Every lifecycle transition is one compare-and-set UPDATE that re-checks
// the allowed source status (and, for a holder's writes, the claim token)
// inside the statement. A refused move returns a *TransitionError matching
// ErrIllegalTransition (e.g. done → running) or ErrLeaseLost (stale token, or
// canceled under the holder). Terminal moves set FinishedAt from the
// database clock.
//
//	pending ──Claim──▶ running ──Complete──▶ done
//	   ▲                 │ │ └──Fail──────▶ failed
//	   └──Release────────┘ └──Block──▶ blocked ──Resume──▶ pending
//	pending | running | blocked ──Cancel──▶ canceled
//
// Usage:
//
//	store, err := episodes.New(db, &episodes.Config{Stack: "billing", Env: "prod"})
//	res, err := store.Create(ctx, episodes.CreateParams{ActorID: "invoicer", DedupeKey: "invoice-42"})
//	if res.Duplicate { /* an episode with that key already existed */ }
//	ep, err := store.Claim(ctx, res.Episode.ID, "node-1")
//	_, err = store.Complete(ctx, ep.ID, ep.ClaimToken, result)
//
// Every write has a …Tx variant taking an Executor (*sql.Tx,
// *sqlx.Tx), so it commits or rolls back with the caller's own work.
package episodes
