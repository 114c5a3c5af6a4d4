package recovery

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"

	"github.com/revenant-go/revenant/bus"
	"github.com/revenant-go/revenant/internal/dbx"
	"github.com/revenant-go/revenant/internal/store"
)

// Defaults.
const (
	// StaleAfterDefault: an episode whose owner is not a known node is
	// orphaned after this long without journal activity (Cyclium's rule).
	StaleAfterDefault = 2 * time.Minute
	// BatchSizeDefault is how many orphans one statement claims.
	BatchSizeDefault = 5000
	// DryRunLimitDefault bounds the plans a dry run reports.
	DryRunLimitDefault = 10_000
	// maxBatchSize bounds Options.BatchSize (one statement's arrays).
	maxBatchSize = 100_000
)

// Why an episode is orphaned.
const (
	ReasonOwnerStopped  = store.ReasonOwnerStopped
	ReasonOwnerLockGone = store.ReasonOwnerLockGone
	ReasonOwnerExpired  = store.ReasonOwnerExpired
	ReasonNoActivity    = store.ReasonNoActivity
)

// Action is what recovery does (or would do) with one orphan.
type Action string

// The actions.
const (
	// ActionRestart puts the orphan back to pending.
	ActionRestart Action = store.ActionRestart
	// ActionFail fails it with error class "orphaned".
	ActionFail Action = store.ActionFail
	// ActionDeadLetter fails it with "max_attempts_exceeded" (a restart
	// past its max attempts).
	ActionDeadLetter Action = store.ActionDeadLetter
	// ActionSkip leaves it untouched (its policy could not be resolved or
	// is unstated with DefaultPolicy Skip, or its counters are at their
	// maximum).
	ActionSkip Action = "skip"
)

// Options configures Sweep. A nil *Options is valid.
type Options struct {
	// Node supplies defaults: Stack, Env and Registry. Usually the runner.
	Node Node
	// Stack scopes the sweep to episodes of this source stack, plus those
	// with no stack. Defaults to Node.Stack(). With no node and no stack,
	// only episodes with no stack are swept. AllStacks sweeps every stack.
	Stack     string
	AllStacks bool
	// Env scopes the sweep to episodes of exactly this source env (no env
	// matches only no env). Defaults to Node.Env(). AllEnvs sweeps every env.
	Env     string
	AllEnvs bool
	// ResolvePolicy, when set, decides each orphan's policy and wins over
	// everything else. It is called while the batch's transaction is open;
	// on SQLite that transaction holds the file's write lock, so the
	// callback must not write to the database itself.
	ResolvePolicy ResolvePolicyFunc
	// Registry gives registered actors' policies. Defaults to Node.
	Registry PolicySource
	// DefaultPolicy applies to orphans whose policy no source states: not
	// registered here, not published by their dead owner, no enabled
	// actor definition. Defaults to Fail (Cyclium's rule); Restart, or
	// Skip, which leaves them running and reports each in Result.Errors
	// (ErrNoPolicy).
	DefaultPolicy Policy
	// StaleAfter applies to episodes whose owner is not a known node.
	// Steps bump an episode's activity time at most once a second, so keep
	// it well above the longest step plus a second. Defaults to
	// StaleAfterDefault.
	StaleAfter time.Duration
	// BatchSize is how many orphans one statement claims. Defaults to
	// BatchSizeDefault.
	BatchSize int
	// DryRun reports what would happen to each orphan, and why, changing
	// nothing. Plans are capped at DryRunLimitDefault.
	DryRun bool
	// OnEvent is called after each committed recovery, once per episode.
	// Defaults to none.
	OnEvent func(ctx context.Context, ev Event)
	// Bus, when set, receives episode.recovered, episode.failed and
	// episode.dead_lettered events, written in the same transaction as the
	// batch that recovers the episodes. Defaults to none.
	Bus bus.Publisher
	// Logger receives one line per pass and one per problem. Defaults to
	// discarding.
	Logger *slog.Logger
}

// Event is a lifecycle event emitted by recovery.
type Event struct {
	Type               string // EventRecovered, EventFailed or EventDeadLettered
	EpisodeID          uuid.UUID
	ActorID            string
	ErrorClass         string // "orphaned" or "max_attempts_exceeded" on failures
	Reason             string // why it was orphaned
	PreviousOwner      string
	WorkflowInstanceID uuid.UUID
	WorkflowStepID     string
}

// Event types.
const (
	EventRecovered    = bus.EpisodeRecovered
	EventFailed       = bus.EpisodeFailed
	EventDeadLettered = bus.EpisodeDeadLettered
)

// EpisodeError reports an orphan left untouched.
type EpisodeError struct {
	EpisodeID uuid.UUID
	ActorID   string
	Err       error
}

func (e EpisodeError) Error() string {
	return fmt.Sprintf("episode %s (actor %q): %v", e.EpisodeID, e.ActorID, e.Err)
}

// Plan is a dry run's verdict on one orphan.
type Plan struct {
	EpisodeID     uuid.UUID
	ActorID       string
	Expectation   string
	PreviousOwner string // the dead node that owned it
	Reason        string // why it is orphaned: the detection rule (Reason… constants)
	Policy        Policy
	PolicySource  string // Source… constants
	Action        Action
	Attempts      int
	MaxAttempts   int
	Err           error // why it would be skipped
}

// Result is what a sweep did.
type Result struct {
	// Restarted went back to pending; Failed got error class "orphaned";
	// DeadLettered had reached max attempts and got "max_attempts_exceeded".
	Restarted, Failed, DeadLettered int
	// Skipped orphans were left untouched (their policy could not be
	// resolved); Errors says why, per episode.
	Skipped int
	Errors  []EpisodeError
	// DeadNodes are the nodes this sweep found dead and marked stopped (a
	// dry run lists those it would mark).
	DeadNodes []string
	// Plans is filled by a dry run only.
	Plans []Plan
	// Duration of the pass.
	Duration time.Duration
}

type config struct {
	Options
	st store.Store
}

func (o *Options) withDefaults() (*config, error) {
	c := &config{}
	if o != nil {
		c.Options = *o
	}
	if c.StaleAfter == 0 {
		c.StaleAfter = StaleAfterDefault
	}
	if c.BatchSize == 0 {
		c.BatchSize = BatchSizeDefault
	}
	switch c.DefaultPolicy {
	case "":
		c.DefaultPolicy = Fail
	case Restart, Fail, Skip:
	default:
		return nil, fmt.Errorf("%w: recovery Options.DefaultPolicy is %q; use recovery.Fail (the default), recovery.Restart or recovery.Skip", dbx.ErrInvalidInput, c.DefaultPolicy)
	}
	// StaleAfter is compared with the database clock in milliseconds.
	if err := dbx.CheckDuration("recovery Options.StaleAfter", c.StaleAfter, time.Millisecond, 365*24*time.Hour, StaleAfterDefault); err != nil {
		return nil, err
	}
	if c.BatchSize < 0 || c.BatchSize > maxBatchSize {
		return nil, fmt.Errorf("%w: recovery Options.BatchSize is %d; use 1..%d, or 0 for the default (%d)", dbx.ErrInvalidInput, c.BatchSize, maxBatchSize, BatchSizeDefault)
	}
	if err := dbx.CheckName("recovery Options.Stack", c.Stack, false); err != nil {
		return nil, err
	}
	if err := dbx.CheckName("recovery Options.Env", c.Env, false); err != nil {
		return nil, err
	}
	if c.Logger == nil {
		c.Logger = dbx.DiscardLogger()
	}
	if c.Node != nil {
		if c.Stack == "" {
			c.Stack = c.Node.Stack()
		}
		if c.Env == "" {
			c.Env = c.Node.Env()
		}
		if c.Registry == nil {
			c.Registry = c.Node
		}
	}
	return c, nil
}

func (c *config) scope() store.Scope {
	return store.Scope{Stack: c.Stack, AllStacks: c.AllStacks, Env: c.Env, AllEnvs: c.AllEnvs}
}

// orphans selects the orphans in the sweep's scope.
func (c *config) orphans() *store.OrphanQuery {
	return &store.OrphanQuery{StaleAfter: c.StaleAfter, Scope: c.scope()}
}

// conn is what a sweep runs on: the pool, or the Sweeper's reserved
// connection (*sql.Conn).
type conn interface {
	dbx.Executor
	BeginTx(ctx context.Context, opts *sql.TxOptions) (*sql.Tx, error)
}

// ErrNilDB is returned for a nil database handle.
var ErrNilDB = dbx.ErrNilDB
