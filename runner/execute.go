package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"

	"github.com/revenant-go/revenant/bus"
	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/internal/dbx"
	"github.com/revenant-go/revenant/internal/store"
	"github.com/revenant-go/revenant/journal"
)

// Running one claimed episode: its journal, the actor, and the finishing
// write (complete or fail) with its event, retried on transient errors.

// startRun runs a claimed episode unless the node changed identity since
// the claim (checked under the same lock reincarnate takes, so a run is
// either registered before reincarnate cancels runs, or not started).
// probe marks the breaker's half-open trial.
func (r *Runner) startRun(a *Actor, c claimedEpisode, claimedAs string, probe bool) bool {
	ep := c.ep
	ctx, cancel := context.WithCancelCause(r.runCtx)
	r.mu.Lock()
	if r.nodeID != claimedAs {
		r.mu.Unlock()
		cancel(nil)
		return false
	}
	// An earlier run of the same episode may still be winding down here
	// (it was retried or requeued before it returned; its writes are
	// fenced off): the new run replaces it in the table, and the old one
	// must not remove the new one's entry when it ends.
	// A new claim proves the old one stale: cancel its run now, as nothing
	// will reach it once replaced (its finishing writes are fenced off).
	run := &activeRun{ep: ep, cancel: cancel}
	if old, ok := r.active[ep.ID]; ok {
		old.cancel(ErrLeaseLost)
	}
	r.active[ep.ID] = run
	r.perActr[a.ID]++
	r.mu.Unlock()
	r.runs.Add(1)
	go func() {
		defer r.runs.Done()
		defer func() {
			cancel(nil)
			r.mu.Lock()
			if r.active[ep.ID] == run {
				delete(r.active, ep.ID)
			}
			r.perActr[a.ID]--
			r.mu.Unlock()
			r.signal()
		}()
		r.execute(ctx, a, c, probe)
	}()
	return true
}

// panicError carries a recovered panic.
type panicError struct {
	value any
	stack string
}

func (p *panicError) Error() string { return fmt.Sprintf("panic: %v", p.value) }

func safeRun(ctx context.Context, a *Actor, ep *episodes.Episode, j *journal.Journal) (result any, err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &panicError{value: v, stack: string(debug.Stack())}
		}
	}()
	return a.Run(ctx, ep, j)
}

func (r *Runner) execute(ctx context.Context, a *Actor, c claimedEpisode, probe bool) {
	ep := c.ep
	log := r.logger.With(slog.String("episode", ep.ID.String()), slog.String("actor", a.ID), slog.Int64("token", ep.ClaimToken))
	// The journal the claim read comes with the Open only: the actor's
	// context must not carry it.
	j, err := journal.Open(store.WithClaimedJournal(ctx, ep.ID, c.journal), r.db, ep.ID, ep.ClaimToken, r.journalConfig())
	var result any
	if err == nil {
		// The actor's Timeout bounds its run, from the moment it starts:
		// not the journal's loading, which the node does.
		runCtx := ctx
		if a.Timeout > 0 {
			var stop context.CancelFunc
			runCtx, stop = context.WithTimeoutCause(ctx, a.Timeout, ErrTimeout)
			defer stop()
		}
		result, err = safeRun(runCtx, a, ep, j)
		ctx = runCtx
	}
	// Finishing writes must happen even though ctx may be canceled, and
	// are retried while the database reports transient errors: a run whose
	// outcome is lost here stays running under a live node, which no sweep
	// would ever take.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finishTimeout)
	defer cancel()
	cause := context.Cause(ctx)
	var pe *panicError
	switch {
	case errors.Is(cause, ErrStopping):
		if _, rerr := r.store.Release(fctx, ep.ID, ep.ClaimToken); rerr != nil && !errors.Is(rerr, ErrLeaseLost) && !errors.Is(rerr, episodes.ErrIllegalTransition) {
			log.Warn("revenant: releasing episode at shutdown failed; recovery will pick it up", slog.Any("error", rerr))
		}
		return
	case cause != nil && !errors.Is(cause, context.Canceled) && !errors.Is(cause, ErrTimeout):
		// Lease lost, canceled, or identity lost: someone else owns the
		// outcome now; our writes would be refused anyway.
		log.Info("revenant: run stopped", slog.Any("cause", cause))
		return
	case errors.As(err, &pe):
		log.Error("revenant: episode panicked", slog.Any("panic", pe.value))
		r.endAttempt(fctx, log, a, ep, probe, "panic", map[string]string{
			"panic": dbx.CleanText(fmt.Sprint(pe.value), maxMessageBytes), "stack": dbx.CleanText(pe.stack, maxStackBytes)}, err)
	case err != nil && errors.Is(cause, ErrTimeout):
		log.Warn("revenant: attempt timed out", slog.Duration("timeout", a.Timeout))
		r.endAttempt(fctx, log, a, ep, probe, "timeout", map[string]string{
			"message": dbx.CleanText(fmt.Sprintf("the attempt ran past its actor's Timeout (%s): %v", a.Timeout, err), maxMessageBytes)}, err)
	case errors.Is(err, ErrLeaseLost):
		log.Info("revenant: run stopped: lease lost", slog.Any("error", err))
	case dbx.IsRetryable(err):
		// The database failed, not the actor (a lost connection, a locked
		// SQLite file): hand the episode back for another try.
		log.Warn("revenant: run hit a transient database error; handing the episode back", slog.Any("error", err))
		rerr := retryTransient(fctx, func() error {
			_, e := r.store.Release(fctx, ep.ID, ep.ClaimToken)
			return e
		})
		if rerr != nil && !errors.Is(rerr, ErrLeaseLost) && !errors.Is(rerr, episodes.ErrIllegalTransition) {
			log.Error("revenant: handing the episode back failed; retried at the next heartbeat", slog.Any("error", rerr))
		}
	case err != nil:
		class := "error"
		var ce interface{ ErrorClass() string }
		if errors.As(err, &ce) && ce.ErrorClass() != "" {
			class = ce.ErrorClass()
		}
		if dbx.CheckName("error class", class, true) != nil {
			class = "error" // what the actor's error named cannot be stored
		}
		r.endAttempt(fctx, log, a, ep, probe, class, map[string]string{"message": dbx.CleanText(err.Error(), maxMessageBytes)}, err)
	default:
		if r.completeInOneStatement(fctx, a, ep, probe, result) {
			return
		}
		ferr := r.finish(fctx, a, outcome{probe: probe}, bus.EpisodeCompleted, func(tx dbx.Executor) (*episodes.Episode, error) {
			return r.store.CompleteTx(fctx, tx, ep.ID, ep.ClaimToken, result)
		})
		if errors.Is(ferr, dbx.ErrNotJSON) || errors.Is(ferr, dbx.ErrTooLarge) {
			r.endAttempt(fctx, log, a, ep, probe, "bad_result", map[string]string{"message": ferr.Error()}, ferr)
			return
		}
		r.logFinish(log, ferr)
	}
}

// completeInOneStatement completes the episode and writes its event in
// one statement, where that is possible (the outbox on Postgres, and no
// breaker to count in the same transaction): one round trip instead of
// BEGIN, the move, the event and COMMIT. It reports false when it did not
// complete the episode (not possible here, a result that cannot be
// encoded, a move refused, a database error): the usual path then runs,
// and reports each case as it always does.
func (r *Runner) completeInOneStatement(ctx context.Context, a *Actor, ep *episodes.Episode, probe bool, result any) bool {
	if probe || a.Breaker != nil || r.config.Bus == nil || !bus.Transactional(r.config.Bus) || !r.st.Capabilities().StatementEvents {
		return false
	}
	res, err := dbx.EncodeJSON(result, episodes.MaxJSONBytesDefault)
	if err != nil {
		return false
	}
	// The event of the episode as the move leaves it.
	done := *ep
	done.Status, done.ErrorClass = episodes.StatusDone, ""
	ev := eventOf(bus.EpisodeCompleted, &done)
	ev.ID = uuid.Must(uuid.NewV7())
	_, err = r.st.EpisodeTransition(ctx, r.db, &store.TransitionParams{Move: store.TransitionComplete, ID: ep.ID,
		ClaimToken: ep.ClaimToken, Result: res, Events: []store.Event{store.Event(ev)}})
	if err != nil {
		if !errors.Is(err, dbx.ErrNotFound) {
			// The statement may have committed before the error (a lost
			// reply, an unreadable row): announce in case it did.
			r.announceSoon()
		}
		return false
	}
	r.announceSoon()
	return true
}

// journalConfig defaults the transactional-step idle timeout to the node
// TTL: by the time others may take the episode over, a paused holder's
// transaction is gone. It leaves the timeout out where the database's own
// is as short.
func (r *Runner) journalConfig() *journal.Config {
	c := journal.Config{}
	if r.config.Journal != nil {
		c = *r.config.Journal
	}
	if c.TxIdleTimeout != 0 {
		return &c // the caller's own value, set on every step as asked
	}
	c.TxIdleTimeout = r.config.NodeTTL
	// The database ends idle transactions already, no later than this
	// (a role, database or connection-string setting, read when the node
	// registered): setting it again in each transactional step would only
	// cost a round trip.
	if ms := r.dbIdleTimeout.Load(); ms > 0 && time.Duration(ms)*time.Millisecond <= c.TxIdleTimeout {
		c.TxIdleTimeout = 0
	}
	return &c
}

// finishTimeout bounds the retries of a run's finishing write.
const finishTimeout = 2 * time.Minute

// Caps on what a failed run records of the actor's error and of a panic's
// stack: the detail must always fit the episode's JSON cap.
const (
	maxMessageBytes = 8 << 10
	maxStackBytes   = 64 << 10
)

// retryTransient runs write until it succeeds, fails for good, or ctx
// ends, backing off while the error is a transient database one or a lock
// or statement timeout (another transaction held the row for a while).
func retryTransient(ctx context.Context, write func() error) error {
	wait := 50 * time.Millisecond
	for {
		err := write()
		if err == nil || !dbx.IsRetryable(err) && !isTimeout(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		wait = min(wait*2, 2*time.Second)
	}
}

// finish ends an attempt (a terminal transition, or a retry) and, in the
// same transaction, counts it on the actor's breaker and publishes the
// events; transient database errors are retried.
//
// A breaker that cannot be counted (say, an unreadable row) must not keep
// the attempt's outcome from being written: the write is then done again
// without it, and the fault logged.
func (r *Runner) finish(ctx context.Context, a *Actor, o outcome, eventType string, move func(tx dbx.Executor) (*episodes.Episode, error)) error {
	o.count = a.Breaker != nil || o.probe
	err := retryTransient(ctx, func() error { return r.finishOnce(ctx, a, o, eventType, move) })
	if errors.Is(err, errBreakerCount) {
		r.logger.Error("revenant: counting an attempt on its actor's breaker failed; the attempt's outcome is written without it",
			slog.String("actor", a.ID), slog.Any("error", err))
		o.count = false
		err = retryTransient(ctx, func() error { return r.finishOnce(ctx, a, o, eventType, move) })
	}
	return err
}

func (r *Runner) finishOnce(ctx context.Context, a *Actor, o outcome, eventType string, move func(tx dbx.Executor) (*episodes.Episode, error)) error {
	if r.config.Bus == nil && !o.count {
		_, err := move(r.db) // one statement: no transaction needed
		return err
	}
	var after []bus.Event
	err := r.inTx(ctx, func(tx *sqlx.Tx) error {
		ep, err := move(tx)
		if err != nil {
			return err
		}
		evs := []bus.Event{eventOf(eventType, ep)}
		ev, err := r.countBreaker(ctx, tx, a, ep, o)
		if err != nil {
			return err
		}
		if ev != nil {
			evs = append(evs, *ev)
		}
		return r.publishTx(ctx, tx, &after, evs...)
	})
	if err == nil {
		r.publishAfter(ctx, after)
	}
	return err
}

// publishTx writes events in tx when the bus is transactional (the Postgres
// outbox); otherwise it keeps them for publishAfter, once tx committed.
func (r *Runner) publishTx(ctx context.Context, tx *sqlx.Tx, after *[]bus.Event, evs ...bus.Event) error {
	if r.config.Bus == nil {
		return nil
	}
	if bus.Transactional(r.config.Bus) {
		return r.config.Bus.PublishTx(ctx, tx, evs...)
	}
	*after = append(*after, evs...)
	return nil
}

func (r *Runner) publishAfter(ctx context.Context, evs []bus.Event) {
	if len(evs) == 0 {
		return
	}
	if err := r.config.Bus.Publish(ctx, evs...); err != nil {
		r.logger.Warn("revenant: publishing events failed", slog.Any("error", err))
	}
}

func (r *Runner) inTx(ctx context.Context, fn func(tx *sqlx.Tx) error) error {
	return dbx.InTx(ctx, r.db, fn)
}

// eventOf builds the lifecycle event of an episode's current state.
func eventOf(eventType string, ep *episodes.Episode) bus.Event {
	return bus.Event{Type: eventType, EpisodeID: ep.ID, ActorID: ep.ActorID, WorkflowInstanceID: ep.WorkflowInstanceID,
		WorkflowStepID: ep.WorkflowStepID, Status: string(ep.Status), ErrorClass: ep.ErrorClass}
}

// isTimeout reports lock_timeout (55P03) and statement_timeout (57014).
func isTimeout(err error) bool {
	code := dbx.SQLState(err)
	return code == "55P03" || code == "57014"
}

func (r *Runner) logFinish(log *slog.Logger, err error) {
	switch {
	case err == nil:
	case errors.Is(err, ErrLeaseLost), errors.Is(err, episodes.ErrIllegalTransition):
		log.Info("revenant: finishing refused; another node owns the episode now", slog.Any("error", err))
	default:
		// Still running under this live node in the database: the
		// heartbeat finds it untracked and hands it back for another run.
		log.Error("revenant: finishing episode failed; this node hands it back at its next heartbeat", slog.Any("error", err))
	}
}
