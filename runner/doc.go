// Package runner runs episodes: each Runner is one node that registers
// itself, keeps its liveness, claims pending episodes of the actors
// registered on it and runs them with a journal.
//
//	r, err := runner.New(db, &runner.Config{Name: "web-1", Stack: "shop", Env: "prod", ListenDSN: dsn})
//	err = r.Register(runner.Actor{
//		ID:            "fulfilment",
//		Recovery:      recovery.Restart, // what a sweep does with its orphans
//		MaxConcurrent: 8,
//		Run: func(ctx context.Context, ep *episodes.Episode, j *journal.Journal) (any, error) {
//			label, err := journal.Step(ctx, j, "ship", ship)
//			return label, err
//		},
//	})
//	err = r.Start(ctx)
//	defer r.Stop(context.Background()) // hands running episodes back at once
//	res, err := r.Enqueue(ctx, episodes.CreateParams{ActorID: "fulfilment", Input: order})
//
// Nodes. Every process is a node with a unique id (Name plus a random
// suffix). It holds a session advisory lock on a dedicated connection for
// its lifetime, so others see its death at once, and renews its liveness
// with one statement per HeartbeatInterval, however many episodes it runs;
// the same statement reports runs whose lease is gone (canceled, or claimed
// by a sweep), whose contexts are then canceled.
//
// On SQLite there are no advisory locks or NOTIFY: a node's death is seen
// when its NodeTTL lapses, runners poll (and wake at once for their own
// Enqueue), and a claim is one UPDATE that takes the file's single write
// lock before it reads, which keeps claims exclusive without SKIP LOCKED.
//
// Claims. Enqueue writes a pending episode and NOTIFYs (on commit). Runners
// claim pending episodes of their own actors with FOR UPDATE SKIP LOCKED, up
// to each actor's MaxConcurrent, scoped to their stack (or none) and exactly
// their env; a claim sets the owner, bumps the claim token and counts the
// attempt, with the database clock. Only due episodes are claimed (see
// episodes.CreateParams.RunAt and Delay), and none of an actor whose
// breaker is open (Actor.Breaker, package breakers). A runner with free
// slots asks when its next episode falls due and wakes then. Without
// ListenDSN, runners also poll every PollInterval.
//
// Runs. The run's context is canceled when the lease is lost, the episode is
// canceled (Cancel, from any node), the runner stops, or Actor.Timeout
// passes. A returned error ends the attempt (class "error", or ErrorClass()
// if the error has one; "timeout" after Actor.Timeout); a panic ends it
// with class "panic" and the stack, and the runner goes on. An ended
// attempt is retried after a backoff while attempts remain and the retry
// policy allows (Actor.Retry); otherwise the episode fails, and waits in
// the dead-letter list for Requeue. Every write a run makes is fenced by
// its claim token.
package runner
