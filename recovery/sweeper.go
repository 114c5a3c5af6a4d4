package recovery

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/revenant-go/revenant/internal/dbx"
	"github.com/revenant-go/revenant/internal/safe"
	"github.com/revenant-go/revenant/internal/service"
	"github.com/revenant-go/revenant/internal/store"
	"github.com/revenant-go/revenant/internal/store/backend"
)

// Sweeper defaults.
const (
	SweepIntervalDefault        = 30 * time.Second
	FailureCheckIntervalDefault = 500 * time.Millisecond
	StatementTimeoutDefault     = 30 * time.Second
)

// SweeperConfig configures a Sweeper. A nil *SweeperConfig is valid.
type SweeperConfig struct {
	// Options are passed to every Sweep (scope, policies, hooks, logger).
	Options
	// Interval between full sweeps, with ±20% jitter so nodes do not sweep
	// in lockstep. Defaults to SweepIntervalDefault.
	Interval time.Duration
	// FailureCheckInterval is how often the Sweeper asks, with one cheap
	// query, whether a node died (its advisory lock vanished) while owning
	// running episodes; if so it sweeps at once. Negative disables it.
	// Defaults to FailureCheckIntervalDefault.
	FailureCheckInterval time.Duration
	// StatementTimeout bounds every statement of a pass, set on the
	// Sweeper's reserved connection. Defaults to StatementTimeoutDefault.
	StatementTimeout time.Duration
	// Workflows, when set, is reconciled after every full pass (same
	// scope), so instances that miss an event while the process runs are
	// repaired without waiting for a restart. Defaults to none.
	Workflows WorkflowReconciler
	// WatchDSN (Postgres, with Options.Node), when set, opens one
	// connection outside the pool that waits on a peer node's session
	// lock: the Sweeper sweeps the instant that node's session ends,
	// instead of at the next poll. Nodes watch each other in a ring, one
	// waiting connection each. While it watches (or finds no peer holding
	// a lock to watch), the failure check polls four times less often (it
	// still catches nodes whose heartbeat lapsed); while the watcher is
	// down, as usual. It may name the same
	// database as the pool, whatever the pool's driver (it uses lib/pq).
	// Defaults to none.
	WatchDSN string

	watchRefresh time.Duration
}

// Stats describes the Sweeper's health; alert when LastSuccess is old.
type Stats struct {
	Passes, Failures int
	LastSuccess      time.Time // zero until a pass succeeds
	LastResult       *Result
	LastError        error
	// Restarted, Failed, DeadLettered and Skipped are totals since Start.
	Restarted, Failed, DeadLettered, Skipped int
	// Unclaimable is pending work no live node has registered an actor
	// for, as of the last backlog check (after a full pass, every two
	// minutes at most; also logged as warnings).
	Unclaimable []Backlog
	// Exhausted lists open episodes (up to 100) whose claim token or
	// attempt count is at its maximum, so that no claim or sweep takes
	// them, as of the last backlog check (also logged as errors).
	Exhausted []EpisodeError
}

// Sweeper runs Sweep at start and then periodically, on a connection of
// its own, and at once when a node's death is detected.
type Sweeper struct {
	db     *sqlx.DB
	config *SweeperConfig
	opts   *config

	mu    sync.Mutex
	stats Stats

	// kick asks the loop for a pass now (the watcher saw a node die);
	// watching is true while the watcher waits on a peer.
	kick     chan struct{}
	watching atomic.Bool
	// soon carries SweepSoon's requests (a heartbeat saw a dead owner),
	// which are held back for a while after such a pass found nothing to
	// do: orphans no pass can act on (another scope's, exhausted ones)
	// must not cost a pass per heartbeat.
	soon chan struct{}

	// lastBacklog and lastPrune throttle the backlog report (loop only)
	// and the pruning of old node rows (under connMu) to every
	// reportEvery.
	lastBacklog, lastPrune time.Time

	// connMu serialises everything run on conn (the loop's passes and
	// checks, and callers of Pass): a connection carries one statement at
	// a time.
	connMu sync.Mutex
	conn   *dbx.Reserved

	lifecycle sync.Mutex // serialises Start and Stop
	stop      chan struct{}
	done      chan struct{}
	started   bool
}

// NewSweeper validates the configuration. Call Start to run it.
func NewSweeper(db *sqlx.DB, cfg *SweeperConfig) (*Sweeper, error) {
	if db == nil {
		return nil, ErrNilDB
	}
	c := SweeperConfig{}
	if cfg != nil {
		c = *cfg
	}
	if c.Interval == 0 {
		c.Interval = SweepIntervalDefault
	}
	if c.FailureCheckInterval == 0 {
		c.FailureCheckInterval = FailureCheckIntervalDefault
	}
	if c.StatementTimeout == 0 {
		c.StatementTimeout = StatementTimeoutDefault
	}
	if c.watchRefresh == 0 {
		c.watchRefresh = watchRefreshDefault
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	opts, err := c.withDefaults()
	if err != nil {
		return nil, err
	}
	opts.st = backend.For(db)
	if c.WatchDSN != "" {
		if err := opts.st.CheckListenDSN("recovery SweeperConfig.WatchDSN", c.WatchDSN); err != nil {
			return nil, err
		}
	}
	return &Sweeper{db: db, config: &c, opts: opts, stop: make(chan struct{}), done: make(chan struct{}),
		kick: make(chan struct{}, 1), soon: make(chan struct{}, 1)}, nil
}

// soonBackoff holds SweepSoon's requests back after one found nothing to
// do (the periodic pass and the watcher still run).
const soonBackoff = 30 * time.Second

// reportEvery is how often the Sweeper reports its backlog (unclaimable
// and exhausted episodes) and prunes old node rows, at most.
const reportEvery = 2 * time.Minute

// watchedCheckEvery: while the watcher watches, the failure check runs on
// one tick in this many.
const watchedCheckEvery = 4

// Bounds on SweeperConfig durations (see validate).
const (
	minSweepInterval = 10 * time.Millisecond
	maxSweepInterval = 24 * time.Hour
)

func (c *SweeperConfig) validate() error {
	if err := dbx.CheckDuration("SweeperConfig.Interval", c.Interval, minSweepInterval, maxSweepInterval, SweepIntervalDefault); err != nil {
		return err
	}
	if c.FailureCheckInterval > 0 {
		if err := dbx.CheckDuration("SweeperConfig.FailureCheckInterval", c.FailureCheckInterval, minSweepInterval, maxSweepInterval, FailureCheckIntervalDefault); err != nil {
			return fmt.Errorf("%w (or negative to disable it)", err)
		}
	}
	// Postgres takes whole milliseconds as a 32-bit integer: under 1 ms
	// would be 0, which turns the timeout off.
	return dbx.CheckDuration("SweeperConfig.StatementTimeout", c.StatementTimeout, time.Millisecond, dbx.MaxDBTimeout, StatementTimeoutDefault)
}

// Start reserves the Sweeper's connection (so a database that is down, a
// closed handle or a pool too small for it fails here, holding nothing,
// and Start may be called again), then runs the first pass at once (or,
// when a Pass called before Start succeeded, as the app's startup sweep,
// after one Interval) and keeps sweeping until Stop.
func (s *Sweeper) Start(ctx context.Context) error {
	s.lifecycle.Lock()
	defer s.lifecycle.Unlock()
	if s.started {
		return fmt.Errorf("%w: sweeper already started", dbx.ErrInvalidInput)
	}
	select {
	case <-s.stop:
		return fmt.Errorf("%w: sweeper was stopped; create a new Sweeper to start again", dbx.ErrInvalidInput)
	default:
	}
	s.connMu.Lock()
	_, err := s.reserved(ctx)
	s.connMu.Unlock()
	if err != nil {
		return fmt.Errorf("sweeper: %w", err)
	}
	s.started = true
	go s.loop()
	return nil
}

// Stop ends the loop and releases the reserved connection, waiting at most
// until ctx ends. It returns at once when the Sweeper was never started (or
// its Start failed), and is safe to call again.
func (s *Sweeper) Stop(ctx context.Context) error {
	s.lifecycle.Lock()
	defer s.lifecycle.Unlock()
	select {
	case <-s.stop:
		return nil
	default:
		close(s.stop)
	}
	release := func() {
		s.connMu.Lock()
		s.dropConn()
		s.connMu.Unlock()
	}
	if !s.started {
		release()
		return nil
	}
	return service.AwaitStop(ctx, "Sweeper", s.done, release)
}

// Stats returns a snapshot of the Sweeper's health.
func (s *Sweeper) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

func (s *Sweeper) jittered() time.Duration {
	d := s.config.Interval
	return d - d/5 + time.Duration(rand.Int64N(int64(d/5)*2+1)) //nolint:gosec // G404: jitter needs no cryptographic randomness
}

func (s *Sweeper) loop() {
	defer close(s.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { <-s.stop; cancel() }()

	// The first pass runs at once, unless a pass has just succeeded (an
	// app's startup sweep through Pass): then it comes after an interval.
	first := time.Duration(0)
	if !s.Stats().LastSuccess.IsZero() {
		first = s.jittered()
	}
	full := time.NewTimer(first)
	defer full.Stop()
	var check <-chan time.Time
	if s.config.FailureCheckInterval > 0 {
		t := time.NewTicker(s.config.FailureCheckInterval)
		defer t.Stop()
		check = t.C
	}
	if s.config.WatchDSN != "" && s.opts.Node != nil && s.opts.st.Capabilities().AdvisoryLocks {
		watched := make(chan struct{})
		defer func() { cancel(); <-watched }()
		go func() {
			defer close(watched)
			_ = safe.Pass(ctx, s.opts.Logger, "failure watcher", func() error { s.watch(ctx); return nil })
		}()
	}
	log := s.opts.Logger
	checks := 0
	var fruitless time.Time // when a pass SweepSoon asked for last found nothing
	for {
		select {
		case <-s.stop:
			return
		case <-s.kick:
			_, _ = s.Pass(ctx)
		case <-s.soon:
			if time.Since(fruitless) < soonBackoff {
				continue
			}
			if res, err := s.Pass(ctx); err == nil && res.Restarted+res.Failed+res.DeadLettered == 0 {
				fruitless = time.Now()
			} else {
				fruitless = time.Time{}
			}
		case <-full.C:
			// Each pass is guarded: a panic (a bad row, a user callback) is
			// logged with its stack and the loop goes on.
			if _, err := s.Pass(ctx); err == nil {
				// The backlog report is for operators: every few minutes is
				// enough, and an idle node's statements count.
				if time.Since(s.lastBacklog) >= reportEvery {
					s.lastBacklog = time.Now()
					_ = safe.Pass(ctx, log, "sweeper backlog check", func() error { s.warnBacklog(ctx); return nil })
				}
				_ = safe.Pass(ctx, log, "sweeper workflow reconcile", func() error { s.reconcile(ctx); return nil })
			}
			full.Reset(s.jittered())
		case <-check:
			// While the watcher waits on a peer's lock, the poll is only
			// for heartbeats that lapsed: a quarter as often.
			if checks++; s.watching.Load() && checks%watchedCheckEvery != 0 {
				continue
			}
			var dead bool
			err := safe.Pass(ctx, log, "sweeper failure check", func() error {
				var err error
				dead, err = s.deadOwners(ctx)
				return err
			})
			if err != nil {
				if ctx.Err() == nil {
					log.WarnContext(ctx, "revenant: failure check failed", slog.Any("error", err))
				}
				continue
			}
			if dead {
				_, _ = s.Pass(ctx)
			}
		}
	}
}

// reserved returns the Sweeper's own connection, with its statement
// timeout, so that a pass never waits on an exhausted pool. The caller
// holds connMu.
func (s *Sweeper) reserved(ctx context.Context) (*dbx.Reserved, error) {
	if s.conn != nil {
		return s.conn, nil
	}
	c, err := dbx.ReserveConn(ctx, s.db.DB, "Sweeper")
	if err != nil {
		return nil, err
	}
	// A closed or broken handle fails here.
	if err := s.opts.st.PrepareConn(ctx, c, s.config.StatementTimeout); err != nil {
		c.Discard()
		return nil, fmt.Errorf("preparing the Sweeper's connection: %w", dbx.Explain(err))
	}
	s.conn = c
	return c, nil
}

// dropConn closes the reserved connection's session; the next pass
// reserves a new one. The caller holds connMu.
func (s *Sweeper) dropConn() {
	if s.conn != nil {
		s.conn.Discard()
		s.conn = nil
	}
}

func (s *Sweeper) deadOwners(ctx context.Context) (bool, error) {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	c, err := s.reserved(ctx)
	if err != nil {
		return false, err
	}
	dead, err := s.opts.st.NodeDeadOwnersExist(ctx, c)
	if err != nil {
		s.dropConn()
		return false, dbx.Explain(err)
	}
	return dead, nil
}

// Pass runs one sweep now on the reserved connection and records its
// outcome. A failing pass changes nothing (each batch is atomic) and is
// retried at the next tick. It is safe to call while the Sweeper runs:
// passes take turns on the connection. A panic in the pass (a user
// callback, a bad row) is returned as an error, not raised.
func (s *Sweeper) Pass(ctx context.Context) (*Result, error) {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	var res *Result
	start := time.Now()
	err := safe.Pass(ctx, s.opts.Logger, "sweeper pass", func() error {
		c, err := s.reserved(ctx)
		if err != nil {
			return err
		}
		if res, err = sweep(ctx, c, s.opts); err != nil {
			return err
		}
		if time.Since(s.lastPrune) >= reportEvery {
			s.lastPrune = time.Now()
			if _, perr := s.opts.st.NodePrune(ctx, c); perr != nil {
				s.opts.Logger.WarnContext(ctx, "revenant: pruning stopped nodes failed", slog.Any("error", perr))
			}
		}
		return nil
	})
	s.mu.Lock()
	s.stats.Passes++
	if err != nil {
		s.stats.Failures++
		s.stats.LastError = err
	} else {
		s.stats.LastSuccess = time.Now()
		s.stats.LastResult = res
		s.stats.LastError = nil
		s.stats.Restarted += res.Restarted
		s.stats.Failed += res.Failed
		s.stats.DeadLettered += res.DeadLettered
		s.stats.Skipped += res.Skipped
	}
	s.mu.Unlock()
	if err != nil {
		if ctx.Err() == nil {
			s.opts.Logger.ErrorContext(ctx, "revenant: sweep pass failed; episodes unchanged, retrying next tick", slog.Any("error", err))
		}
		s.dropConn()
	}
	s.record(ctx, res, err, time.Since(start))
	return res, err
}

// recordTimeout bounds the write of a pass's record: it is for operators,
// and must not hold up the next pass when the database is down.
const recordTimeout = 5 * time.Second

// record writes the pass on the node's row (the node's last sweep, for
// operators' tools). It is best effort: a failure is logged at debug
// level. The caller holds connMu.
func (s *Sweeper) record(ctx context.Context, res *Result, passErr error, took time.Duration) {
	if s.opts.Node == nil || ctx.Err() != nil {
		return
	}
	rec := store.SweepRecord{TookMS: took.Milliseconds()}
	if passErr != nil {
		rec.Error = passErr.Error()
		if len(rec.Error) > maxRecordedError {
			rec.Error = rec.Error[:maxRecordedError] + "…"
		}
	} else if res != nil {
		rec.TookMS = res.Duration.Milliseconds()
		rec.Restarted, rec.Failed, rec.DeadLettered, rec.Skipped = res.Restarted, res.Failed, res.DeadLettered, res.Skipped
	}
	body, err := json.Marshal(rec)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, recordTimeout)
	defer cancel()
	c, err := s.reserved(ctx)
	if err == nil {
		if err = s.opts.st.NodeRecordSweep(ctx, c, s.opts.Node.NodeID(), body); err != nil {
			s.dropConn()
		}
	}
	if err != nil {
		s.opts.Logger.DebugContext(ctx, "revenant: recording the sweep pass failed", slog.Any("error", err))
	}
}

// maxRecordedError caps the error text kept in a node's last sweep.
const maxRecordedError = 500

// warnBacklog logs pending work that no live node can claim, and open
// episodes whose counters cannot be bumped again (no claim or sweep takes
// them): they are left as they are (never lost), but someone should act.
func (s *Sweeper) warnBacklog(ctx context.Context) {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	c, err := s.reserved(ctx)
	if err != nil {
		return
	}
	backlog, err := unclaimable(ctx, c, s.opts)
	if err != nil {
		s.opts.Logger.WarnContext(ctx, "revenant: checking for unclaimable episodes failed", slog.Any("error", err))
		return
	}
	for _, b := range backlog {
		s.opts.Logger.WarnContext(ctx, "revenant: pending episodes of an actor that no live node in their scope has registered; left pending (register the actor on a node with this stack and env, or fix the actor id)",
			slog.String("actor", b.ActorID), slog.Int("pending", b.Pending), slog.String("stack", s.opts.Stack), slog.String("env", s.opts.Env))
	}
	stuck, err := exhausted(ctx, c, s.opts)
	if err != nil {
		s.opts.Logger.WarnContext(ctx, "revenant: checking for exhausted episodes failed", slog.Any("error", err))
		return
	}
	for _, e := range stuck {
		s.opts.Logger.ErrorContext(ctx, "revenant: an open episode's claim token or attempt count is at its maximum; no claim or sweep will take it: fail or fix it by hand",
			slog.String("episode", e.EpisodeID.String()), slog.String("actor", e.ActorID))
	}
	s.mu.Lock()
	s.stats.Unclaimable, s.stats.Exhausted = backlog, stuck
	s.mu.Unlock()
}

func (s *Sweeper) reconcile(ctx context.Context) {
	if s.config.Workflows == nil {
		return
	}
	o := s.opts
	res, err := s.config.Workflows.ReconcileWorkflows(ctx, Scope{Stack: o.Stack, AllStacks: o.AllStacks, Env: o.Env, AllEnvs: o.AllEnvs})
	if err != nil {
		if ctx.Err() == nil {
			s.opts.Logger.WarnContext(ctx, "revenant: reconciling workflows failed; retrying next pass", slog.Any("error", err))
		}
		return
	}
	if res.Replayed+res.Blocked+res.Skipped > 0 {
		s.opts.Logger.InfoContext(ctx, "revenant: reconciled workflows", slog.Int("replayed", res.Replayed),
			slog.Int("blocked", res.Blocked), slog.Int("skipped", res.Skipped))
	}
}
