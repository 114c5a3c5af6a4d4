package recovery

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/revenant-go/revenant"
	"github.com/revenant-go/revenant/internal/dialect"
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
	// for, as of the last full pass (also logged as warnings).
	Unclaimable []Backlog
}

// Sweeper runs Sweep at start and then periodically, on a connection of
// its own, and at once when a node's death is detected.
type Sweeper struct {
	db     *sqlx.DB
	config *SweeperConfig
	opts   *config

	mu    sync.Mutex
	stats Stats
	conn  *sql.Conn

	stop    chan struct{}
	done    chan struct{}
	started bool
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
	if c.Interval < 0 || c.StatementTimeout < 0 {
		return nil, fmt.Errorf("%w: SweeperConfig.Interval and StatementTimeout must not be negative (0 means the default)", revenant.ErrInvalidInput)
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
	opts, err := c.Options.withDefaults()
	if err != nil {
		return nil, err
	}
	opts.sqlite = dialect.Of(db) == dialect.SQLite
	return &Sweeper{db: db, config: &c, opts: opts, stop: make(chan struct{}), done: make(chan struct{})}, nil
}

// Start runs the first pass at once, then keeps sweeping until Stop.
func (s *Sweeper) Start(ctx context.Context) error {
	s.mu.Lock()
	if s.started {
		s.mu.Unlock()
		return fmt.Errorf("%w: sweeper already started", revenant.ErrInvalidInput)
	}
	s.started = true
	s.mu.Unlock()
	go s.loop()
	return nil
}

// Stop ends the loop and releases the reserved connection.
func (s *Sweeper) Stop() {
	s.mu.Lock()
	started := s.started
	s.mu.Unlock()
	if !started {
		return
	}
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
	s.mu.Lock()
	if s.conn != nil {
		_ = s.conn.Close()
		s.conn = nil
	}
	s.mu.Unlock()
}

// Stats returns a snapshot of the Sweeper's health.
func (s *Sweeper) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

func (s *Sweeper) jittered() time.Duration {
	d := s.config.Interval
	return d - d/5 + time.Duration(rand.Int64N(int64(d/5)*2+1))
}

func (s *Sweeper) loop() {
	defer close(s.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { <-s.stop; cancel() }()

	full := time.NewTimer(0) // first pass at once
	defer full.Stop()
	var check <-chan time.Time
	if s.config.FailureCheckInterval > 0 {
		t := time.NewTicker(s.config.FailureCheckInterval)
		defer t.Stop()
		check = t.C
	}
	for {
		select {
		case <-s.stop:
			return
		case <-full.C:
			if _, err := s.Pass(ctx); err == nil {
				s.warnUnclaimable(ctx)
				s.reconcile(ctx)
			}
			full.Reset(s.jittered())
		case <-check:
			dead, err := s.deadOwners(ctx)
			if err != nil {
				s.opts.Logger.WarnContext(ctx, "revenant: failure check failed", slog.Any("error", err))
				continue
			}
			if dead {
				s.Pass(ctx)
			}
		}
	}
}

// reserved returns the Sweeper's own connection, with its statement
// timeout, so that a pass never waits on an exhausted pool.
func (s *Sweeper) reserved(ctx context.Context) (*sql.Conn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn != nil {
		return s.conn, nil
	}
	c, err := s.db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("reserving a connection: %w", err)
	}
	if s.opts.sqlite {
		// No statement_timeout on SQLite; its busy_timeout bounds lock waits.
		s.conn = c
		return c, nil
	}
	if _, err := c.ExecContext(ctx, fmt.Sprintf("SET statement_timeout = %d", s.config.StatementTimeout.Milliseconds())); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("setting statement_timeout: %w", err)
	}
	s.conn = c
	return c, nil
}

func (s *Sweeper) dropConn() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn != nil {
		_ = s.conn.Raw(func(any) error { return errBadConn })
		_ = s.conn.Close()
		s.conn = nil
	}
}

func (s *Sweeper) deadOwners(ctx context.Context) (bool, error) {
	c, err := s.reserved(ctx)
	if err != nil {
		return false, err
	}
	var dead bool
	if err := c.QueryRowContext(ctx, deadOwnersExistQuery(s.opts.sqlite)).Scan(&dead); err != nil {
		s.dropConn()
		return false, err
	}
	return dead, nil
}

// Pass runs one sweep now on the reserved connection and records its
// outcome. A failing pass changes nothing (each batch is atomic) and is
// retried at the next tick.
func (s *Sweeper) Pass(ctx context.Context) (*Result, error) {
	c, err := s.reserved(ctx)
	var res *Result
	if err == nil {
		res, err = sweep(ctx, c, s.opts)
		if err == nil {
			if _, perr := c.ExecContext(ctx, pruneNodesQuery(s.opts.sqlite)); perr != nil {
				s.opts.Logger.WarnContext(ctx, "revenant: pruning stopped nodes failed", slog.Any("error", perr))
			}
		}
	}
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
	return res, err
}

// warnUnclaimable logs pending work that no live node can claim: it is left
// as it is (never lost), but someone should deploy a node for it.
func (s *Sweeper) warnUnclaimable(ctx context.Context) {
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
		s.opts.Logger.WarnContext(ctx, "revenant: pending episodes of an actor no live node has registered; left pending",
			slog.String("actor", b.ActorID), slog.Int("pending", b.Pending))
	}
	s.mu.Lock()
	s.stats.Unclaimable = backlog
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
	if res.Replayed+res.Skipped > 0 {
		s.opts.Logger.InfoContext(ctx, "revenant: reconciled workflows", slog.Int("replayed", res.Replayed), slog.Int("skipped", res.Skipped))
	}
}
