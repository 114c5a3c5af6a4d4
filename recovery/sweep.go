package recovery

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"

	"github.com/revenant-go/revenant"
	"github.com/revenant-go/revenant/bus"
	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/internal/dbx"
	"github.com/revenant-go/revenant/internal/dialect"
	"github.com/revenant-go/revenant/internal/safe"
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
	ReasonOwnerStopped  = "owner_stopped"
	ReasonOwnerLockGone = "owner_lock_released"
	ReasonOwnerExpired  = "owner_ttl_expired"
	ReasonNoActivity    = "no_activity"
)

// NotifyChannel is the LISTEN/NOTIFY channel on which pending work is
// announced (payload: actor id).
const NotifyChannel = "revenant_pending"

// Action is what recovery does (or would do) with one orphan.
type Action string

// The actions.
const (
	// ActionRestart puts the orphan back to pending.
	ActionRestart Action = "restart"
	// ActionFail fails it with error class "orphaned".
	ActionFail Action = "fail"
	// ActionDeadLetter fails it with "max_attempts_exceeded" (a restart
	// past its max attempts).
	ActionDeadLetter Action = "dead_letter"
	// ActionSkip leaves it untouched (its policy could not be resolved, or
	// its counters are at their maximum).
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
	// StaleAfter applies to episodes whose owner is not a known node.
	// Defaults to StaleAfterDefault.
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
	EpisodeID    uuid.UUID
	ActorID      string
	Expectation  string
	Reason       string // why it is orphaned (Reason… constants)
	Policy       Policy
	PolicySource string // Source… constants
	Action       Action
	Attempts     int
	MaxAttempts  int
	Err          error // why it would be skipped
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
	// DeadNodes are the nodes this sweep found dead and marked stopped.
	DeadNodes []string
	// Plans is filled by a dry run only.
	Plans []Plan
	// Duration of the pass.
	Duration time.Duration
}

type config struct {
	Options
	sqlite bool // see sqlite.go
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
	// StaleAfter is compared with the database clock in milliseconds.
	if err := dbx.CheckDuration("recovery Options.StaleAfter", c.StaleAfter, time.Millisecond, 365*24*time.Hour, StaleAfterDefault); err != nil {
		return nil, err
	}
	if c.BatchSize < 0 || c.BatchSize > maxBatchSize {
		return nil, fmt.Errorf("%w: recovery Options.BatchSize is %d; use 1..%d, or 0 for the default (%d)", revenant.ErrInvalidInput, c.BatchSize, maxBatchSize, BatchSizeDefault)
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

// scope returns the stack/env filter on episodes e, numbered from firstArg.
func (c *config) scope(firstArg int) (string, []any) {
	return Scope{Stack: c.Stack, AllStacks: c.AllStacks, Env: c.Env, AllEnvs: c.AllEnvs}.Where("e", firstArg)
}

// conn is what a sweep runs on: the pool, or the Sweeper's reserved
// connection (*sql.Conn).
type conn interface {
	revenant.Executor
	BeginTx(ctx context.Context, opts *sql.TxOptions) (*sql.Tx, error)
}

// ErrNilDB is returned for a nil database handle.
var ErrNilDB = fmt.Errorf("%w: db is nil; pass the *sqlx.DB your application opened (wrap a *sql.DB with revenant.WrapDB)", revenant.ErrInvalidInput)

// Sweep finds orphaned running episodes in scope and restarts or fails each
// by its actor's policy. It is safe to run from any number of nodes at once:
// each orphan is claimed by exactly one sweep. A failing pass leaves
// episodes as they were (each batch is one statement or one transaction).
func Sweep(ctx context.Context, db *sqlx.DB, opts *Options) (*Result, error) {
	if db == nil {
		return nil, ErrNilDB
	}
	c, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	c.sqlite = dialect.Of(db) == dialect.SQLite
	return sweep(ctx, db, c)
}

func sweep(ctx context.Context, db conn, c *config) (*Result, error) {
	var err error
	start := time.Now()
	res := &Result{}
	switch {
	case c.DryRun:
		err = dryRun(ctx, db, c, res)
	case c.ResolvePolicy != nil:
		err = sweepWithCallback(ctx, db, c, res)
	case c.sqlite:
		err = sweepSQLiteByOwner(ctx, db, c, res)
	default:
		err = sweepByPairs(ctx, db, c, res)
	}
	if err != nil {
		return res, dbx.Explain(err)
	}
	if err := reportExhausted(ctx, db, c, res); err != nil {
		return res, err
	}
	if !c.DryRun {
		if err := markDeadNodes(ctx, db, c, res); err != nil {
			return res, dbx.Explain(err)
		}
	}
	res.Duration = time.Since(start)
	level := slog.LevelDebug
	if res.Restarted+res.Failed+res.DeadLettered+res.Skipped > 0 {
		level = slog.LevelInfo
	}
	c.Logger.Log(ctx, level, "revenant: sweep",
		slog.Int("restarted", res.Restarted), slog.Int("failed", res.Failed),
		slog.Int("dead_lettered", res.DeadLettered), slog.Int("skipped", res.Skipped),
		slog.Any("dead_nodes", res.DeadNodes), slog.Bool("dry_run", c.DryRun), slog.Duration("took", res.Duration))
	return res, nil
}

// sweepByPairs resolves policies per (actor, expectation) up front, then
// claims and recovers each batch in a single statement.
func sweepByPairs(ctx context.Context, db conn, c *config, res *Result) error {
	scope, scopeArgs := c.scope(2)
	rows, err := db.QueryContext(ctx, pairsSQL(scope), append([]any{c.StaleAfter.Milliseconds()}, scopeArgs...)...)
	if err != nil {
		return fmt.Errorf("sweep: finding orphans: %w", err)
	}
	var pairs []pairCount
	for rows.Next() {
		var p pairCount
		if err := rows.Scan(&p.actor, &p.expectation, &p.n); err != nil {
			rows.Close()
			return fmt.Errorf("sweep: finding orphans: %w", err)
		}
		pairs = append(pairs, p)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("sweep: finding orphans: %w", err)
	}
	ok, err := resolvePairs(ctx, db, c, pairs, res)
	if err != nil || len(ok) == 0 {
		return err
	}
	var pa, pe, pp, ps []string
	for _, p := range ok {
		pa, pe, pp, ps = append(pa, p.actor), append(pe, p.expectation), append(pp, string(p.policy)), append(ps, p.source)
	}
	query := batchByPairSQL(scope, 2+len(scopeArgs))
	args := append([]any{c.StaleAfter.Milliseconds()}, scopeArgs...)
	args = append(args, pq.Array(pa), pq.Array(pe), pq.Array(pp), pq.Array(ps), c.BatchSize)
	for {
		n, err := batchInTx(ctx, db, c, res, query, args...)
		if err != nil {
			return err
		}
		if n < c.BatchSize {
			return nil
		}
	}
}

// pairCount is an (actor, expectation) pair of orphans and how many.
type pairCount struct {
	pairKey
	n int
}

// resolvedPair is a pair whose policy resolved.
type resolvedPair struct {
	pairKey
	policy Policy
	source string
}

// resolvePairs resolves each pair's policy (registry, then the database's
// agent definitions, then Fail). Pairs with a malformed policy are logged,
// left untouched and reported in res; the others are returned.
func resolvePairs(ctx context.Context, db conn, c *config, pairs []pairCount, res *Result) ([]resolvedPair, error) {
	if len(pairs) == 0 {
		return nil, nil
	}
	var actors []string
	seen := map[string]bool{}
	for _, p := range pairs {
		if !seen[p.actor] {
			seen[p.actor] = true
			actors = append(actors, p.actor)
		}
	}
	defs, err := loadDefinitions(ctx, db, c.sqlite, actors)
	if err != nil {
		return nil, fmt.Errorf("sweep: %w", err)
	}
	r := &resolver{registry: c.Registry, defs: defs}
	var out []resolvedPair
	badErr := map[pairKey]error{}
	for _, p := range pairs {
		v := r.resolve(p.actor, p.expectation)
		if v.err != nil {
			badErr[p.pairKey] = v.err
			c.Logger.ErrorContext(ctx, "revenant: sweep leaves orphans untouched: malformed recovery policy",
				slog.String("actor", p.actor), slog.String("expectation", p.expectation), slog.Int("episodes", p.n), slog.Any("error", v.err))
			continue
		}
		out = append(out, resolvedPair{pairKey: p.pairKey, policy: v.policy, source: v.source})
	}
	if len(badErr) > 0 {
		if err := reportUntouched(ctx, db, c, badErr, res); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// reportUntouched lists the orphans whose policy could not be resolved.
func reportUntouched(ctx context.Context, db conn, c *config, why map[pairKey]error, res *Result) error {
	eps, _, err := listOrphansByID(ctx, db, c)
	if err != nil {
		return err
	}
	for _, ep := range eps {
		k := pairKey{ep.ActorID, ep.Expectation}
		if e, ok := why[k]; ok {
			res.Skipped++
			res.Errors = append(res.Errors, EpisodeError{EpisodeID: ep.ID, ActorID: ep.ActorID, Err: e})
		}
	}
	return nil
}

// listOrphansByID reads up to DryRunLimitDefault orphans in scope, in id
// order, without locking or changing them (dry runs and reports).
func listOrphansByID(ctx context.Context, db conn, c *config) ([]*episodes.Episode, []string, error) {
	scope, scopeArgs := c.scope(2)
	args := append([]any{c.StaleAfter.Milliseconds()}, scopeArgs...)
	query := listOrphansSQL(scope, len(args)+1)
	if c.sqlite {
		args = append(args, "[]")
		query = sqliteListOrphansSQL(scope, len(args), true)
	}
	args = append(args, DryRunLimitDefault)
	return listOrphans(ctx, db, query, args...)
}

func listOrphans(ctx context.Context, ex revenant.Executor, query string, args ...any) ([]*episodes.Episode, []string, error) {
	rows, err := ex.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, nil, fmt.Errorf("sweep: listing orphans: %w", err)
	}
	defer rows.Close()
	var eps []*episodes.Episode
	var reasons []string
	for rows.Next() {
		var reason string
		ep, err := store.ScanEpisode(rows, &reason)
		if err != nil {
			return nil, nil, fmt.Errorf("sweep: listing orphans: %w", err)
		}
		eps = append(eps, (*episodes.Episode)(ep))
		reasons = append(reasons, reason)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("sweep: listing orphans: %w", err)
	}
	return eps, reasons, nil
}

// applyBatch runs a statement that returns applied rows, counts them,
// wakes runners and returns the rows' events (published by the caller).
func applyBatch(ctx context.Context, ex revenant.Executor, c *config, res *Result, query string, args ...any) (int, []Event, error) {
	rows, err := ex.QueryContext(ctx, query, args...)
	if err != nil {
		return 0, nil, fmt.Errorf("sweep: recovering a batch: %w", err)
	}
	var events []Event
	restartedActors := map[string]bool{}
	n := 0
	for rows.Next() {
		var (
			ev                     Event
			action, policy, source string
			wf                     uuid.NullUUID
			attempts               int
		)
		if err := rows.Scan(&ev.EpisodeID, &ev.ActorID, &action, &ev.Reason, &policy, &source, &ev.PreviousOwner,
			&wf, &ev.WorkflowStepID, &attempts); err != nil {
			rows.Close()
			return n, nil, fmt.Errorf("sweep: reading recovered rows: %w", err)
		}
		n++
		if wf.Valid {
			ev.WorkflowInstanceID = wf.UUID
		}
		switch Action(action) {
		case ActionRestart:
			res.Restarted++
			ev.Type = EventRecovered
			restartedActors[ev.ActorID] = true
		case ActionDeadLetter:
			res.DeadLettered++
			ev.Type, ev.ErrorClass = EventDeadLettered, "max_attempts_exceeded"
			c.Logger.WarnContext(ctx, "revenant: episode dead-lettered after max attempts",
				slog.String("episode", ev.EpisodeID.String()), slog.String("actor", ev.ActorID), slog.Int("attempts", attempts))
		default:
			res.Failed++
			ev.Type, ev.ErrorClass = EventFailed, "orphaned"
		}
		events = append(events, ev)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return n, nil, fmt.Errorf("sweep: recovering a batch: %w", err)
	}
	if len(restartedActors) > 0 {
		actors := make([]string, 0, len(restartedActors))
		for a := range restartedActors {
			actors = append(actors, a)
		}
		sort.Strings(actors)
		// Wake runners; if this fails they still find the work by polling.
		if _, err := ex.ExecContext(ctx, notifySQL, NotifyChannel, pq.Array(actors)); err != nil {
			c.Logger.WarnContext(ctx, "revenant: notifying runners failed; they will poll", slog.Any("error", err))
		}
	}
	if c.Bus != nil && bus.Transactional(c.Bus) && len(events) > 0 {
		if err := c.Bus.PublishTx(ctx, ex, busEvents(events)...); err != nil {
			return n, nil, fmt.Errorf("sweep: publishing events: %w", err)
		}
	}
	return n, events, nil
}

// emit runs after commit: it publishes to a non-transactional bus and calls
// OnEvent.
func (c *config) emit(ctx context.Context, events []Event) {
	if c.Bus != nil && !bus.Transactional(c.Bus) && len(events) > 0 {
		if err := c.Bus.Publish(ctx, busEvents(events)...); err != nil {
			c.Logger.WarnContext(ctx, "revenant: publishing recovery events failed", slog.Any("error", err))
		}
	}
	if c.OnEvent == nil {
		return
	}
	for _, ev := range events {
		// The recovery is committed; a panicking hook must not undo the
		// pass's bookkeeping or take the Sweeper down.
		var pe *safe.PanicError
		if err := safe.Call(func() error { c.OnEvent(ctx, ev); return nil }); errors.As(err, &pe) {
			c.Logger.ErrorContext(ctx, "revenant: OnEvent panicked", slog.String("episode", ev.EpisodeID.String()),
				slog.Any("panic", pe.Value), slog.String("stack", pe.Stack))
		}
	}
}

func busEvents(events []Event) []bus.Event {
	out := make([]bus.Event, len(events))
	for i, ev := range events {
		status := string(episodes.StatusFailed)
		if ev.Type == EventRecovered {
			status = string(episodes.StatusPending)
		}
		out[i] = bus.Event{Type: ev.Type, EpisodeID: ev.EpisodeID, ActorID: ev.ActorID, WorkflowInstanceID: ev.WorkflowInstanceID,
			WorkflowStepID: ev.WorkflowStepID, Status: status, ErrorClass: ev.ErrorClass}
	}
	return out
}

// batchInTx runs one by-pairs batch; with a bus, the batch and its events
// commit together.
func batchInTx(ctx context.Context, db conn, c *config, res *Result, query string, args ...any) (int, error) {
	if c.Bus == nil || !bus.Transactional(c.Bus) {
		n, events, err := applyBatch(ctx, db, c, res, query, args...)
		if err == nil {
			c.emit(ctx, events)
		}
		return n, err
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("sweep: beginning batch: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	before := *res
	n, events, err := applyBatch(ctx, tx, c, res, query, args...)
	if err == nil {
		err = tx.Commit()
	}
	if err != nil {
		*res = before
		return 0, err
	}
	c.emit(ctx, events)
	return n, nil
}

// callback asks ResolvePolicy, refusing values other than Restart or Fail.
// A panic in it is that episode's error: the episode is left untouched and
// reported, and the sweep goes on.
func (c *config) callback(ctx context.Context, ep *episodes.Episode) (Policy, error) {
	var p Policy
	err := safe.Call(func() error {
		var err error
		p, err = c.ResolvePolicy(ctx, ep)
		return err
	})
	var pe *safe.PanicError
	if errors.As(err, &pe) {
		c.Logger.ErrorContext(ctx, "revenant: ResolvePolicy panicked", slog.String("episode", ep.ID.String()),
			slog.Any("panic", pe.Value), slog.String("stack", pe.Stack))
		err = fmt.Errorf("%w: ResolvePolicy panicked: %v", ErrBadPolicy, pe.Value)
	}
	if err == nil && !p.Valid() {
		err = fmt.Errorf("%w: ResolvePolicy returned %q", ErrBadPolicy, p)
	}
	return p, err
}

// decision is the callback's verdict on one listed orphan.
type decision struct {
	ep     *episodes.Episode
	policy Policy
	reason string
}

// decide asks ResolvePolicy about each listed orphan. Every listed id goes
// into decided, which later batches of the pass leave out; refusals are
// counted, reported and logged, and left untouched.
func (c *config) decide(ctx context.Context, eps []*episodes.Episode, reasons []string, res *Result, decided *[]string) []decision {
	var out []decision
	for i, ep := range eps {
		*decided = append(*decided, ep.ID.String())
		p, err := c.callback(ctx, ep)
		if err != nil {
			res.Skipped++
			res.Errors = append(res.Errors, EpisodeError{EpisodeID: ep.ID, ActorID: ep.ActorID, Err: err})
			c.Logger.ErrorContext(ctx, "revenant: sweep leaves orphan untouched", slog.String("episode", ep.ID.String()), slog.Any("error", err))
			continue
		}
		out = append(out, decision{ep: ep, policy: p, reason: reasons[i]})
	}
	return out
}

// sweepWithCallback locks each batch in a transaction, asks the callback
// per episode, and applies the decisions before committing. If the sweeper
// dies mid-batch, the transaction rolls back and nothing changed.
func sweepWithCallback(ctx context.Context, db conn, c *config, res *Result) error {
	batch := callbackBatch
	if c.sqlite {
		batch = sqliteCallbackBatch
	}
	decided := []string{}
	for {
		n, err := batch(ctx, db, c, res, &decided)
		if err != nil {
			return err
		}
		if n < c.BatchSize {
			return nil
		}
	}
}

func callbackBatch(ctx context.Context, db conn, c *config, res *Result, decided *[]string) (int, error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("sweep: beginning batch: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	scope, scopeArgs := c.scope(2)
	args := append([]any{c.StaleAfter.Milliseconds()}, scopeArgs...)
	args = append(args, pq.Array(*decided), c.BatchSize)
	eps, reasons, err := listOrphans(ctx, tx, lockBatchSQL(scope, len(args)-1), args...)
	if err != nil {
		return 0, err
	}
	var ids, policies, sources, why []string
	for _, d := range c.decide(ctx, eps, reasons, res, decided) {
		ids, policies, sources, why = append(ids, d.ep.ID.String()), append(policies, string(d.policy)), append(sources, SourceCallback), append(why, d.reason)
	}
	var events []Event
	before := *res
	if len(ids) > 0 {
		if _, events, err = applyBatch(ctx, tx, c, res, applyDecidedSQL, pq.Array(ids), pq.Array(policies), pq.Array(sources), pq.Array(why)); err != nil {
			*res = before
			return 0, err
		}
	}
	if err := tx.Commit(); err != nil {
		*res = before
		return 0, fmt.Errorf("sweep: committing batch: %w", err)
	}
	c.emit(ctx, events) // after commit
	return len(eps), nil
}

func dryRun(ctx context.Context, db conn, c *config, res *Result) error {
	eps, reasons, err := listOrphansByID(ctx, db, c)
	if err != nil {
		return err
	}
	actors := []string{}
	for _, ep := range eps {
		actors = append(actors, ep.ActorID)
	}
	defs, err := loadDefinitions(ctx, db, c.sqlite, actors)
	if err != nil {
		return fmt.Errorf("sweep: %w", err)
	}
	r := &resolver{registry: c.Registry, defs: defs}
	for i, ep := range eps {
		pl := Plan{EpisodeID: ep.ID, ActorID: ep.ActorID, Expectation: ep.Expectation, Reason: reasons[i],
			Attempts: ep.Attempts, MaxAttempts: ep.MaxAttempts}
		var v resolved
		if c.ResolvePolicy != nil {
			p, err := c.callback(ctx, ep)
			v = resolved{policy: p, source: SourceCallback, err: err}
		} else {
			v = r.resolve(ep.ActorID, ep.Expectation)
		}
		pl.Policy, pl.PolicySource, pl.Err = v.policy, v.source, v.err
		switch {
		case v.err != nil:
			pl.Action = ActionSkip
			res.Skipped++
			res.Errors = append(res.Errors, EpisodeError{EpisodeID: ep.ID, ActorID: ep.ActorID, Err: v.err})
		case v.policy == Restart && ep.Attempts < ep.MaxAttempts:
			pl.Action = ActionRestart
			res.Restarted++
		case v.policy == Restart:
			pl.Action = ActionDeadLetter
			res.DeadLettered++
		default:
			pl.Action = ActionFail
			res.Failed++
		}
		res.Plans = append(res.Plans, pl)
	}
	return nil
}
