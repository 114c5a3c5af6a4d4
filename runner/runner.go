package runner

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"

	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/internal/dbx"
	"github.com/revenant-go/revenant/internal/store"
	"github.com/revenant-go/revenant/internal/store/backend"
	"github.com/revenant-go/revenant/recovery"
)

// controlChannel carries "cancel:<episode id>" notifications between nodes.
const controlChannel = "revenant_control"

// Why a run's context was canceled.
var (
	ErrStopping      = errors.New("revenant: runner stopping")
	ErrLeaseLost     = dbx.ErrLeaseLost
	ErrCanceled      = errors.New("revenant: episode canceled")
	ErrIdentityLost  = errors.New("revenant: node was declared dead; re-registered under a new id")
	ErrAlreadyExists = errors.New("revenant: actor already registered")
	// ErrUnknownActor: with Config.StrictActors, Enqueue named an actor
	// that no live node in the episode's scope has registered and that
	// has no definition.
	ErrUnknownActor = dbx.ErrUnknownActor
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
	// knownActors and warnedActors remember Enqueue's actor checks: an
	// actor once known is not asked about again; an unknown one is logged
	// once.
	knownActors, warnedActors map[store.ActorScope]bool
	started                   bool
	stopped                   bool
	nodeID                    string
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
	// dbIdleTimeout is the idle-in-transaction timeout, in milliseconds,
	// that the database gives new sessions (read when the node
	// registers); 0 when none.
	dbIdleTimeout atomic.Int64

	// lifecycle serialises Start and Stop.
	lifecycle sync.Mutex
	// claiming counts claims under way: a claimed episode is running in
	// the database before the node tracks it in active.
	claiming int

	wake chan struct{}
	// announceKick asks the announce loop for a NOTIFY (announce.go).
	announceKick chan struct{}
	stopCh       chan struct{} // ends the heartbeat, listener and announce loops
	// claimStop ends the claim loop (first, so that a draining node takes
	// no new work); claimDone closes when it has.
	claimStop, claimDone chan struct{}
	runCtx               context.Context
	stopRuns             context.CancelCauseFunc
	loops                sync.WaitGroup
	runs                 sync.WaitGroup
	listener             store.Listener
}

type activeRun struct {
	ep     *episodes.Episode
	cancel context.CancelCauseFunc
}

// New returns a Runner on db (never closed by revenant). Register actors,
// then Start it.
func New(db *sqlx.DB, config *Config) (*Runner, error) {
	if db == nil {
		return nil, fmt.Errorf("%w: runner.New: db is nil; pass the *sqlx.DB your application opened (wrap a *sql.DB with revenant.WrapDB)", dbx.ErrInvalidInput)
	}
	cfg := config.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	st := backend.For(db)
	if !st.Capabilities().Notify && cfg.ListenDSN != "" {
		return nil, fmt.Errorf("%w: runner Config.ListenDSN is set but the database is SQLite, which has no LISTEN/NOTIFY; leave it empty (runners poll every PollInterval)", dbx.ErrInvalidInput)
	}
	if cfg.ListenDSN != "" {
		if err := st.CheckListenDSN("runner Config.ListenDSN", cfg.ListenDSN); err != nil {
			return nil, err
		}
	}
	eps, err := episodes.New(db, &episodes.Config{Stack: cfg.Stack, Env: cfg.Env, Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	r := &Runner{
		db: db, st: st, config: cfg, store: eps, logger: cfg.Logger,
		actors: map[string]*Actor{}, active: map[uuid.UUID]*activeRun{}, perActr: map[string]int{},
		knownActors: map[store.ActorScope]bool{}, warnedActors: map[store.ActorScope]bool{},
		wake: make(chan struct{}, 1), announceKick: make(chan struct{}, 1), stopCh: make(chan struct{}),
		claimStop: make(chan struct{}), claimDone: make(chan struct{}),
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
		return fmt.Errorf("%w: register actor %q before Start", dbx.ErrInvalidInput, a.ID)
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
// per actor. ok is false for actors not registered here, or registered
// without a policy for the expectation.
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
	return a.Recovery, a.Recovery != ""
}

// publishedPolicies is what the node row states for its actors: those
// registered with a policy.
func (r *Runner) publishedPolicies() map[string]store.ActorPolicy {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]store.ActorPolicy{}
	for id, a := range r.actors {
		p := store.ActorPolicy{Recovery: string(a.Recovery)}
		for exp, ep := range a.ExpectationRecovery {
			if p.Expectations == nil {
				p.Expectations = map[string]string{}
			}
			p.Expectations[exp] = string(ep)
		}
		if p.Recovery != "" || p.Expectations != nil {
			out[id] = p
		}
	}
	return out
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
		return fmt.Errorf("%w: runner was stopped; create a new Runner to start again", dbx.ErrInvalidInput)
	case started:
		return fmt.Errorf("%w: runner already started", dbx.ErrInvalidInput)
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
	go r.announceLoop()
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

// cancelRunAt cancels the episode's run if it holds token.
func (r *Runner) cancelRunAt(id uuid.UUID, token int64, cause error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if a, ok := r.active[id]; ok && a.ep.ClaimToken == token {
		a.cancel(cause)
	}
}

// Running is the number of episodes this node is running.
func (r *Runner) Running() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.active)
}

// Stop shuts the node down gracefully: it stops claiming, lets the
// episodes it runs finish until ctx ends (the node stays alive meanwhile:
// its heartbeat keeps their leases), then cancels those still running and
// hands them back to pending at once (so no sweep has to find them), marks
// the node stopped and releases its lock. Give ctx a deadline shorter than
// the time your platform allows for shutdown (Kubernetes'
// terminationGracePeriodSeconds), or Stop waits as long as the runs take.
// It is safe before Start (or after a failed Start), where it does
// nothing, and when called again.
func (r *Runner) Stop(ctx context.Context) error { return r.stop(ctx, true) }

// StopAndCancel shuts the node down at once: it stops claiming, cancels
// its runs and hands their episodes back to pending, marks the node
// stopped and releases its lock. Canceled runs get up to
// Config.ShutdownTimeout to return.
func (r *Runner) StopAndCancel(ctx context.Context) error { return r.stop(ctx, false) }

func (r *Runner) stop(ctx context.Context, drain bool) error {
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

	close(r.claimStop)
	<-r.claimDone // a claim under way has started its runs
	done := make(chan struct{})
	go func() { r.runs.Wait(); close(done) }()
	if drain {
		r.logger.InfoContext(ctx, "revenant: node draining", slog.String("node", r.NodeID()), slog.Int("running", r.Running()))
		select {
		case <-done:
		case <-ctx.Done():
		}
	}
	close(r.stopCh)
	r.stopRuns(ErrStopping)
	r.loops.Wait()
	if r.listener != nil {
		r.listener.Close()
	}
	timeout := time.NewTimer(r.config.ShutdownTimeout)
	defer timeout.Stop()
	select {
	case <-done:
	case <-timeout.C:
	case <-ctx.Done():
	}
	// What follows runs even when ctx has ended: handing back and marking
	// the node stopped are what spare the fleet a sweep.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.config.ShutdownTimeout)
	defer cancel()
	r.announcePending() // events of runs that ended after the announce loop
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
