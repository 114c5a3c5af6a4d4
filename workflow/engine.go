package workflow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"

	"github.com/revenant-go/revenant/bus"
	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/internal/dbx"
	"github.com/revenant-go/revenant/internal/safe"
	"github.com/revenant-go/revenant/internal/service"
	"github.com/revenant-go/revenant/internal/store"
	"github.com/revenant-go/revenant/internal/store/backend"
)

// Instance statuses.
const (
	StatusRunning  = "running"
	StatusBlocked  = "blocked"
	StatusDone     = "done"
	StatusFailed   = "failed"
	StatusCanceled = "canceled"
)

// Step statuses.
const (
	StepPending  = "pending"
	StepRunning  = "running"
	StepRetrying = "retrying"
	StepDone     = "done"
	StepFailed   = "failed"
	StepPaused   = "paused"
	StepCanceled = "canceled"
)

var knownStepStatus = map[string]bool{StepPending: true, StepRunning: true, StepRetrying: true, StepDone: true,
	StepFailed: true, StepPaused: true, StepCanceled: true}

// RetryPollIntervalDefault is how often an engine looks for due retries.
const RetryPollIntervalDefault = time.Second

// dueBatch bounds the instances one retry pass starts.
const dueBatch = 200

// Config configures an Engine. A nil *Config is valid.
type Config struct {
	// Bus delivers episode events to the engine and receives workflow
	// events. Use the Postgres bus across nodes. Without one, instances
	// advance only through Reconcile and the retry loop.
	Bus bus.Bus
	// Stack and Env are stamped on instances and their episodes.
	Stack, Env string
	// NodeID names the node that publishes the registered definitions'
	// shapes (for operators' tools). Defaults to none.
	NodeID string
	// RetryPollInterval defaults to RetryPollIntervalDefault.
	RetryPollInterval time.Duration
	// Logger defaults to discarding.
	Logger *slog.Logger
}

// Engine starts and advances workflow instances. Run one on every node;
// advancing an instance takes its row lock, so exactly one engine applies
// each event and starts each downstream step.
type Engine struct {
	db     *sqlx.DB
	st     store.Store
	config Config
	store  *episodes.Store
	logger *slog.Logger

	mu   sync.RWMutex
	defs map[string]*Definition
	// knownActors and warnedActors remember the step actor checks of
	// reconciliation (see warnUnknownActors).
	knownActors, warnedActors map[string]bool
	unsub                     []func()
	stop                      chan struct{}
	done                      chan struct{}
}

// NewEngine returns an engine on db (never closed by revenant).
func NewEngine(db *sqlx.DB, config *Config) (*Engine, error) {
	if db == nil {
		return nil, fmt.Errorf("%w: workflow.NewEngine: db is nil", dbx.ErrInvalidInput)
	}
	c := Config{}
	if config != nil {
		c = *config
	}
	if c.RetryPollInterval == 0 {
		c.RetryPollInterval = RetryPollIntervalDefault
	}
	if err := dbx.CheckDuration("workflow Config.RetryPollInterval", c.RetryPollInterval, 10*time.Millisecond, time.Hour, RetryPollIntervalDefault); err != nil {
		return nil, err
	}
	if err := dbx.CheckName("workflow Config.Stack", c.Stack, false); err != nil {
		return nil, err
	}
	if err := dbx.CheckName("workflow Config.Env", c.Env, false); err != nil {
		return nil, err
	}
	if c.Logger == nil {
		c.Logger = dbx.DiscardLogger()
	}
	store, err := episodes.New(db, &episodes.Config{Stack: c.Stack, Env: c.Env, Logger: c.Logger})
	if err != nil {
		return nil, err
	}
	return &Engine{db: db, st: backend.For(db), config: c, store: store, logger: c.Logger, defs: map[string]*Definition{},
		knownActors: map[string]bool{}, warnedActors: map[string]bool{}}, nil
}

// Register validates and adds a definition.
func (e *Engine) Register(def Definition) error {
	if err := def.Validate(); err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.defs[def.ID]; ok {
		return fmt.Errorf("%w: workflow %q is registered twice", ErrInvalidDefinition, def.ID)
	}
	d := def
	e.defs[def.ID] = &d
	return nil
}

func (e *Engine) def(id string) (*Definition, bool) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	d, ok := e.defs[id]
	return d, ok
}

// Start subscribes the engine to episode events and starts the durable
// retry loop. Register definitions first. It checks the database first: a
// database that is down or was never migrated fails Start, which leaves
// nothing running and may be called again. (StartInstance starts a
// workflow instance.)
func (e *Engine) Start(ctx context.Context) error {
	e.mu.Lock()
	started := e.stop != nil
	e.mu.Unlock()
	if started {
		return fmt.Errorf("%w: engine already started", dbx.ErrInvalidInput)
	}
	if err := e.st.WorkflowProbe(ctx, e.db); err != nil {
		return fmt.Errorf("workflow engine: %w", dbx.Explain(err))
	}
	e.mu.Lock()
	if e.stop != nil {
		e.mu.Unlock()
		return fmt.Errorf("%w: engine already started", dbx.ErrInvalidInput)
	}
	e.stop, e.done = make(chan struct{}), make(chan struct{})
	if e.config.Bus != nil {
		for _, t := range []string{bus.EpisodeCompleted, bus.EpisodeFailed, bus.EpisodeCanceled, bus.EpisodeDeadLettered} {
			e.unsub = append(e.unsub, e.config.Bus.Subscribe(t, e.handleEvent))
		}
		for _, t := range []string{bus.WorkflowResumeRequested, bus.WorkflowCancelRequested} {
			e.unsub = append(e.unsub, e.config.Bus.Subscribe(t, e.handleRequest))
		}
	}
	e.mu.Unlock()
	e.publishShapes(ctx, e.config.NodeID)
	go e.retryLoop()
	return nil
}

// Stop ends the engine's loops and subscriptions, waiting at most until
// ctx ends. It is safe before Start and when called again.
func (e *Engine) Stop(ctx context.Context) error {
	e.mu.Lock()
	if e.stop == nil {
		e.mu.Unlock()
		return nil
	}
	for _, u := range e.unsub {
		u()
	}
	e.unsub = nil
	select {
	case <-e.stop:
	default:
		close(e.stop)
	}
	done := e.done
	e.mu.Unlock()
	return service.AwaitStop(ctx, "workflow engine", done, nil)
}

func (e *Engine) retryLoop() {
	defer close(e.done)
	t := time.NewTicker(e.config.RetryPollInterval)
	defer t.Stop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { <-e.stop; cancel() }()
	for {
		select {
		case <-e.stop:
			return
		case <-t.C:
			err := safe.Pass(ctx, e.logger, "workflow retries", func() error { _, err := e.runDueRetries(ctx); return err })
			if err != nil && ctx.Err() == nil {
				e.logger.Warn("revenant: running due retries failed", slog.Any("error", err))
			}
		}
	}
}

// runDueRetries starts every retry whose due time (database clock) has
// passed. The retry loop calls it.
func (e *Engine) runDueRetries(ctx context.Context) (int, error) {
	ids, err := e.st.WorkflowDue(ctx, e.db, dueBatch)
	if err != nil {
		return 0, dbx.Explain(err)
	}
	n := 0
	for _, id := range ids {
		var changed bool
		err := safe.Call(func() error {
			var err error
			changed, err = e.withInstance(ctx, id, true, func(t *txn) error {
				if err := t.checkDefinition(); err != nil {
					return err
				}
				return t.advance()
			})
			return err
		})
		if err != nil {
			e.logger.Warn("revenant: advancing instance failed", slog.String("instance", id.String()), slog.Any("error", err))
			continue
		}
		if changed {
			n++
		}
	}
	return n, nil
}

// StartOptions tunes StartInstance.
type StartOptions struct {
	// Subject, when set, allows one in-flight (running or blocked)
	// instance per workflow and subject, on every node.
	Subject string
}

// StartInstance creates an instance of workflowID with trigger (any JSON
// value) and starts its root steps, all in one transaction.
func (e *Engine) StartInstance(ctx context.Context, workflowID string, trigger any, opts *StartOptions) (uuid.UUID, error) {
	var id uuid.UUID
	var after []bus.Event
	err := e.inTx(ctx, func(tx *sqlx.Tx) error {
		var err error
		id, after, err = e.startTx(ctx, tx, workflowID, trigger, opts)
		return err
	})
	if err == nil {
		e.publishAfter(ctx, after)
	}
	return id, err
}

// StartInstanceTx is StartInstance inside the caller's transaction. With a bus that cannot
// write in the transaction (the in-process bus), its events are published
// before the caller commits.
func (e *Engine) StartInstanceTx(ctx context.Context, tx *sqlx.Tx, workflowID string, trigger any, opts *StartOptions) (uuid.UUID, error) {
	if tx == nil {
		return uuid.Nil, fmt.Errorf("%w: workflow StartInstanceTx: tx is nil; pass the *sqlx.Tx to start the instance in (or use StartInstance)", dbx.ErrInvalidInput)
	}
	id, after, err := e.startTx(ctx, tx, workflowID, trigger, opts)
	if err == nil {
		e.publishAfter(ctx, after)
	}
	return id, err
}

func (e *Engine) startTx(ctx context.Context, tx *sqlx.Tx, workflowID string, trigger any, opts *StartOptions) (uuid.UUID, []bus.Event, error) {
	def, ok := e.def(workflowID)
	if !ok {
		return uuid.Nil, nil, fmt.Errorf("%w: %q (register it first)", ErrUnknownWorkflow, workflowID)
	}
	trig, err := dbx.EncodeJSON(trigger, episodes.MaxJSONBytesDefault)
	if err != nil {
		return uuid.Nil, nil, fmt.Errorf("%w: workflow %q trigger: %w", dbx.ErrInvalidInput, workflowID, err)
	}
	subject := ""
	if opts != nil {
		subject = opts.Subject
	}
	if err := dbx.CheckText("StartOptions.Subject", subject, dbx.MaxKeyBytes); err != nil {
		return uuid.Nil, nil, err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return uuid.Nil, nil, err
	}
	ids := make([]string, len(def.Steps))
	for i, s := range def.Steps {
		ids[i] = s.ID
	}
	dup, err := e.st.WorkflowInsert(ctx, tx, &store.WorkflowInsertParams{ID: id, WorkflowID: workflowID, Subject: subject,
		Trigger: trig, Stack: e.config.Stack, Env: e.config.Env, StepIDs: ids})
	if err != nil {
		return uuid.Nil, nil, fmt.Errorf("starting workflow %q: %w", workflowID, dbx.Explain(err))
	}
	if dup {
		return uuid.Nil, nil, fmt.Errorf("%w: workflow %q subject %q", ErrDuplicateInFlight, workflowID, subject)
	}
	t, err := e.load(ctx, tx, id, false)
	if err != nil {
		return uuid.Nil, nil, err
	}
	t.publish(bus.Event{Type: bus.WorkflowStarted, WorkflowInstanceID: id, Status: StatusRunning})
	if err := t.advance(); err != nil {
		return uuid.Nil, nil, err
	}
	if err := t.flush(); err != nil {
		return uuid.Nil, nil, err
	}
	return id, t.afterCommit, nil
}

// handleEvent applies a terminal episode event to its workflow instance.
// Duplicate and replayed events change nothing; events of episodes that
// belong to no workflow, or to an unregistered one, are ignored.
func (e *Engine) handleEvent(ctx context.Context, ev bus.Event) error {
	if !ev.Terminal() || ev.WorkflowInstanceID == uuid.Nil || ev.WorkflowStepID == "" {
		return nil
	}
	_, err := e.withInstance(ctx, ev.WorkflowInstanceID, false, func(t *txn) error {
		if err := t.checkDefinition(); err != nil {
			return err
		}
		if _, err := t.applyTerminal(ev.WorkflowStepID, ev.EpisodeID); err != nil {
			return err
		}
		return t.advance()
	})
	if errors.Is(err, ErrDefinitionChanged) {
		e.logger.Error("revenant: workflow instance blocked: its definition changed", slog.String("instance", ev.WorkflowInstanceID.String()), slog.Any("error", err))
		return nil // handled: the instance is blocked with the reason
	}
	if errors.Is(err, ErrUnknownWorkflow) {
		e.logger.Warn("revenant: event for an unregistered workflow ignored", slog.String("instance", ev.WorkflowInstanceID.String()), slog.Any("error", err))
		return nil
	}
	return err
}

// Cancel cancels an instance: its running steps' episodes are canceled and
// its unfinished steps marked canceled.
func (e *Engine) Cancel(ctx context.Context, id uuid.UUID, reason string) error {
	_, err := e.withInstance(ctx, id, false, func(t *txn) error {
		if t.inst.Status != StatusRunning && t.inst.Status != StatusBlocked {
			return fmt.Errorf("%w: instance %s is %s", ErrIllegalTransition, id, t.inst.Status)
		}
		if err := t.stopSteps(reason); err != nil {
			return err
		}
		t.setInstance(StatusCanceled, map[string]string{"reason": reason})
		t.publish(bus.Event{Type: bus.WorkflowCanceled, WorkflowInstanceID: id, Status: StatusCanceled})
		return nil
	})
	return err
}

// Resume unblocks an instance paused by a step's Pause policy (the paused
// steps run again) or blocked because its definition changed (once the
// definition it started with is registered again); outcomes of steps that
// finished meanwhile are applied.
func (e *Engine) Resume(ctx context.Context, id uuid.UUID) error {
	_, err := e.withInstance(ctx, id, false, func(t *txn) error {
		if t.inst.Status != StatusBlocked {
			return fmt.Errorf("%w: instance %s is %s, not blocked", ErrIllegalTransition, id, t.inst.Status)
		}
		if t.drift != nil {
			return t.drift // still differs: stays blocked
		}
		for _, s := range t.steps {
			if s.Status == StepPaused {
				s.Status, s.dirty = StepPending, true
			}
		}
		t.setInstance(StatusRunning, nil)
		// Outcomes that arrived while it was blocked are applied now.
		return reconcileOne(t)
	})
	return err
}

// Instance is a workflow instance with its step states.
type Instance struct {
	ID           uuid.UUID
	WorkflowID   string
	Status       string
	Subject      string
	Trigger      json.RawMessage
	Error        json.RawMessage
	Compensating bool
	Version      int64
	CreatedAt    time.Time
	FinishedAt   *time.Time
	Stack, Env   string
	Steps        []StepState
}

// StepState is one step (or compensation) of an instance.
type StepState struct {
	ID         string
	Kind       string // "step" or "compensation"
	Status     string
	Attempts   int
	EpisodeID  uuid.UUID
	Result     json.RawMessage
	ErrorClass string
	Error      json.RawMessage
	DueAt      *time.Time

	position int
	due      bool
	dirty    bool
	dueInMS  *int64
	outcome  *episodes.Episode // running steps: the episode's state, read with the lock
}

// Step returns the state of step id, or nil.
func (in *Instance) Step(id string) *StepState {
	for i := range in.Steps {
		if in.Steps[i].ID == id {
			return &in.Steps[i]
		}
	}
	return nil
}

// Get reads an instance with its step states, in one statement.
func (e *Engine) Get(ctx context.Context, id uuid.UUID) (*Instance, error) {
	inst, steps, err := e.read(e.st.WorkflowGet(ctx, e.db, id))
	if err != nil {
		return nil, fmt.Errorf("getting workflow instance %s: %w", id, err)
	}
	for _, s := range steps {
		inst.Steps = append(inst.Steps, *s)
	}
	return inst, nil
}

// read turns a loaded instance into the engine's types, refusing values
// this version cannot read.
func (e *Engine) read(l *store.WorkflowLoaded, err error) (*Instance, []*StepState, error) {
	if err != nil {
		return nil, nil, dbx.Explain(err)
	}
	in := &Instance{ID: l.Instance.ID, WorkflowID: l.Instance.WorkflowID, Status: l.Instance.Status, Subject: l.Instance.Subject,
		Trigger: l.Instance.Trigger, Error: l.Instance.Error, Compensating: l.Instance.Compensating, Version: l.Instance.Version,
		CreatedAt: l.Instance.CreatedAt, FinishedAt: l.Instance.FinishedAt, Stack: l.Instance.Stack, Env: l.Instance.Env}
	switch in.Status {
	case StatusRunning, StatusBlocked, StatusDone, StatusFailed, StatusCanceled:
	default:
		return nil, nil, fmt.Errorf("%w: instance %s has unknown status %q", ErrCorruptRow, in.ID, in.Status)
	}
	steps := make([]*StepState, len(l.Steps))
	for i, r := range l.Steps {
		if !knownStepStatus[r.Status] {
			return nil, nil, fmt.Errorf("%w: instance %s step %q has unknown status %q", ErrCorruptRow, in.ID, r.ID, r.Status)
		}
		s := &StepState{ID: r.ID, Kind: r.Kind, Status: r.Status, Attempts: r.Attempts, EpisodeID: r.EpisodeID, Result: r.Result,
			ErrorClass: r.ErrorClass, Error: r.Error, DueAt: r.DueAt, position: r.Position, due: r.Due}
		if r.EpisodeStatus != "" {
			s.outcome = &episodes.Episode{ID: r.EpisodeID, Status: episodes.Status(r.EpisodeStatus), Result: r.EpisodeResult,
				ErrorClass: r.EpisodeErrorClass, ErrorDetail: r.EpisodeErrorDetail}
		}
		steps[i] = s
	}
	return in, steps, nil
}

func (e *Engine) inTx(ctx context.Context, fn func(tx *sqlx.Tx) error) error {
	return dbx.InTx(ctx, e.db, fn)
}

// withInstance locks the instance (skipping it if skipLocked and another
// engine holds it), loads its steps, runs fn and commits what fn changed.
// It reports whether anything changed.
func (e *Engine) withInstance(ctx context.Context, id uuid.UUID, skipLocked bool, fn func(t *txn) error) (bool, error) {
	changed := false
	var keptErr error // see keptError
	var after []bus.Event
	defer func() { e.publishAfter(ctx, after) }()
	err := e.inTx(ctx, func(tx *sqlx.Tx) error {
		t, err := e.load(ctx, tx, id, skipLocked)
		if errors.Is(err, ErrNotFound) && skipLocked {
			return nil // locked by another engine, which is advancing it
		}
		if err != nil {
			return err
		}
		var kept *keptError
		if err := fn(t); errors.As(err, &kept) {
			keptErr = kept.err
		} else if err != nil {
			return err
		}
		changed = t.changed()
		if err := t.flush(); err != nil {
			return err
		}
		after = t.afterCommit
		return nil
	})
	if err != nil {
		after = nil
		return false, err
	}
	return changed, keptErr
}

// publishAfter publishes, after commit, the events of a bus that cannot
// write inside the transaction.
func (e *Engine) publishAfter(ctx context.Context, evs []bus.Event) {
	if len(evs) == 0 || e.config.Bus == nil {
		return
	}
	if err := e.config.Bus.Publish(ctx, evs...); err != nil {
		e.logger.Warn("revenant: publishing workflow events failed", slog.Any("error", err))
	}
}

// load locks the instance and reads it, its steps and its running steps'
// episode outcomes. With skipLocked, an instance locked by another engine
// reads as ErrNotFound.
func (e *Engine) load(ctx context.Context, tx *sqlx.Tx, id uuid.UUID, skipLocked bool) (*txn, error) {
	inst, steps, err := e.read(e.st.WorkflowLoadLocked(ctx, tx, id, skipLocked))
	if err != nil {
		return nil, fmt.Errorf("instance %s: %w", id, err)
	}
	def, ok := e.def(inst.WorkflowID)
	if !ok {
		return nil, fmt.Errorf("%w: %q (instance %s)", ErrUnknownWorkflow, inst.WorkflowID, id)
	}
	t := &txn{e: e, ctx: ctx, tx: tx, inst: inst, def: def, steps: map[string]*StepState{}}
	for _, s := range steps {
		t.steps[s.ID] = s
		t.order = append(t.order, s.ID)
	}
	t.drift = t.definitionDrift()
	return t, nil
}

// FindBySubject returns the newest instance of workflowID started with
// subject, or ErrNotFound.
func (e *Engine) FindBySubject(ctx context.Context, workflowID, subject string) (uuid.UUID, error) {
	id, err := e.st.WorkflowFindBySubject(ctx, e.db, workflowID, subject)
	if errors.Is(err, ErrNotFound) {
		return uuid.Nil, fmt.Errorf("workflow %q subject %q: %w", workflowID, subject, ErrNotFound)
	}
	if err != nil {
		return uuid.Nil, dbx.Explain(err)
	}
	return id, nil
}
