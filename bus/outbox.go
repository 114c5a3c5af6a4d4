package bus

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/revenant-go/revenant/internal/dbx"
	"github.com/revenant-go/revenant/internal/store"
	"github.com/revenant-go/revenant/internal/store/backend"
	"github.com/revenant-go/revenant/internal/testhook"
)

// Channel is the NOTIFY channel announcing new outbox rows (payload: the
// highest seq written, or empty: read from your last position either way).
const Channel = store.OutboxChannel

// Defaults for the outbox bus.
const (
	PollIntervalDefault = time.Second
	RetentionDefault    = time.Hour
	// GapWaitDefault is how long a reader waits for a sequence gap (a
	// transaction that took its seq but has not committed yet) before
	// moving on; see OutboxConfig.GapWait.
	GapWaitDefault = 10 * time.Second
	// ListeningPollIntervalDefault is the catch-up poll period while
	// LISTEN is up; see OutboxConfig.ListeningPollInterval.
	ListeningPollIntervalDefault = 30 * time.Second
)

// OutboxConfig configures the outbox bus.
type OutboxConfig struct {
	// ListenDSN is used by lib/pq's Listener for LISTEN (Postgres only).
	// Without it the bus polls every PollInterval; on SQLite it always
	// polls. A DSN that does not parse is an error from NewOutbox; one that
	// cannot connect is not: Start returns once the first attempt fails
	// (each is bounded by the DSN's connect_timeout, 5 s if unset), its ctx
	// ends or 5 s pass; the bus then polls, logs one warning per outage,
	// and keeps trying to LISTEN in the background.
	ListenDSN string
	// PollInterval is the catch-up poll period. Defaults to
	// PollIntervalDefault.
	PollInterval time.Duration
	// ListeningPollInterval is the catch-up poll period while LISTEN is
	// up and no sequence gap is open: every event is announced with
	// NOTIFY when it commits (a runner's claims and completions: right
	// after), and a reconnect triggers a catch-up, so the
	// poll is only a last resort there (an idle node's reads per second
	// are what it costs). Never shorter than PollInterval. Defaults to
	// ListeningPollIntervalDefault.
	ListeningPollInterval time.Duration
	// Retention is how long outbox rows are kept. Defaults to
	// RetentionDefault.
	Retention time.Duration
	// GapWait is how long the reader waits for the events of a sequence
	// gap (seqs taken by transactions that had not committed when later
	// ones were read, or skipped by a rollback or a setval) before it gives
	// the gap up. An event that commits inside a given-up gap is not
	// delivered to this node's subscribers; the workflow reconciler repairs
	// what it would have done. Gaps are tracked as ranges, at most 1,000 of
	// them (past that the oldest is given up early, with one warning), so
	// memory stays bounded whatever the sequence does. Defaults to
	// GapWaitDefault.
	GapWait time.Duration
	// Logger defaults to discarding.
	Logger *slog.Logger
}

func init() {
	testhook.DropOutboxNotifications = func(outbox any, drop func() bool) { outbox.(*Outbox).dropNotification = drop }
}

// Outbox is a Bus across nodes and processes: events go to the
// revenant_events outbox in the publisher's transaction and are delivered
// to every node's subscribers at least once. On Postgres, NOTIFY wakes
// readers and polling catches up; on SQLite (processes sharing one file)
// readers poll.
type Outbox struct {
	db     *sqlx.DB
	st     store.Store
	config OutboxConfig
	subs   subscribers
	logger *slog.Logger

	// The reader's position (see reader.go): every seq up to high has been
	// delivered or given up, except those inside gaps. Its size is bounded
	// by maxGapRanges, whatever the sequence does.
	mu       sync.Mutex
	high     int64      // the highest seq read
	gaps     []gapRange // seqs below high not read yet, in order
	gapsShed bool       // the gap cap was hit (logged once)

	lifecycle sync.Mutex // serialises Start and Stop
	started   bool
	stop      chan struct{}
	done      chan struct{}
	listener  store.Listener

	// dropNotification, when set (revenant's tests, through
	// internal/testhook, before Start), is asked for each notification
	// received; true drops it.
	dropNotification func() bool
}

// NewOutbox returns an outbox bus on db (Postgres or SQLite; never closed
// by revenant).
func NewOutbox(db *sqlx.DB, config *OutboxConfig) (*Outbox, error) {
	if db == nil {
		return nil, fmt.Errorf("%w: bus.NewOutbox: db is nil", dbx.ErrInvalidInput)
	}
	c := OutboxConfig{}
	if config != nil {
		c = *config
	}
	st := backend.For(db)
	if !st.Capabilities().Notify && c.ListenDSN != "" {
		return nil, fmt.Errorf("%w: bus OutboxConfig.ListenDSN is set but the database is SQLite, which has no LISTEN/NOTIFY; leave it empty (the bus polls every PollInterval)", dbx.ErrInvalidInput)
	}
	if c.ListenDSN != "" {
		if err := st.CheckListenDSN("bus OutboxConfig.ListenDSN", c.ListenDSN); err != nil {
			return nil, err
		}
	}
	if c.PollInterval == 0 {
		c.PollInterval = PollIntervalDefault
	}
	if c.Retention == 0 {
		c.Retention = RetentionDefault
	}
	if c.GapWait == 0 {
		c.GapWait = GapWaitDefault
	}
	if c.ListeningPollInterval == 0 {
		c.ListeningPollInterval = max(ListeningPollIntervalDefault, c.PollInterval)
	}
	for _, d := range []struct {
		name          string
		value, lo, hi time.Duration
		def           time.Duration
	}{
		{"PollInterval", c.PollInterval, 10 * time.Millisecond, time.Hour, PollIntervalDefault},
		{"Retention", c.Retention, time.Second, 365 * 24 * time.Hour, RetentionDefault},
		{"GapWait", c.GapWait, time.Millisecond, 24 * time.Hour, GapWaitDefault},
		{"ListeningPollInterval", c.ListeningPollInterval, c.PollInterval, 24 * time.Hour, ListeningPollIntervalDefault},
	} {
		if err := dbx.CheckDuration("bus OutboxConfig."+d.name, d.value, d.lo, d.hi, d.def); err != nil {
			return nil, err
		}
	}
	if c.Logger == nil {
		c.Logger = dbx.DiscardLogger()
	}
	return &Outbox{db: db, st: st, config: c, logger: c.Logger, stop: make(chan struct{}), done: make(chan struct{})}, nil
}

// Subscribe implements Bus.
func (b *Outbox) Subscribe(eventType string, h Handler) func() { return b.subs.add(eventType, h) }

// Publish writes events to the outbox in their own transaction.
func (b *Outbox) Publish(ctx context.Context, evs ...Event) error {
	return b.PublishTx(ctx, b.db, evs...)
}

// PublishTx writes events to the outbox in the caller's transaction, with
// one NOTIFY delivered on commit (Postgres).
func (b *Outbox) PublishTx(ctx context.Context, tx Executor, evs ...Event) error {
	if err := dbx.CheckExecutor("bus PublishTx", tx); err != nil {
		return err
	}
	rows, err := storeEvents(evs)
	if err != nil {
		return err
	}
	if err := b.st.EventInsert(ctx, tx, rows); err != nil {
		return fmt.Errorf("publishing %d events: %w", len(evs), dbx.Explain(err))
	}
	return nil
}

// storeEvents checks events and gives each an id: the same checks on every
// backend, before anything is written.
func storeEvents(evs []Event) ([]store.Event, error) {
	prepare(evs)
	out := make([]store.Event, len(evs))
	for i, ev := range evs {
		if ev.Type == "" {
			return nil, fmt.Errorf("%w: event type is empty", dbx.ErrInvalidInput)
		}
		if len(ev.Payload) > 0 {
			p, err := dbx.EncodeJSON(ev.Payload, 0)
			if err != nil {
				return nil, fmt.Errorf("%w: event payload: %w", dbx.ErrInvalidInput, err)
			}
			ev.Payload = json.RawMessage(p.(string))
		}
		out[i] = store.Event(ev)
	}
	return out, nil
}

// InTransaction reports that PublishTx writes to the outbox in the
// caller's transaction, so callers may fold it into their own statements
// with OutboxCTE.
func (b *Outbox) InTransaction() bool { return true }
