// Package breakers shows and sets the cluster-wide circuit breakers of
// actors.
//
// A breaker belongs to an actor in one scope (the stack and env of the
// nodes that claim it). Its state lives in the database, so every node
// sees it at once: while it is open no node claims the actor's episodes,
// and none keeps calling a dependency that is down. An actor opts in with
// runner.Actor.Breaker (a Policy); with none, its breaker stays closed
// unless an operator opens it here. Every state change is published on
// the bus (breaker.opened, breaker.half_open, breaker.closed).
//
// The claim statement reads the breaker as part of itself: a closed
// breaker costs a claim no extra statement.
package breakers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/revenant-go/revenant/bus"
	"github.com/revenant-go/revenant/internal/dbx"
	"github.com/revenant-go/revenant/internal/store"
	"github.com/revenant-go/revenant/internal/store/backend"
)

// Policy configures an actor's breaker (runner.Actor.Breaker). Its fields
// are documented on the type it names; the defaults are below. Breakers
// are off unless an actor sets a Policy.
type Policy = store.BreakerPolicy

// Policy defaults: a Window of a minute and a CoolDown of 30 seconds.
const (
	WindowDefault   = store.BreakerWindowDefault
	CoolDownDefault = store.BreakerCoolDownDefault
)

// State is a breaker's state.
type State = store.BreakerState

// The states.
const (
	Closed   State = store.BreakerClosed
	Open     State = store.BreakerOpen
	HalfOpen State = store.BreakerHalfOpen
)

// Key names a breaker: an actor, and the Stack and Env of the nodes that
// claim it ("" for none).
type Key = store.BreakerKey

// Breaker is one breaker's state.
type Breaker struct {
	Key
	State State
	// Failures counts failed attempts in a row, WindowFailures those in
	// the current window.
	Failures, WindowFailures int
	// ReopenAt is when an open breaker lets a probe through; nil for one
	// an operator opened (Manual), which waits for an operator.
	ReopenAt *time.Time
	// Manual is true when an operator set the state; failures and probes
	// then leave it alone until an operator changes it again.
	Manual bool
	// Reason says why it is in its state.
	Reason string
	// ChangedAt is when the state last changed (zero for a breaker that
	// never had a row, which is closed).
	ChangedAt time.Time
}

// Config configures a Store. A nil *Config is valid.
type Config struct {
	// Bus receives breaker.opened and breaker.closed when an operator
	// changes a breaker. Defaults to none.
	Bus bus.Publisher
	// Logger receives a warning when such an event cannot be published
	// (the change itself stands). Defaults to discarding.
	Logger *slog.Logger
}

// Store reads and sets breakers.
type Store struct {
	db     *sqlx.DB
	st     store.Store
	config Config
}

// New returns a Store on db. db is the caller's and is never closed.
func New(db *sqlx.DB, config *Config) (*Store, error) {
	if db == nil {
		return nil, fmt.Errorf("%w: breakers.New: db is nil; pass the *sqlx.DB your application opened", dbx.ErrInvalidInput)
	}
	s := &Store{db: db, st: backend.For(db)}
	if config != nil {
		s.config = *config
	}
	if s.config.Logger == nil {
		s.config.Logger = dbx.DiscardLogger()
	}
	return s, nil
}

func fromRow(b *store.Breaker) Breaker {
	return Breaker{Key: b.BreakerKey, State: b.State, Failures: b.Failures, WindowFailures: b.WindowFailures,
		ReopenAt: b.ReopenAt, Manual: b.Manual, Reason: b.Reason, ChangedAt: b.ChangedAt}
}

// List returns every breaker that has a row (one that ever counted a
// failure or was set by hand), by actor.
func (s *Store) List(ctx context.Context) ([]Breaker, error) {
	rows, err := s.st.BreakerList(ctx, s.db)
	if err != nil {
		return nil, fmt.Errorf("listing breakers: %w", dbx.Explain(err))
	}
	out := make([]Breaker, len(rows))
	for i := range rows {
		out[i] = fromRow(&rows[i])
	}
	return out, nil
}

// Get returns one breaker; one without a row is closed.
func (s *Store) Get(ctx context.Context, key Key) (Breaker, error) {
	b, err := s.st.BreakerGet(ctx, s.db, key)
	if errors.Is(err, dbx.ErrNotFound) {
		return Breaker{Key: key, State: Closed}, nil
	}
	if err != nil {
		return Breaker{}, fmt.Errorf("reading the breaker of actor %q: %w", key.ActorID, dbx.Explain(err))
	}
	return fromRow(b), nil
}

// Open opens a breaker by hand: no node claims the actor's episodes in
// that scope until Close. reason is recorded and shown.
func (s *Store) Open(ctx context.Context, key Key, reason string) (Breaker, error) {
	return s.set(ctx, key, Open, reason)
}

// OpenTx is Open inside the caller's transaction.
func (s *Store) OpenTx(ctx context.Context, tx dbx.Executor, key Key, reason string) (Breaker, error) {
	return s.setTx(ctx, tx, key, Open, reason, nil)
}

// Close closes a breaker by hand and clears its counts; failures count
// from zero again.
func (s *Store) Close(ctx context.Context, key Key, reason string) (Breaker, error) {
	return s.set(ctx, key, Closed, reason)
}

// CloseTx is Close inside the caller's transaction.
func (s *Store) CloseTx(ctx context.Context, tx dbx.Executor, key Key, reason string) (Breaker, error) {
	return s.setTx(ctx, tx, key, Closed, reason, nil)
}

func (s *Store) set(ctx context.Context, key Key, state State, reason string) (Breaker, error) {
	var out Breaker
	var after []bus.Event
	err := dbx.InTx(ctx, s.db, func(tx *sqlx.Tx) error {
		var err error
		out, err = s.setTx(ctx, tx, key, state, reason, &after)
		return err
	})
	if err == nil && len(after) > 0 {
		if perr := s.config.Bus.Publish(ctx, after...); perr != nil {
			s.config.Logger.Warn("revenant: publishing a breaker change failed; the change stands",
				slog.String("actor", key.ActorID), slog.Any("error", perr))
		}
	}
	return out, err
}

func (s *Store) setTx(ctx context.Context, tx dbx.Executor, key Key, state State, reason string, after *[]bus.Event) (Breaker, error) {
	if err := dbx.CheckExecutor("breakers", tx); err != nil {
		return Breaker{}, err
	}
	if err := checkKey(key); err != nil {
		return Breaker{}, err
	}
	if err := dbx.CheckText("breaker reason", reason, dbx.MaxKeyBytes); err != nil {
		return Breaker{}, err
	}
	cur, err := s.st.BreakerLock(ctx, tx, key)
	if err != nil {
		return Breaker{}, fmt.Errorf("locking the breaker of actor %q: %w", key.ActorID, dbx.Explain(err))
	}
	w := store.BreakerWriteParams{BreakerKey: key, State: state, CoolDown: cur.CoolDown, Manual: state == Open,
		Reason: reason, Changed: cur.State != state}
	if err := s.st.BreakerWrite(ctx, tx, &w); err != nil {
		return Breaker{}, fmt.Errorf("writing the breaker of actor %q: %w", key.ActorID, dbx.Explain(err))
	}
	if w.Changed && state == Closed {
		// Runners claim the actor again at once, not at their next poll.
		if err := s.st.Notify(ctx, tx, store.PendingChannel, key.ActorID); err != nil {
			return Breaker{}, fmt.Errorf("waking runners of actor %q: %w", key.ActorID, err)
		}
	}
	if w.Changed && s.config.Bus != nil {
		ev := Event(key, state, reason)
		if after != nil && !bus.Transactional(s.config.Bus) {
			*after = append(*after, ev)
		} else if err := s.config.Bus.PublishTx(ctx, tx, ev); err != nil {
			return Breaker{}, err
		}
	}
	b, err := s.st.BreakerGet(ctx, tx, key)
	if err != nil {
		return Breaker{}, fmt.Errorf("reading the breaker of actor %q: %w", key.ActorID, dbx.Explain(err))
	}
	return fromRow(b), nil
}

func checkKey(key Key) error {
	if err := dbx.CheckName("breaker actor", key.ActorID, true); err != nil {
		return err
	}
	if err := dbx.CheckName("breaker stack", key.Stack, false); err != nil {
		return err
	}
	return dbx.CheckName("breaker env", key.Env, false)
}

// Event is the bus event of a breaker's change to state: type
// breaker.opened, breaker.half_open or breaker.closed, with the actor, the
// state as Status, and {"stack", "env", "reason"} as Payload.
func Event(key Key, state State, reason string) bus.Event {
	typ := bus.BreakerClosed
	switch state {
	case Open:
		typ = bus.BreakerOpened
	case HalfOpen:
		typ = bus.BreakerHalfOpen
	}
	payload, _ := json.Marshal(map[string]string{"stack": key.Stack, "env": key.Env, "reason": reason})
	return bus.Event{Type: typ, ActorID: key.ActorID, Status: string(state), Payload: payload}
}
