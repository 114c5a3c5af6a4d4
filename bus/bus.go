package bus

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/revenant-go/revenant/internal/dbx"
)

// Lifecycle event types.
const (
	EpisodeStarted      = "episode.started"
	EpisodeCompleted    = "episode.completed"
	EpisodeFailed       = "episode.failed"
	EpisodeCanceled     = "episode.canceled"
	EpisodeRecovered    = "episode.recovered"
	EpisodeDeadLettered = "episode.dead_lettered"
	// EpisodeRetrying: an attempt failed and the episode waits, pending,
	// for its next one (ErrorClass says why).
	EpisodeRetrying = "episode.retrying"
	// EpisodeRequeued: an operator put a failed episode back to pending.
	EpisodeRequeued = "episode.requeued"

	// Breaker events carry the actor and the new state as Status.
	BreakerOpened   = "breaker.opened"
	BreakerHalfOpen = "breaker.half_open"
	BreakerClosed   = "breaker.closed"

	WorkflowStarted       = "workflow.started"
	WorkflowStepStarted   = "workflow.step_started"
	WorkflowStepCompleted = "workflow.step_completed"
	WorkflowStepFailed    = "workflow.step_failed"
	WorkflowBlocked       = "workflow.blocked"
	WorkflowCompleted     = "workflow.completed"
	WorkflowFailed        = "workflow.failed"
	WorkflowCanceled      = "workflow.canceled"

	// WorkflowResumeRequested and WorkflowCancelRequested ask, from a
	// process without the workflow's definition (the CLI, a dashboard),
	// that a node which registered it resume or cancel the instance.
	// Payload: a WorkflowRequest.
	WorkflowResumeRequested = "workflow.resume_requested"
	WorkflowCancelRequested = "workflow.cancel_requested"
)

// Recovery is the payload of the events a sweep publishes
// (episode.recovered, and episode.failed or episode.dead_lettered for an
// orphan it failed): why the episode was an orphan (the detection rule)
// and the dead node that owned it.
type Recovery struct {
	Reason        string `json:"reason"`
	PreviousOwner string `json:"previous_owner"`
}

// Recovery reads the payload of an event a sweep published; false for
// any other event.
func (e Event) Recovery() (Recovery, bool) {
	var r Recovery
	if len(e.Payload) == 0 || json.Unmarshal(e.Payload, &r) != nil || r.PreviousOwner == "" && r.Reason == "" {
		return Recovery{}, false
	}
	return r, true
}

// WorkflowRequest is the payload of a workflow resume or cancel request.
type WorkflowRequest struct {
	Reason string `json:"reason,omitempty"`
	By     string `json:"by,omitempty"`
}

// Event is one lifecycle event. ID is unique; delivery is at-least-once, so
// handlers dedupe by it.
type Event struct {
	ID                 uuid.UUID
	Type               string
	EpisodeID          uuid.UUID
	ActorID            string
	WorkflowInstanceID uuid.UUID
	WorkflowStepID     string
	Status             string
	ErrorClass         string
	Payload            json.RawMessage
	CreatedAt          time.Time
}

// Terminal reports whether the event ends an episode (completed, failed,
// canceled or dead-lettered).
func (e Event) Terminal() bool {
	switch e.Type {
	case EpisodeCompleted, EpisodeFailed, EpisodeCanceled, EpisodeDeadLettered:
		return true
	}
	return false
}

// Handler receives events. Errors are logged; the event is not redelivered
// to that handler (the reconciler repairs what a lost event leaves behind).
type Handler func(ctx context.Context, ev Event) error

// Publisher publishes events. PublishTx joins the caller's transaction:
// with the outbox bus the event exists, and is delivered, only if that
// transaction commits.
type Publisher interface {
	Publish(ctx context.Context, evs ...Event) error
	PublishTx(ctx context.Context, tx Executor, evs ...Event) error
}

// Transactional reports whether p's PublishTx writes inside the caller's
// transaction (the outbox). For other publishers, writers publish
// after their transaction commits, so that no subscriber ever sees an event
// whose state change is not yet (or never) visible.
//
// revenant takes a transactional publisher to be its own outbox on the
// same database: on Postgres, claims, completions and sweeps write their
// events into the outbox table in their own statements instead of calling
// PublishTx. Only the outbox reports InTransaction; a wrapper around it
// that must see every event should not.
func Transactional(p Publisher) bool {
	t, ok := p.(interface{ InTransaction() bool })
	return ok && t.InTransaction()
}

// Bus publishes events and delivers them to subscribers.
type Bus interface {
	Publisher
	// Subscribe registers h for events of type eventType ("" for all) and
	// returns a function that removes it.
	Subscribe(eventType string, h Handler) (unsubscribe func())
}

// prepare fills in the id and time of events that lack them.
func prepare(evs []Event) {
	for i := range evs {
		if evs[i].ID == uuid.Nil {
			evs[i].ID, _ = uuid.NewV7()
		}
	}
}

// subscribers is the handler registry both buses share.
type subscribers struct {
	mu     sync.RWMutex
	next   int
	byType map[string]map[int]Handler
}

func (s *subscribers) add(eventType string, h Handler) func() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.byType == nil {
		s.byType = map[string]map[int]Handler{}
	}
	if s.byType[eventType] == nil {
		s.byType[eventType] = map[int]Handler{}
	}
	s.next++
	id := s.next
	s.byType[eventType][id] = h
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.byType[eventType], id)
	}
}

// handlerRetryBackoff spaces the retries of a handler that failed with a
// retryable database error.
var handlerRetryBackoff = []time.Duration{50 * time.Millisecond, 250 * time.Millisecond, time.Second}

func (s *subscribers) deliver(ctx context.Context, logger *slog.Logger, ev Event) {
	s.mu.RLock()
	var hs []Handler
	for _, h := range s.byType[ev.Type] {
		hs = append(hs, h)
	}
	for _, h := range s.byType[""] {
		hs = append(hs, h)
	}
	s.mu.RUnlock()
	for _, h := range hs {
		func() {
			defer func() {
				if v := recover(); v != nil {
					logger.ErrorContext(ctx, "revenant: event handler panicked", slog.String("type", ev.Type), slog.Any("panic", v))
				}
			}()
			err := h(ctx, ev)
			// A transient database error (a lost connection, a file locked
			// by another process) is retried a few times before the event
			// is left to the reconciler.
			for _, wait := range handlerRetryBackoff {
				if err == nil || !dbx.IsRetryable(err) {
					break
				}
				select {
				case <-ctx.Done():
					return
				case <-time.After(wait):
				}
				err = h(ctx, ev)
			}
			if err != nil {
				logger.WarnContext(ctx, "revenant: event handler failed", slog.String("type", ev.Type),
					slog.String("event", ev.ID.String()), slog.Any("error", err))
			}
		}()
	}
}

// InProcess is a Bus within one process. Publish and PublishTx deliver
// asynchronously, in order, on one goroutine. PublishTx cannot know whether
// the transaction commits, so revenant's own writers publish to it only
// after committing (see Transactional); a crash between commit and publish
// loses the event, which the reconciler repairs. Use the outbox bus
// (NewOutbox) across nodes and processes.
type InProcess struct {
	subs   subscribers
	logger *slog.Logger
	mu     sync.Mutex
	queue  []Event
	closed bool
	wake   chan struct{}
	once   sync.Once
}

// NewInProcess returns an in-process bus. logger may be nil.
func NewInProcess(logger *slog.Logger) *InProcess {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &InProcess{logger: logger, wake: make(chan struct{}, 1)}
}

// Subscribe implements Bus.
func (b *InProcess) Subscribe(eventType string, h Handler) func() { return b.subs.add(eventType, h) }

// Publish implements Publisher. After Close it returns an error.
func (b *InProcess) Publish(ctx context.Context, evs ...Event) error {
	prepare(evs)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return fmt.Errorf("%w: the in-process bus is closed", dbx.ErrInvalidInput)
	}
	b.once.Do(func() { go b.loop() })
	for i := range evs {
		if evs[i].CreatedAt.IsZero() {
			evs[i].CreatedAt = time.Now()
		}
	}
	b.queue = append(b.queue, evs...)
	select { // under mu, so that Close cannot close wake in between
	case b.wake <- struct{}{}:
	default:
	}
	return nil
}

// Close stops the delivery goroutine once it has delivered what is queued.
// It is safe to call more than once.
func (b *InProcess) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.closed {
		b.closed = true
		close(b.wake)
	}
}

// PublishTx implements Publisher; see the type's note on transactions.
func (b *InProcess) PublishTx(ctx context.Context, _ Executor, evs ...Event) error {
	return b.Publish(ctx, evs...)
}

func (b *InProcess) loop() {
	for range b.wake { // ends after Close, once the last wake-up is handled
		for {
			b.mu.Lock()
			q := b.queue
			b.queue = nil
			b.mu.Unlock()
			if len(q) == 0 {
				break
			}
			for _, ev := range q {
				b.subs.deliver(context.Background(), b.logger, ev)
			}
		}
	}
}

// Executor is what PublishTx joins: *sql.Tx or *sqlx.Tx (also *sql.DB,
// *sql.Conn, *sqlx.DB). It is the same type as revenant.Executor.
type Executor = dbx.Executor
