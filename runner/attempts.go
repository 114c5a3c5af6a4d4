package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"

	"github.com/revenant-go/revenant/breakers"
	"github.com/revenant-go/revenant/bus"
	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/internal/dbx"
	"github.com/revenant-go/revenant/internal/store"
	"github.com/revenant-go/revenant/journal"
)

// Ending attempts: a failed attempt is retried (back to pending, due after
// a backoff by the database clock) or fails the episode for good, and the
// actor's breaker counts it, all in one write transaction.

// ErrTimeout is the cause of a run canceled because its actor's Timeout
// passed; the attempt ends with error class "timeout".
var ErrTimeout = errors.New("revenant: the attempt ran past its actor's Timeout")

// outcome is how a run ended, for its breaker.
type outcome struct {
	failed bool
	// probe: the run is its breaker's half-open trial.
	probe bool
	// count: the outcome is counted on the breaker.
	count bool
}

// errBreakerCount marks a failure to count an outcome on a breaker.
var errBreakerCount = errors.New("counting on the breaker")

// retryDelay decides whether a failed attempt runs again, and after how
// long: attempts must remain, the error must not be permanent, and the
// episode's policy (else the actor's) must retry its class.
func retryDelay(a *Actor, ep *episodes.Episode, class string, err error) (delay time.Duration, ok bool) {
	// A workflow step's episode never retries by itself: its step's
	// failure policy decides (two mechanisms would multiply attempts).
	if ep.Attempts >= ep.MaxAttempts || ep.WorkflowInstanceID != uuid.Nil {
		return 0, false
	}
	var perm *journal.PermanentError
	var rec *journal.RecordedError
	if errors.As(err, &perm) || errors.As(err, &rec) || class == "bad_result" {
		return 0, false
	}
	policy := a.Retry
	if ep.Retry != nil {
		policy = ep.Retry
	}
	if !policy.Retries(class) {
		return 0, false
	}
	return policy.Delay(ep.Attempts), true
}

// endAttempt ends a failed attempt: retried when allowed, failed for good
// otherwise.
func (r *Runner) endAttempt(ctx context.Context, log *slog.Logger, a *Actor, ep *episodes.Episode, probe bool, class string, detail any, cause error) {
	delay, retry := retryDelay(a, ep, class, cause)
	eventType := bus.EpisodeFailed
	if retry {
		eventType = bus.EpisodeRetrying
	}
	err := r.finish(ctx, a, outcome{failed: true, probe: probe}, eventType, func(tx dbx.Executor) (*episodes.Episode, error) {
		if retry {
			return r.store.RetryTx(ctx, tx, ep.ID, ep.ClaimToken, class, detail, delay)
		}
		return r.store.FailTx(ctx, tx, ep.ID, ep.ClaimToken, class, detail)
	})
	if err == nil && retry {
		log.Info("revenant: attempt failed; retrying after a backoff", slog.String("class", class),
			slog.Int("attempt", ep.Attempts), slog.Int("max_attempts", ep.MaxAttempts), slog.Duration("backoff", delay))
	}
	r.logFinish(log, err)
}

// breakerKey is the breaker this node's claims of the actor obey.
func (r *Runner) breakerKey(actorID string) breakers.Key {
	return breakers.Key{ActorID: actorID, Stack: r.config.Stack, Env: r.config.Env}
}

// countBreaker records an attempt's outcome on its actor's breaker in tx
// (only for actors with a breaker, or a probe) and returns the event of a
// state change, if any.
// Only the probe's own outcome (ep is named on the breaker row) closes or
// re-opens a half-open breaker.
func (r *Runner) countBreaker(ctx context.Context, tx dbx.Executor, a *Actor, ep *episodes.Episode, o outcome) (*bus.Event, error) {
	if !o.count {
		return nil, nil
	}
	key := r.breakerKey(a.ID)
	if !o.failed {
		closed, err := r.st.BreakerSucceeded(ctx, tx, key, ep.ID)
		if err != nil {
			return nil, fmt.Errorf("%w: closing the breaker of actor %q: %w", errBreakerCount, a.ID, dbx.Explain(err))
		}
		if !closed {
			return nil, nil
		}
		// Other nodes claim again at once, not at their next poll.
		if err := r.st.Notify(ctx, tx, store.PendingChannel, a.ID); err != nil {
			return nil, fmt.Errorf("%w: waking runners of actor %q: %w", errBreakerCount, a.ID, err)
		}
		r.logger.Info("revenant: circuit breaker closed: the probe succeeded", slog.String("actor", a.ID))
		ev := breakers.Event(key, breakers.Closed, "the probe succeeded")
		return &ev, nil
	}
	b, err := r.st.BreakerLock(ctx, tx, key)
	if err != nil {
		return nil, fmt.Errorf("%w: counting a failure on the breaker of actor %q: %w", errBreakerCount, a.ID, dbx.Explain(err))
	}
	w, changed := b.AfterFailure(a.Breaker, ep.ID)
	if err := r.st.BreakerWrite(ctx, tx, &w); err != nil {
		return nil, fmt.Errorf("%w: counting a failure on the breaker of actor %q: %w", errBreakerCount, a.ID, dbx.Explain(err))
	}
	if !changed {
		return nil, nil
	}
	r.logger.Warn("revenant: circuit breaker opened: no node claims the actor's episodes until a probe succeeds",
		slog.String("actor", a.ID), slog.String("reason", w.Reason), slog.Duration("cool_down", w.CoolDown))
	ev := breakers.Event(key, store.BreakerOpen, w.Reason)
	return &ev, nil
}
