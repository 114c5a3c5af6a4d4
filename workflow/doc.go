// Package workflow runs DAGs of steps, each step an episode, advanced by
// episode lifecycle events.
//
//	eng, _ := workflow.NewEngine(db, &workflow.Config{Bus: pgBus})
//	_ = eng.Register(workflow.Definition{ID: "photo", Steps: []workflow.Step{
//		{ID: "download", Actor: "media"},
//		{ID: "resize", Actor: "media", DependsOn: []string{"download"},
//			OnFailure: workflow.Retry(5, time.Second, "unsupported_format")},
//		{ID: "charge", Actor: "billing", DependsOn: []string{"download"}, Compensate: "refund"},
//		{ID: "publish", Actor: "media", DependsOn: []string{"resize", "charge"}, OnFailure: workflow.Pause()},
//	}})
//	// App startup: recovery.Sweep, register workflows, then reconcile.
//	_, _ = recovery.ReconcileWorkflows(ctx, db, &recovery.ReconcileOptions{Engine: eng, Node: r})
//	_ = eng.Start(ctx)
//	id, err := eng.StartInstance(ctx, "photo", trigger, &workflow.StartOptions{Subject: photoID})
//
// Definitions are validated at registration: unique step ids, known
// dependencies, no cycles; errors name the offending step. A step's input
// is built from the trigger and its dependencies' results (StepInput, or
// Step.Input).
//
// # Concurrency and exactly-once advancement
//
// Run an engine on every node. Each transition locks the instance row,
// reads the instance, its steps and their episodes' outcomes in one
// statement, and writes the changed steps, the instance (version bumped),
// the next steps' episodes and the workflow events in a second one. A
// duplicate or replayed terminal event finds its step no longer running and
// changes nothing; each step's episode carries the dedupe key (instance,
// step, attempt), so two engines can never create two episodes for one
// step. An engine that had to wait for the lock reads again, because READ
// COMMITTED re-reads only the locked row.
//
// # Failure policies
//
// Abort (default): the instance fails, the episodes of its other running
// steps are canceled, and the compensations of completed steps run as
// episodes, one at a time, newest first. Retry: the step runs again after a
// backoff whose due time is stored in the database (never an in-memory
// timer), up to MaxAttempts, unless the error class is listed in
// SkipRetryOn. Pause: the instance is blocked until Resume.
//
// Reconciliation (recovery.ReconcileWorkflows) repairs instances that
// missed events: running steps whose episode already finished, pending
// steps whose dependencies are done, due retries, finished instances.
package workflow
