package revenant

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"

	"github.com/revenant-go/revenant/actors"
	"github.com/revenant-go/revenant/breakers"
	"github.com/revenant-go/revenant/bus"
	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/inspect"
	"github.com/revenant-go/revenant/internal/dbx"
	"github.com/revenant-go/revenant/internal/store/backend"
	"github.com/revenant-go/revenant/journal"
	"github.com/revenant-go/revenant/migrations"
	"github.com/revenant-go/revenant/recovery"
	"github.com/revenant-go/revenant/runner"
	"github.com/revenant-go/revenant/workflow"
)

// Config configures a Client: one node. A nil *Config is valid. Scope,
// logger and bus are given here once and shared by every component, so
// that they cannot disagree.
type Config struct {
	// Name is a human name for the node (e.g. the host). The node id is
	// Name plus a random suffix, unique per process start. Defaults to
	// "node".
	Name string
	// Stack and Env scope everything the node does: the episodes and
	// workflow instances it creates, and what it claims, sweeps and
	// reconciles. Default to "" (none).
	Stack string
	Env   string
	// ListenDSN (Postgres only), when set, receives LISTEN/NOTIFY wake-ups
	// for new work, cancels and events; without it the node polls every
	// PollInterval. It may name the same database as the pool, whatever
	// the pool's driver. Defaults to none.
	ListenDSN string
	// Logger receives the node's log lines: one per start, stop, sweep
	// that did something, and problem. It never receives a DSN, a password
	// or a payload. Defaults to discarding.
	Logger *slog.Logger

	// SkipMigrate leaves the schema alone at Start. By default Start
	// applies pending migrations (advisory-locked on Postgres, so every
	// node may do it at once); set it when migrations run elsewhere
	// (goose, golang-migrate, the revenant CLI).
	SkipMigrate bool
	// DefaultPolicy applies to orphans whose recovery policy no source
	// states (this node's registry, the dead owner's published policies,
	// actor definitions). Defaults to recovery.Fail; recovery.Restart, or
	// recovery.Skip to leave them running and reported.
	DefaultPolicy recovery.Policy
	// ResolvePolicy, when set, decides every orphan's policy and wins
	// over every other source. Defaults to none.
	ResolvePolicy recovery.ResolvePolicyFunc
	// StrictActors makes Enqueue refuse an actor that no live node in
	// scope has registered and that has no definition (ErrUnknownActor).
	// Defaults to false: the episode is enqueued, flagged
	// (CreateResult.UnknownActor) and logged once per actor.
	StrictActors bool

	// HeartbeatInterval is how often the node renews its liveness.
	// Defaults to runner.HeartbeatIntervalDefault.
	HeartbeatInterval time.Duration
	// NodeTTL is how long liveness lasts without a heartbeat. Must exceed
	// twice HeartbeatInterval. Defaults to runner.NodeTTLDefault.
	NodeTTL time.Duration
	// PollInterval is how often the node looks for work and events when
	// no notification arrives. Defaults to runner.PollIntervalDefault.
	PollInterval time.Duration
	// ShutdownTimeout bounds how long a stop waits for canceled runs to
	// return, and then its hand-back writes. Defaults to
	// runner.ShutdownTimeoutDefault.
	ShutdownTimeout time.Duration
	// SweepInterval is the period of the Sweeper's full passes (it also
	// sweeps at once when a node dies). Defaults to
	// recovery.SweepIntervalDefault.
	SweepInterval time.Duration
	// StaleAfter applies to running episodes whose owner is not a known
	// node. Defaults to recovery.StaleAfterDefault.
	StaleAfter time.Duration
	// DisableLockDetection turns off the session advisory lock that lets
	// other nodes see this node's death at once; set it behind a
	// transaction-mode pooler. Defaults to false.
	DisableLockDetection bool
	// Journal configures the journals handed to runs. Defaults to
	// journal's defaults.
	Journal *journal.Config
}

// Client is one node: its actors and workflows, the runner that claims and
// runs their episodes, the bus, the workflow engine and the Sweeper,
// started and stopped in an order that loses nothing.
type Client struct {
	db     *sqlx.DB
	config Config
	logger *slog.Logger

	bus      *bus.Outbox
	runner   *runner.Runner
	engine   *workflow.Engine
	sweeper  *recovery.Sweeper
	actors   *actors.Store
	breakers *breakers.Store
	inspect  *inspect.Inspector
	migrator *migrations.Migrator // for Ready, built on first use
	// live is the started Sweeper, for the heartbeat's OnDeadOwners
	// (atomic: the heartbeat must not wait on mu).
	live atomic.Pointer[recovery.Sweeper]

	mu        sync.Mutex
	state     clientState
	workflows int
	startup   *Startup
}

type clientState int

const (
	clientNew clientState = iota
	clientStarted
	clientStopped
)

// New returns a client for one node on db (never closed by revenant).
// Register actors and workflows, then Start it.
func New(db *sqlx.DB, config *Config) (*Client, error) {
	if db == nil {
		return nil, fmt.Errorf("%w: revenant.New: db is nil; pass the *sqlx.DB your application opened (wrap a *sql.DB with revenant.WrapDB, or open SQLite with sqlite.Open)", ErrInvalidInput)
	}
	c := &Client{db: db}
	if config != nil {
		c.config = *config
	}
	if c.config.Logger == nil {
		c.config.Logger = dbx.DiscardLogger()
	}
	c.logger = c.config.Logger
	cfg := &c.config
	var err error
	c.bus, err = bus.NewOutbox(db, &bus.OutboxConfig{ListenDSN: cfg.ListenDSN, PollInterval: cfg.PollInterval, Logger: cfg.Logger})
	if err != nil {
		return nil, fmt.Errorf("revenant.New: %w", err)
	}
	c.runner, err = runner.New(db, &runner.Config{Name: cfg.Name, Stack: cfg.Stack, Env: cfg.Env, ListenDSN: cfg.ListenDSN,
		HeartbeatInterval: cfg.HeartbeatInterval, NodeTTL: cfg.NodeTTL, PollInterval: cfg.PollInterval,
		ShutdownTimeout: cfg.ShutdownTimeout, DisableLockDetection: cfg.DisableLockDetection, StrictActors: cfg.StrictActors,
		OnDeadOwners: func() {
			if sw := c.live.Load(); sw != nil {
				sw.SweepSoon()
			}
		},
		Bus: c.bus, Journal: cfg.Journal, Logger: cfg.Logger})
	if err != nil {
		return nil, fmt.Errorf("revenant.New: %w", err)
	}
	c.engine, err = workflow.NewEngine(db, &workflow.Config{Bus: c.bus, Stack: cfg.Stack, Env: cfg.Env, NodeID: c.runner.NodeID(),
		RetryPollInterval: cfg.PollInterval, Logger: cfg.Logger})
	if err != nil {
		return nil, fmt.Errorf("revenant.New: %w", err)
	}
	c.actors, err = actors.New(db, &actors.Config{Logger: cfg.Logger})
	if err != nil {
		return nil, fmt.Errorf("revenant.New: %w", err)
	}
	c.breakers, err = breakers.New(db, &breakers.Config{Bus: c.bus, Logger: cfg.Logger})
	if err != nil {
		return nil, fmt.Errorf("revenant.New: %w", err)
	}
	c.inspect, err = inspect.New(db, &inspect.Config{Logger: cfg.Logger})
	if err != nil {
		return nil, fmt.Errorf("revenant.New: %w", err)
	}
	// Validates the sweep settings now; the Sweeper is built again at
	// Start, once the workflows are known.
	if _, err := c.newSweeper(); err != nil {
		return nil, fmt.Errorf("revenant.New: %w", err)
	}
	return c, nil
}

// sweepOptions are the options of every sweep the client runs.
func (c *Client) sweepOptions() recovery.Options {
	return recovery.Options{Node: c.runner, Bus: c.bus, Logger: c.logger, DefaultPolicy: c.config.DefaultPolicy,
		ResolvePolicy: c.config.ResolvePolicy, StaleAfter: c.config.StaleAfter}
}

func (c *Client) newSweeper() (*recovery.Sweeper, error) {
	cfg := &recovery.SweeperConfig{Options: c.sweepOptions(), Interval: c.config.SweepInterval, WatchDSN: c.config.ListenDSN}
	if backend.For(c.db).Capabilities().AdvisoryLocks {
		// On Postgres the heartbeat's statement also asks whether a node
		// died owning episodes (OnDeadOwners): no poll of the Sweeper's own.
		cfg.FailureCheckInterval = -1
	}
	if c.workflows > 0 {
		cfg.Workflows = c.engine
	}
	return recovery.NewSweeper(c.db, cfg)
}

// Register adds an actor. Call it before Start. An actor registered with
// a Recovery policy publishes it with the node, so that whichever node
// sweeps this node's orphans recovers them by it; without one, sweeps use
// the actor's definition (package actors), then Config.DefaultPolicy.
func (c *Client) Register(a runner.Actor) error {
	if err := c.beforeStart("register actor " + fmt.Sprintf("%q", a.ID)); err != nil {
		return err
	}
	return c.runner.Register(a)
}

// RegisterWorkflow validates and adds a workflow definition. Call it
// before Start. Steps whose actor no live node in scope runs, and that has
// no definition, are logged as a warning when Start reconciles.
func (c *Client) RegisterWorkflow(def workflow.Definition) error {
	if err := c.beforeStart("register workflow " + fmt.Sprintf("%q", def.ID)); err != nil {
		return err
	}
	if err := c.engine.Register(def); err != nil {
		return err
	}
	c.mu.Lock()
	c.workflows++
	c.mu.Unlock()
	return nil
}

func (c *Client) beforeStart(what string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != clientNew {
		return fmt.Errorf("%w: %s before Start", ErrInvalidInput, what)
	}
	return nil
}

// NodeID is this node's id (unique per start; it changes if the node was
// declared dead and re-registered).
func (c *Client) NodeID() string { return c.runner.NodeID() }

// Runner is the node's runner (Running, Store, RecoveryPolicy).
func (c *Client) Runner() *runner.Runner { return c.runner }

// Workflows is the node's workflow engine (Get, Cancel, Resume,
// FindBySubject).
func (c *Client) Workflows() *workflow.Engine { return c.engine }

// Bus is the node's event bus, an outbox written in the same transaction
// as each state change. Subscribe before Start to see every event of the
// node's life, the startup sweep's included.
func (c *Client) Bus() *bus.Outbox { return c.bus }

// Episodes is the episode store, stamped with the node's scope.
func (c *Client) Episodes() *episodes.Store { return c.runner.Store() }

// Actors defines, lists, disables and deletes actor definitions: recovery
// policies kept in the database, for actors whose code runs elsewhere.
func (c *Client) Actors() *actors.Store { return c.actors }

// Inspect answers operators' questions (package inspect): nodes and their
// liveness, the backlog, an episode's detail.
func (c *Client) Inspect() *inspect.Inspector { return c.inspect }

// Explain says why an episode is in its state and what happens next,
// resolving recovery policies as this client's own sweep does.
func (c *Client) Explain(ctx context.Context, id uuid.UUID) (*inspect.Explanation, error) {
	return c.inspect.Explain(ctx, id, inspect.ExplainOptions{Node: c.runner, DefaultPolicy: c.config.DefaultPolicy,
		ResolvePolicy: c.config.ResolvePolicy, StaleAfter: c.config.StaleAfter})
}

// Breakers shows and sets the actors' circuit breakers (package breakers):
// List, Get, and Open or Close by hand. Changes are published on the
// client's bus.
func (c *Client) Breakers() *breakers.Store { return c.breakers }
