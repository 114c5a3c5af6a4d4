// Package bus carries revenant's lifecycle events: episode started,
// completed, failed, canceled, recovered and dead-lettered, and workflow
// started, step started/completed/failed, blocked, completed, failed and
// canceled. Each event has a unique id; delivery is at-least-once, so
// handlers dedupe by id (the workflow engine's handling is idempotent).
//
// InProcess delivers within one process. Outbox delivers across nodes:
// events are inserted into the revenant_events outbox in the same
// transaction as the state change that causes them (PublishTx), and read
// by every node by sequence. On Postgres new rows are announced with
// NOTIFY (the payload is only a sequence number, so events of any size
// arrive) and a polling catch-up covers notifications lost while a
// listener reconnects; on SQLite readers poll (PollInterval). The outbox
// is pruned after Retention. A handler that fails with a retryable
// database error is retried a few times before the event is left to the
// workflow reconciler.
//
//	b, _ := bus.NewOutbox(db, &bus.OutboxConfig{ListenDSN: dsn})
//	unsubscribe := b.Subscribe(bus.EpisodeFailed, func(ctx context.Context, ev bus.Event) error {
//		log.Printf("episode %s failed: %s", ev.EpisodeID, ev.ErrorClass)
//		return nil
//	})
//	_ = b.Start(ctx)
//	defer b.Stop(context.Background())
//
// Pass the bus to runner.Config.Bus and recovery.Options.Bus so that runs
// and sweeps publish through it, and to workflow.Config.Bus for the engine.
package bus
