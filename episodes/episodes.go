package episodes

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"

	"github.com/revenant-go/revenant/internal/dbx"
	"github.com/revenant-go/revenant/internal/store"
	"github.com/revenant-go/revenant/internal/store/backend"
)

// Status is an episode's lifecycle state: one of the constants below.
// It has two methods: Valid reports whether it is one of them, and
// Terminal whether it is done, failed or canceled.
type Status = store.Status

// The statuses. done, failed and canceled are terminal.
const (
	StatusPending  Status = store.StatusPending
	StatusRunning  Status = store.StatusRunning
	StatusBlocked  Status = store.StatusBlocked
	StatusDone     Status = store.StatusDone
	StatusFailed   Status = store.StatusFailed
	StatusCanceled Status = store.StatusCanceled
)

// Re-exported sentinels; see package revenant for their meaning.
var (
	ErrNotFound          = dbx.ErrNotFound
	ErrIllegalTransition = dbx.ErrIllegalTransition
	ErrLeaseLost         = dbx.ErrLeaseLost
	ErrInvalidInput      = dbx.ErrInvalidInput
	ErrCorruptRow        = dbx.ErrCorruptRow
)

// Episode is one run of an actor.
type Episode struct {
	ID          uuid.UUID
	ActorID     string
	Expectation string // "" when none
	Status      Status
	Phase       string
	Input       json.RawMessage // nil when none
	Result      json.RawMessage
	// ErrorClass and ErrorDetail are why the episode failed, or, while it
	// is pending again (a retry, a requeue), why its last attempt failed.
	// A success clears them.
	ErrorClass  string
	ErrorDetail json.RawMessage
	// Attempts counts claims of this episode: 1 on its first run, 2 after
	// an error retry or a crash restart, and so on (counted when claimed,
	// so crashes count); MaxAttempts bounds both together. A requeue
	// starts it again from 0. A workflow step retried after a failure runs
	// as a new episode: see StepAttempt for the step's own count.
	Attempts    int
	MaxAttempts int
	OwnerNode   string
	// ClaimToken is the fencing number of the current (or last) claim. Every
	// write by the holder must present it.
	ClaimToken        int64
	CancelRequestedAt *time.Time
	CreatedAt         time.Time
	StartedAt         *time.Time
	LastActivityAt    *time.Time
	FinishedAt        *time.Time
	ArchivedAt        *time.Time
	DedupeKey         string
	SourceStack       string // "" means none
	SourceEnv         string // "" means none
	// WorkflowInstanceID is uuid.Nil when the episode is not a workflow step.
	WorkflowInstanceID uuid.UUID
	WorkflowStepID     string
	Metadata           json.RawMessage
	// RunAt is when the episode falls due (database clock): its enqueue
	// time, a scheduled time, or the end of a retry's backoff. Runners
	// claim a pending episode only once it is due.
	RunAt time.Time
	// Retry is the episode's own retry policy, nil when it follows its
	// actor's.
	Retry *RetryPolicy
	// Requeues is the episode's requeue history, oldest first.
	Requeues []Requeue
}

// RetryPolicy says whether and when a failed attempt runs again; see
// CreateParams.Retry and the actor's policy (runner.Actor.Retry). Its
// fields are documented on the type it names.
type RetryPolicy = store.RetryPolicy

// Requeue is one entry of an episode's requeue history.
type Requeue = store.Requeue

// Retry defaults: the first retry waits about a second, each next one
// twice as long, never more than ten minutes (each ±20% jitter).
const (
	RetryMinBackoffDefault = store.RetryMinBackoffDefault
	RetryMaxBackoffDefault = store.RetryMaxBackoffDefault
)

// MaxAttemptsDefault is the max attempts given to new episodes when neither
// CreateParams nor Config sets one.
const MaxAttemptsDefault = 3

// MaxScheduleDelay bounds CreateParams.Delay (and requeue delays).
const MaxScheduleDelay = 100 * 365 * 24 * time.Hour

// MaxJSONBytesDefault caps input, result, error detail and metadata values.
const MaxJSONBytesDefault = 1 << 20

// ListLimitDefault and ListLimitMax bound List pages.
const (
	ListLimitDefault = 100
	ListLimitMax     = 10_000
)

// Config configures a Store. The zero value is valid.
type Config struct {
	// Stack is stamped as SourceStack on new episodes that do not set one.
	// Defaults to "" (none).
	Stack string
	// Env is stamped as SourceEnv on new episodes that do not set one.
	// Defaults to "" (none).
	Env string
	// MaxAttempts is given to new episodes that do not set one. Defaults to
	// MaxAttemptsDefault.
	MaxAttempts int
	// MaxJSONBytes caps each JSON value written (input, result, error
	// detail, metadata). Defaults to MaxJSONBytesDefault (1 MiB).
	MaxJSONBytes int
	// Logger is used for rare diagnostics. Defaults to discarding.
	Logger *slog.Logger
}

func (c *Config) withDefaults() *Config {
	out := Config{}
	if c != nil {
		out = *c
	}
	if out.MaxAttempts == 0 {
		out.MaxAttempts = MaxAttemptsDefault
	}
	if out.MaxJSONBytes == 0 {
		out.MaxJSONBytes = MaxJSONBytesDefault
	}
	if out.Logger == nil {
		out.Logger = dbx.DiscardLogger()
	}
	return &out
}

func (c *Config) validate() error {
	if c.MaxAttempts < 0 || c.MaxAttempts > dbx.MaxMaxAttempts {
		return fmt.Errorf("%w: episodes Config.MaxAttempts is %d; use 1..%d, or 0 for the default (%d)", ErrInvalidInput, c.MaxAttempts, dbx.MaxMaxAttempts, MaxAttemptsDefault)
	}
	if err := dbx.CheckName("episodes Config.Stack", c.Stack, false); err != nil {
		return err
	}
	if err := dbx.CheckName("episodes Config.Env", c.Env, false); err != nil {
		return err
	}
	if c.MaxJSONBytes < 0 {
		return fmt.Errorf("%w: episodes Config.MaxJSONBytes is %d; use a positive number or 0 for the default (%d)", ErrInvalidInput, c.MaxJSONBytes, MaxJSONBytesDefault)
	}
	return nil
}

// Store reads and writes episodes.
type Store struct {
	db     *sqlx.DB
	config *Config
	st     store.Store
}

// New returns a Store on db. db is the caller's and is never closed.
func New(db *sqlx.DB, config *Config) (*Store, error) {
	if db == nil {
		return nil, fmt.Errorf("%w: episodes.New: db is nil; pass the *sqlx.DB your application opened (wrap a *sql.DB with revenant.WrapDB)", ErrInvalidInput)
	}
	cfg := config.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Store{db: db, config: cfg, st: backend.For(db)}, nil
}

// DB returns the handle the store was built with.
func (s *Store) DB() *sqlx.DB { return s.db }

// CreateParams describes a new episode.
type CreateParams struct {
	// ID is the new episode's id. Defaults to a new UUIDv7 (time ordered).
	ID uuid.UUID
	// ActorID names the actor that runs the episode. Required.
	ActorID string
	// Expectation optionally names what the actor is asked to achieve; it
	// can select a per-expectation recovery policy.
	Expectation string
	// Input is the episode's JSON input: any value json.Marshal accepts, or
	// a json.RawMessage that must be valid JSON.
	Input any
	// MaxAttempts bounds how many times the episode may be claimed.
	// Defaults to Config.MaxAttempts.
	MaxAttempts int
	// DedupeKey, when set, makes Create idempotent: while a non-archived
	// episode with the same key exists, Create returns it instead.
	DedupeKey string
	// SourceStack and SourceEnv scope recovery. Default to Config.Stack and
	// Config.Env.
	SourceStack string
	SourceEnv   string
	// WorkflowInstanceID and WorkflowStepID link a workflow step's episode.
	WorkflowInstanceID uuid.UUID
	WorkflowStepID     string
	// Metadata is a free JSON object. Defaults to {}.
	Metadata any
	// RunAt schedules the episode: runners claim it once this time has
	// come (compared with the database clock). Delay does the same
	// relative to the database's now. Set at most one; by default the
	// episode is due at once.
	RunAt time.Time
	Delay time.Duration
	// Retry overrides the actor's retry policy for this episode; it is
	// stored with it, so it cannot carry a Backoff function. Defaults to
	// nil (the actor's policy).
	Retry *RetryPolicy
}

// CreateResult is what Create did.
type CreateResult struct {
	Episode *Episode
	// Duplicate is true when an episode with the same DedupeKey already
	// existed and was returned instead of creating a new one.
	Duplicate bool
	// UnknownActor is set by runner (and client) Enqueue when no live node
	// that can claim the episode has registered its actor, and the actor
	// has no definition: the episode waits, pending, until one does. A
	// typo in the actor id is the usual cause. Store.Create does not check.
	UnknownActor bool
}

// Create inserts a pending episode, or returns the existing one with the
// same DedupeKey.
func (s *Store) Create(ctx context.Context, p CreateParams) (*CreateResult, error) {
	return s.CreateTx(ctx, s.db, p)
}

// CreateTx is Create inside the caller's transaction: the episode exists only
// if that transaction commits.
func (s *Store) CreateTx(ctx context.Context, tx Executor, p CreateParams) (*CreateResult, error) {
	if err := dbx.CheckExecutor("episodes.CreateTx", tx); err != nil {
		return nil, err
	}
	row, err := s.rowOf(p)
	if err != nil {
		return nil, err
	}
	stack, env := row.SourceStack, row.SourceEnv

	// A dedupe conflict inserts nothing; the existing episode is then read.
	// If it was archived in between, the insert is simply tried again.
	for range 3 {
		ep, err := s.st.EpisodeInsert(ctx, tx, row)
		if err != nil {
			return nil, fmt.Errorf("creating episode for actor %q: %w", p.ActorID, dbx.Explain(err))
		}
		if ep != nil {
			return &CreateResult{Episode: (*Episode)(ep)}, nil
		}
		if p.DedupeKey == "" { // cannot happen: no conflict target without a key
			return nil, fmt.Errorf("creating episode for actor %q: insert returned no row", p.ActorID)
		}
		ep, err = s.st.EpisodeGetByDedupeKey(ctx, tx, p.ActorID, stack, env, p.DedupeKey)
		if err == nil {
			return &CreateResult{Episode: (*Episode)(ep), Duplicate: true}, nil
		}
		if !errors.Is(err, ErrNotFound) {
			return nil, fmt.Errorf("reading the episode holding a dedupe key of actor %q: %w", p.ActorID, dbx.Explain(err))
		}
	}
	return nil, fmt.Errorf("creating an episode of actor %q with a dedupe key: lost the race three times", p.ActorID)
}

// validate checks what both backends must refuse alike, before any
// statement runs.
func (p *CreateParams) validate() error {
	for _, f := range []struct {
		name, value string
		max         int
	}{
		{"CreateParams.ActorID", p.ActorID, dbx.MaxNameBytes},
		{"CreateParams.Expectation", p.Expectation, dbx.MaxNameBytes},
		{"CreateParams.DedupeKey", p.DedupeKey, dbx.MaxKeyBytes},
		{"CreateParams.SourceStack", p.SourceStack, dbx.MaxNameBytes},
		{"CreateParams.SourceEnv", p.SourceEnv, dbx.MaxNameBytes},
		{"CreateParams.WorkflowStepID", p.WorkflowStepID, dbx.MaxNameBytes},
	} {
		if err := dbx.CheckText(f.name, f.value, f.max); err != nil {
			return err
		}
	}
	if p.ActorID == "" {
		return fmt.Errorf("%w: CreateParams.ActorID is required", ErrInvalidInput)
	}
	if p.MaxAttempts < 0 || p.MaxAttempts > dbx.MaxMaxAttempts {
		return fmt.Errorf("%w: CreateParams.MaxAttempts is %d; use 1..%d, or 0 for the default", ErrInvalidInput, p.MaxAttempts, dbx.MaxMaxAttempts)
	}
	if !p.RunAt.IsZero() && p.Delay != 0 {
		return fmt.Errorf("%w: CreateParams sets both RunAt and Delay; set one", ErrInvalidInput)
	}
	if p.Delay < 0 || p.Delay > MaxScheduleDelay {
		return fmt.Errorf("%w: CreateParams.Delay is %s; use 0 up to %s", ErrInvalidInput, p.Delay, MaxScheduleDelay)
	}
	if !p.RunAt.IsZero() && (p.RunAt.Year() < 1970 || p.RunAt.Year() > 9999) {
		return fmt.Errorf("%w: CreateParams.RunAt (%s) is out of range; use a time between 1970 and 9999", ErrInvalidInput, p.RunAt)
	}
	return p.Retry.Validate("CreateParams.Retry", true)
}

// Get returns one episode, or an error wrapping ErrNotFound.
func (s *Store) Get(ctx context.Context, id uuid.UUID) (*Episode, error) {
	return s.GetTx(ctx, s.db, id)
}

// GetTx is Get inside the caller's transaction.
func (s *Store) GetTx(ctx context.Context, tx Executor, id uuid.UUID) (*Episode, error) {
	if err := dbx.CheckExecutor("episodes.GetTx", tx); err != nil {
		return nil, err
	}
	ep, err := s.st.EpisodeGet(ctx, tx, id)
	if err != nil {
		return nil, fmt.Errorf("getting episode %s: %w", id, dbx.Explain(err))
	}
	return (*Episode)(ep), nil
}

// Executor is what the …Tx methods accept: *sql.Tx or *sqlx.Tx (also
// *sql.DB, *sql.Conn, *sqlx.DB), so revenant's writes commit or roll back
// with the caller's own work. It is the same type as revenant.Executor.
type Executor = dbx.Executor

// StepAttempt is, for a workflow step's episode, which attempt of the step
// it runs: 1 for the first, 2 for the first retry after a failure, and so
// on. It is 0 for an episode outside workflows. (Attempts, by contrast,
// counts claims of this one episode, which crash restarts bump.)
func (e *Episode) StepAttempt() int {
	return store.WorkflowStepAttempt(e.WorkflowInstanceID, e.WorkflowStepID, e.DedupeKey)
}

// rowOf validates p and encodes it as a row, with the store's defaults
// (id, max attempts, scope) filled in.
func (s *Store) rowOf(p CreateParams) (*store.EpisodeInsertParams, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	input, err := dbx.EncodeJSON(p.Input, s.config.MaxJSONBytes)
	if err != nil {
		return nil, fmt.Errorf("%w: CreateParams.Input: %w", ErrInvalidInput, err)
	}
	meta, err := dbx.EncodeJSON(p.Metadata, s.config.MaxJSONBytes)
	if err != nil {
		return nil, fmt.Errorf("%w: CreateParams.Metadata: %w", ErrInvalidInput, err)
	}
	if m, ok := meta.(string); ok && !strings.HasPrefix(strings.TrimSpace(m), "{") {
		return nil, fmt.Errorf("%w: CreateParams.Metadata must be a JSON object (or nil), such as map[string]any{\"k\": \"v\"}", ErrInvalidInput)
	}
	id := p.ID
	if id == uuid.Nil {
		if id, err = uuid.NewV7(); err != nil {
			return nil, fmt.Errorf("generating episode id: %w", err)
		}
	}
	maxAttempts := p.MaxAttempts
	if maxAttempts == 0 {
		maxAttempts = s.config.MaxAttempts
	}
	stack, env := p.SourceStack, p.SourceEnv
	if stack == "" {
		stack = s.config.Stack
	}
	if env == "" {
		env = s.config.Env
	}
	return &store.EpisodeInsertParams{ID: id, ActorID: p.ActorID, Expectation: p.Expectation, Input: input,
		MaxAttempts: maxAttempts, DedupeKey: p.DedupeKey, SourceStack: stack, SourceEnv: env,
		WorkflowInstanceID: p.WorkflowInstanceID, WorkflowStepID: p.WorkflowStepID, Metadata: meta,
		RunAt: p.RunAt, DelayMillis: p.Delay.Milliseconds(), Retry: store.EncodeRetryPolicy(p.Retry)}, nil
}
