package runner

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sort"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"

	"github.com/revenant-go/revenant"
	"github.com/revenant-go/revenant/bus"
	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/internal/dbx"
	"github.com/revenant-go/revenant/internal/store"
	"github.com/revenant-go/revenant/internal/store/backend"
	"github.com/revenant-go/revenant/journal"
	"github.com/revenant-go/revenant/recovery"
)

// controlChannel carries "cancel:<episode id>" notifications between nodes.
const controlChannel = "revenant_control"

// Why a run's context was canceled.
var (
	ErrStopping      = errors.New("revenant: runner stopping")
	ErrLeaseLost     = revenant.ErrLeaseLost
	ErrCanceled      = errors.New("revenant: episode canceled")
	ErrIdentityLost  = errors.New("revenant: node was declared dead; re-registered under a new id")
	ErrAlreadyExists = errors.New("revenant: actor already registered")
)

// Runner is one node: it registers itself, keeps its liveness, claims
// pending episodes of the actors registered on it, and runs them.
type Runner struct {
	db     *sqlx.DB
	st     store.Store
	config *Config
	store  *episodes.Store
	logger *slog.Logger

	mu      sync.Mutex
	actors  map[string]*Actor
	active  map[uuid.UUID]*activeRun
	perActr map[string]int
	started bool
	stopped bool
	nodeID  string
	// unregistered: nodeID has no node row yet (a re-registration failed).
	// The node claims nothing until the heartbeat registers it: episodes
	// claimed under an id no row names would be out of every sweep's
	// reach but the slow StaleAfter fallback.
	unregistered bool

	// livenessMu serialises use of lockConn: a *sql.Conn carries one
	// statement at a time (lib/pq breaks the connection otherwise).
	livenessMu sync.Mutex
	lockConn   *dbx.Reserved
	lockKey    int64

	// lifecycle serialises Start and Stop.
	lifecycle sync.Mutex
	// claiming counts claims under way: a claimed episode is running in
	// the database before the node tracks it in active.
	claiming int

	wake     chan struct{}
	stopCh   chan struct{}
	runCtx   context.Context
	stopRuns context.CancelCauseFunc
	loops    sync.WaitGroup
	runs     sync.WaitGroup
	listener store.Listener
}

type activeRun struct {
	ep     *episodes.Episode
	cancel context.CancelCauseFunc
}

// New returns a Runner on db (never closed by revenant). Register actors,
// then Start it.
func New(db *sqlx.DB, config *Config) (*Runner, error) {
	if db == nil {
		return nil, fmt.Errorf("%w: runner.New: db is nil; pass the *sqlx.DB your application opened (wrap a *sql.DB with revenant.WrapDB)", revenant.ErrInvalidInput)
	}
	cfg := config.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	st := backend.For(db)
	if !st.Capabilities().Notify && cfg.ListenDSN != "" {
		return nil, fmt.Errorf("%w: runner Config.ListenDSN is set but the database is SQLite, which has no LISTEN/NOTIFY; leave it empty (runners poll every PollInterval)", revenant.ErrInvalidInput)
	}
	if cfg.ListenDSN != "" {
		if err := st.CheckListenDSN("runner Config.ListenDSN", cfg.ListenDSN); err != nil {
			return nil, err
		}
	}
	store, err := episodes.New(db, &episodes.Config{Stack: cfg.Stack, Env: cfg.Env, Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	r := &Runner{
		db: db, st: st, config: cfg, store: store, logger: cfg.Logger,
		actors: map[string]*Actor{}, active: map[uuid.UUID]*activeRun{}, perActr: map[string]int{},
		wake: make(chan struct{}, 1), stopCh: make(chan struct{}),
	}
	r.nodeID = newNodeID(cfg.Name)
	return r, nil
}

func newNodeID(name string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return name + "-" + hex.EncodeToString(b[:])
}

// Register adds an actor. Call it before Start; registering an id twice is
// an error.
func (r *Runner) Register(a Actor) error {
	if err := a.validate(); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.started {
		return fmt.Errorf("%w: register actor %q before Start", revenant.ErrInvalidInput, a.ID)
	}
	if _, ok := r.actors[a.ID]; ok {
		return fmt.Errorf("%w: %q", ErrAlreadyExists, a.ID)
	}
	r.actors[a.ID] = &a
	return nil
}

// NodeID is this process's node id (unique per start; changes if the node
// was declared dead and re-registered).
func (r *Runner) NodeID() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.nodeID
}

// Stack is the node's stack.
func (r *Runner) Stack() string { return r.config.Stack }

// Env is the node's env.
func (r *Runner) Env() string { return r.config.Env }

// Store is the episode store the runner uses (stamped with its stack/env).
func (r *Runner) Store() *episodes.Store { return r.store }

// RecoveryPolicy implements recovery.PolicySource: per expectation, then
// per actor.
func (r *Runner) RecoveryPolicy(actorID, expectation string) (recovery.Policy, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	a, ok := r.actors[actorID]
	if !ok {
		return "", false
	}
	if p, ok := a.ExpectationRecovery[expectation]; ok && expectation != "" {
		return p, true
	}
	return a.Recovery, true
}

var _ recovery.Node = (*Runner)(nil)

// Start registers the node (taking its session advisory lock first, so it
// is never seen alive without it) and starts the heartbeat, listener and
// claim loops. ctx bounds only the start-up itself.
func (r *Runner) Start(ctx context.Context) error {
	r.lifecycle.Lock()
	defer r.lifecycle.Unlock()
	r.mu.Lock()
	started, stopped := r.started, r.stopped
	r.mu.Unlock()
	switch {
	case stopped:
		return fmt.Errorf("%w: runner was stopped; create a new Runner to start again", revenant.ErrInvalidInput)
	case started:
		return fmt.Errorf("%w: runner already started", revenant.ErrInvalidInput)
	}
	// A failed start holds nothing (the lock connection goes back to the
	// pool) and may be retried.
	if err := r.register(ctx); err != nil {
		r.livenessMu.Lock()
		r.dropLockConn()
		r.livenessMu.Unlock()
		return err
	}
	r.mu.Lock()
	r.started = true
	r.mu.Unlock()
	r.runCtx, r.stopRuns = context.WithCancelCause(context.Background())
	if r.config.ListenDSN != "" {
		r.startListener(ctx)
	}
	r.loops.Add(2)
	go r.heartbeatLoop()
	go r.claimLoop()
	r.signal()
	r.logger.InfoContext(ctx, "revenant: node started", slog.String("node", r.NodeID()),
		slog.String("stack", r.config.Stack), slog.String("env", r.config.Env), slog.Bool("listen", r.listener != nil))
	return nil
}

func (r *Runner) actorIDs() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	ids := make([]string, 0, len(r.actors))
	for id := range r.actors {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

func (r *Runner) signal() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *Runner) cancelRun(id uuid.UUID, cause error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if a, ok := r.active[id]; ok {
		a.cancel(cause)
	}
}

// startRun runs a claimed episode unless the node changed identity since
// the claim (checked under the same lock reincarnate takes, so a run is
// either registered before reincarnate cancels runs, or not started).
func (r *Runner) startRun(a *Actor, ep *episodes.Episode, claimedAs string) bool {
	ctx, cancel := context.WithCancelCause(r.runCtx)
	r.mu.Lock()
	if r.nodeID != claimedAs {
		r.mu.Unlock()
		cancel(nil)
		return false
	}
	r.active[ep.ID] = &activeRun{ep: ep, cancel: cancel}
	r.perActr[a.ID]++
	r.mu.Unlock()
	r.runs.Add(1)
	go func() {
		defer r.runs.Done()
		defer func() {
			cancel(nil)
			r.mu.Lock()
			delete(r.active, ep.ID)
			r.perActr[a.ID]--
			r.mu.Unlock()
			r.signal()
		}()
		r.execute(ctx, a, ep)
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

func (r *Runner) execute(ctx context.Context, a *Actor, ep *episodes.Episode) {
	log := r.logger.With(slog.String("episode", ep.ID.String()), slog.String("actor", a.ID), slog.Int64("token", ep.ClaimToken))
	j, err := journal.Open(ctx, r.db, ep.ID, ep.ClaimToken, r.journalConfig())
	var result any
	if err == nil {
		result, err = safeRun(ctx, a, ep, j)
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
	case cause != nil && !errors.Is(cause, context.Canceled):
		// Lease lost, canceled, or identity lost: someone else owns the
		// outcome now; our writes would be refused anyway.
		log.Info("revenant: run stopped", slog.Any("cause", cause))
		return
	case errors.As(err, &pe):
		log.Error("revenant: episode panicked", slog.Any("panic", pe.value))
		ferr := r.fail(fctx, ep, "panic", map[string]string{
			"panic": dbx.CleanText(fmt.Sprint(pe.value), maxMessageBytes), "stack": dbx.CleanText(pe.stack, maxStackBytes)})
		r.logFinish(log, ferr)
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
		ferr := r.fail(fctx, ep, class, map[string]string{"message": dbx.CleanText(err.Error(), maxMessageBytes)})
		r.logFinish(log, ferr)
	default:
		ferr := r.finish(fctx, bus.EpisodeCompleted, func(tx revenant.Executor) (*episodes.Episode, error) {
			return r.store.CompleteTx(fctx, tx, ep.ID, ep.ClaimToken, result)
		})
		if errors.Is(ferr, revenant.ErrNotJSON) || errors.Is(ferr, revenant.ErrTooLarge) {
			ferr = r.fail(fctx, ep, "bad_result", map[string]string{"message": ferr.Error()})
		}
		r.logFinish(log, ferr)
	}
}

// journalConfig defaults the transactional-step idle timeout to the node
// TTL: by the time others may take the episode over, a paused holder's
// transaction is gone.
func (r *Runner) journalConfig() *journal.Config {
	c := journal.Config{}
	if r.config.Journal != nil {
		c = *r.config.Journal
	}
	if c.TxIdleTimeout == 0 {
		c.TxIdleTimeout = r.config.NodeTTL
	}
	return &c
}

func (r *Runner) fail(ctx context.Context, ep *episodes.Episode, class string, detail any) error {
	return r.finish(ctx, bus.EpisodeFailed, func(tx revenant.Executor) (*episodes.Episode, error) {
		return r.store.FailTx(ctx, tx, ep.ID, ep.ClaimToken, class, detail)
	})
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

// finish applies a terminal transition and, with a bus, publishes its event
// in the same transaction; transient database errors are retried.
func (r *Runner) finish(ctx context.Context, eventType string, move func(tx revenant.Executor) (*episodes.Episode, error)) error {
	return retryTransient(ctx, func() error { return r.finishOnce(ctx, eventType, move) })
}

func (r *Runner) finishOnce(ctx context.Context, eventType string, move func(tx revenant.Executor) (*episodes.Episode, error)) error {
	if r.config.Bus == nil {
		_, err := move(r.db)
		return err
	}
	var after []bus.Event
	err := r.inTx(ctx, func(tx *sqlx.Tx) error {
		ep, err := move(tx)
		if err != nil {
			return err
		}
		return r.publishTx(ctx, tx, &after, eventOf(eventType, ep))
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

// Enqueue creates a pending episode and wakes runners (on commit). A
// duplicate dedupe key returns the existing episode and wakes no one.
func (r *Runner) Enqueue(ctx context.Context, p episodes.CreateParams) (*episodes.CreateResult, error) {
	var res *episodes.CreateResult
	err := r.inTx(ctx, func(tx *sqlx.Tx) error {
		var err error
		res, err = r.EnqueueTx(ctx, tx, p)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("enqueue: %w", err)
	}
	if !res.Duplicate {
		r.signal() // this node need not wait for a notification or a poll
	}
	return res, nil
}

// EnqueueTx is Enqueue inside the caller's transaction: the episode exists,
// and runners are woken, only if it commits.
func (r *Runner) EnqueueTx(ctx context.Context, tx revenant.Executor, p episodes.CreateParams) (*episodes.CreateResult, error) {
	if p.MaxAttempts == 0 {
		r.mu.Lock()
		if a, ok := r.actors[p.ActorID]; ok {
			p.MaxAttempts = a.MaxAttempts
		}
		r.mu.Unlock()
	}
	res, err := r.store.CreateTx(ctx, tx, p)
	if err != nil {
		return nil, err
	}
	if !res.Duplicate {
		if err := r.st.Notify(ctx, tx, store.PendingChannel, p.ActorID); err != nil {
			return nil, fmt.Errorf("enqueue: notify: %w", err)
		}
	}
	return res, nil
}

// Cancel cancels an episode from any node: it becomes canceled at once
// (its holder is fenced off) and the holder's run context is canceled, at
// once where it listens for notifications, else at its next heartbeat.
func (r *Runner) Cancel(ctx context.Context, id uuid.UUID, reason string) (*episodes.Episode, error) {
	var ep *episodes.Episode
	var after []bus.Event
	err := r.inTx(ctx, func(tx *sqlx.Tx) error {
		var err error
		if ep, err = r.store.CancelTx(ctx, tx, id, reason); err != nil {
			return err
		}
		if err := r.publishTx(ctx, tx, &after, eventOf(bus.EpisodeCanceled, ep)); err != nil {
			return err
		}
		// Without notifications the holder finds the cancel at its next
		// heartbeat.
		return r.st.Notify(ctx, tx, controlChannel, "cancel:"+id.String())
	})
	if err != nil {
		return nil, err
	}
	r.publishAfter(ctx, after)
	r.cancelRun(id, ErrCanceled) // a local run stops at once
	return ep, nil
}

// Running is the number of episodes this node is running.
func (r *Runner) Running() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.active)
}

// Stop shuts the node down gracefully: it stops claiming, cancels its runs
// and hands their episodes back to pending at once (so no sweep has to find
// them), marks the node stopped and releases its lock. It is safe before
// Start (or after a failed Start), where it does nothing, and when called
// again.
func (r *Runner) Stop(ctx context.Context) error {
	r.lifecycle.Lock()
	defer r.lifecycle.Unlock()
	r.mu.Lock()
	if !r.started {
		r.mu.Unlock()
		return nil
	}
	if r.stopped {
		r.mu.Unlock()
		return nil
	}
	r.stopped = true
	r.mu.Unlock()

	close(r.stopCh)
	r.stopRuns(ErrStopping)
	r.loops.Wait()
	if r.listener != nil {
		r.listener.Close()
	}

	done := make(chan struct{})
	go func() { r.runs.Wait(); close(done) }()
	timeout := time.NewTimer(r.config.ShutdownTimeout)
	defer timeout.Stop()
	select {
	case <-done:
	case <-timeout.C:
	case <-ctx.Done():
	}
	// Runs that did not return in time: hand their episodes back anyway.
	r.mu.Lock()
	stuck := make([]*episodes.Episode, 0, len(r.active))
	for _, a := range r.active {
		stuck = append(stuck, a.ep)
	}
	r.mu.Unlock()
	var errs []error
	for _, ep := range stuck {
		if _, err := r.store.Release(ctx, ep.ID, ep.ClaimToken); err != nil && !errors.Is(err, ErrLeaseLost) && !errors.Is(err, episodes.ErrIllegalTransition) {
			errs = append(errs, err)
		}
	}
	// On the pool: the lock connection may have been lost to a heartbeat
	// canceled by this very Stop.
	if err := r.st.NodeStop(ctx, r.db, r.NodeID()); err != nil {
		errs = append(errs, fmt.Errorf("marking node stopped: %w", err))
	}
	r.livenessMu.Lock()
	defer r.livenessMu.Unlock()
	if r.lockConn != nil {
		if err := r.st.NodeUnlock(ctx, r.lockConn, r.lockKey); err != nil {
			r.dropLockConn()
		} else {
			r.lockConn.Release()
			r.lockConn = nil
		}
	}
	r.logger.InfoContext(ctx, "revenant: node stopped", slog.String("node", r.NodeID()), slog.Int("released_late", len(stuck)))
	return errors.Join(errs...)
}
