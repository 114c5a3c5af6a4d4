// Package journal makes the steps of an episode run durable.
//
// A step has a name. The first time, its function runs and its JSON output
// is recorded; after a restart of the episode, a completed step returns its
// recorded output and does not run again. Steps are numbered in the order a
// run asks for them: a restarted run that asks in a different order gets
// ErrStepMismatch, never another step's output.
//
//	j, err := journal.Open(ctx, db, ep.ID, ep.ClaimToken, nil)
//	user, err := journal.Step(ctx, j, "load-user", func(ctx context.Context) (User, error) {
//		return loadUser(ctx, id)
//	})
//	_, err = journal.Step(ctx, j, "charge", func(ctx context.Context) (string, error) {
//		info, _ := journal.Info(ctx)
//		return psp.Charge(ctx, user.Card, amount, info.IdempotencyKey) // stable across restarts
//	})
//	_, err = journal.StepTx(ctx, j, "book", func(ctx context.Context, tx *sqlx.Tx) (int64, error) {
//		return insertBooking(ctx, tx, user) // committed together with the journal entry
//	})
//
// Every write is fenced by the claim token the journal was opened with: once
// another node claims the episode (or it is canceled), writes fail with
// ErrLeaseLost and nothing is recorded. Recording a step also bumps the
// episode's last-activity time (at most once a second), in the same
// statement.
//
// Delivery guarantees: Step's side effects are at-least-once (a crash
// between the effect and its record repeats it; use the idempotency key).
// StepTx's same-database effects are exactly-once. A step error is not
// recorded, so a restart retries the step, unless it is wrapped with
// Permanent, which records it and replays it as a *RecordedError.
//
// Attempts. A run knows which attempt it is, and the error that ended the
// previous one, from j.Attempt() (inside a step, Info(ctx).Attempt): a
// retried episode replays its completed steps and runs the rest. An
// episode whose error is marked Permanent is not retried.
package journal
