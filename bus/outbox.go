package bus

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"

	"github.com/revenant-go/revenant"
	"github.com/revenant-go/revenant/internal/dbx"
	"github.com/revenant-go/revenant/internal/dialect"
	"github.com/revenant-go/revenant/internal/notify"
)

// Channel is the NOTIFY channel announcing new outbox rows (payload: seq).
const Channel = "revenant_events"

// Defaults for the outbox bus.
const (
	PollIntervalDefault = time.Second
	RetentionDefault    = time.Hour
	// GapWaitDefault is how long a reader waits for a sequence gap (a
	// transaction that took its seq but has not committed yet) before
	// moving on; see OutboxConfig.GapWait.
	GapWaitDefault = 10 * time.Second
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
	// DropNotification, when set, is asked for each notification received;
	// true drops it. For tests that simulate lost notifications.
	DropNotification func() bool
}

// Outbox is a Bus across nodes and processes: events go to the
// revenant_events outbox in the publisher's transaction and are delivered
// to every node's subscribers at least once. On Postgres, NOTIFY wakes
// readers and polling catches up; on SQLite (processes sharing one file)
// readers poll.
type Outbox struct {
	db     *sqlx.DB
	sqlite bool
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
	listener  *notify.Listener
}

// NewOutbox returns an outbox bus on db (Postgres or SQLite; never closed
// by revenant).
func NewOutbox(db *sqlx.DB, config *OutboxConfig) (*Outbox, error) {
	if db == nil {
		return nil, fmt.Errorf("%w: bus.NewOutbox: db is nil", revenant.ErrInvalidInput)
	}
	c := OutboxConfig{}
	if config != nil {
		c = *config
	}
	sqlite := dialect.Of(db) == dialect.SQLite
	if sqlite && c.ListenDSN != "" {
		return nil, fmt.Errorf("%w: bus OutboxConfig.ListenDSN is set but the database is SQLite, which has no LISTEN/NOTIFY; leave it empty (the bus polls every PollInterval)", revenant.ErrInvalidInput)
	}
	if c.ListenDSN != "" {
		if err := notify.CheckDSN("bus OutboxConfig.ListenDSN", c.ListenDSN); err != nil {
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
	for _, d := range []struct {
		name          string
		value, lo, hi time.Duration
		def           time.Duration
	}{
		{"PollInterval", c.PollInterval, 10 * time.Millisecond, time.Hour, PollIntervalDefault},
		{"Retention", c.Retention, time.Second, 365 * 24 * time.Hour, RetentionDefault},
		{"GapWait", c.GapWait, time.Millisecond, 24 * time.Hour, GapWaitDefault},
	} {
		if err := dbx.CheckDuration("bus OutboxConfig."+d.name, d.value, d.lo, d.hi, d.def); err != nil {
			return nil, err
		}
	}
	if c.Logger == nil {
		c.Logger = dbx.DiscardLogger()
	}
	return &Outbox{db: db, sqlite: sqlite, config: c, logger: c.Logger, stop: make(chan struct{}), done: make(chan struct{})}, nil
}

// Subscribe implements Bus.
func (b *Outbox) Subscribe(eventType string, h Handler) func() { return b.subs.add(eventType, h) }

// Publish writes events to the outbox in their own transaction.
func (b *Outbox) Publish(ctx context.Context, evs ...Event) error {
	return b.PublishTx(ctx, b.db, evs...)
}

// PublishTx writes events to the outbox in the caller's transaction, with
// one NOTIFY delivered on commit (Postgres).
func (b *Outbox) PublishTx(ctx context.Context, tx revenant.Executor, evs ...Event) error {
	if err := dbx.CheckExecutor("bus PublishTx", tx); err != nil {
		return err
	}
	if b.sqlite {
		return publishSQLite(ctx, tx, evs...)
	}
	return PublishOutboxTx(ctx, tx, evs...)
}

// sqlitePublishSQL inserts events given as a JSON array of objects.
// created_at is set once per statement (the column default would run the
// clock per row).
const sqlitePublishSQL = `INSERT INTO revenant_events (id, type, episode_id, actor_id, workflow_instance_id, workflow_step_id, status, error_class, payload, created_at)
SELECT value ->> '$.id', value ->> '$.type', value ->> '$.episode_id',
	NULLIF(value ->> '$.actor_id', ''), value ->> '$.workflow_instance_id',
	NULLIF(value ->> '$.step_id', ''), NULLIF(value ->> '$.status', ''),
	NULLIF(value ->> '$.error_class', ''), value ->> '$.payload', ` + dialect.SQLiteNow + `
FROM json_each($1)`

// publishSQLite is PublishOutboxTx on SQLite: one INSERT, no NOTIFY.
func publishSQLite(ctx context.Context, tx revenant.Executor, evs ...Event) error {
	if len(evs) == 0 {
		return nil
	}
	prepare(evs)
	type row struct {
		ID         string  `json:"id"`
		Type       string  `json:"type"`
		EpisodeID  *string `json:"episode_id"`
		ActorID    string  `json:"actor_id"`
		Workflow   *string `json:"workflow_instance_id"`
		StepID     string  `json:"step_id"`
		Status     string  `json:"status"`
		ErrorClass string  `json:"error_class"`
		Payload    *string `json:"payload"` // JSON text, stored as is
	}
	rows := make([]row, len(evs))
	for i, ev := range evs {
		if ev.Type == "" {
			return fmt.Errorf("%w: event type is empty", revenant.ErrInvalidInput)
		}
		rows[i] = row{ID: ev.ID.String(), Type: ev.Type, ActorID: ev.ActorID, StepID: ev.WorkflowStepID, Status: ev.Status, ErrorClass: ev.ErrorClass}
		if ev.EpisodeID != uuid.Nil {
			s := ev.EpisodeID.String()
			rows[i].EpisodeID = &s
		}
		if ev.WorkflowInstanceID != uuid.Nil {
			s := ev.WorkflowInstanceID.String()
			rows[i].Workflow = &s
		}
		if len(ev.Payload) > 0 {
			p, err := dbx.EncodeJSON(ev.Payload, 0)
			if err != nil {
				return fmt.Errorf("%w: event payload: %w", revenant.ErrInvalidInput, err)
			}
			s := p.(string)
			rows[i].Payload = &s
		}
	}
	b, err := json.Marshal(rows)
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, sqlitePublishSQL, string(b)); err != nil {
		return fmt.Errorf("publishing %d events: %w", len(evs), dbx.Explain(err))
	}
	return nil
}

// PublishOutboxTx inserts events into the outbox with one statement and
// notifies readers; packages that write lifecycle state call it in their
// own transactions.
func PublishOutboxTx(ctx context.Context, tx revenant.Executor, evs ...Event) error {
	if len(evs) == 0 {
		return nil
	}
	cte, ref, args, err := OutboxCTE("ev", nil, evs...)
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, "WITH "+cte+" SELECT * FROM "+ref, args...); err != nil {
		return fmt.Errorf("publishing %d events: %w", len(evs), err)
	}
	return nil
}

// OutboxCTE returns common table expressions that insert evs into the
// outbox and NOTIFY readers, for callers that fold publication into a
// larger statement. Parameters are numbered after args, which is returned
// extended. The statement must reference the CTE named ref (e.g. SELECT *
// FROM ref), or the notification is not sent.
func OutboxCTE(name string, args []any, evs ...Event) (cte, ref string, out []any, err error) {
	prepare(evs)
	n := len(evs)
	ids, types, eps, actors, wfs, steps, statuses, classes, payloads :=
		make([]string, n), make([]string, n), make([]*string, n), make([]string, n), make([]*string, n),
		make([]string, n), make([]string, n), make([]string, n), make([]*string, n)
	for i, ev := range evs {
		if ev.Type == "" {
			return "", "", nil, fmt.Errorf("%w: event type is empty", revenant.ErrInvalidInput)
		}
		ids[i], types[i], actors[i], steps[i], statuses[i], classes[i] =
			ev.ID.String(), ev.Type, ev.ActorID, ev.WorkflowStepID, ev.Status, ev.ErrorClass
		if ev.EpisodeID != uuid.Nil {
			s := ev.EpisodeID.String()
			eps[i] = &s
		}
		if ev.WorkflowInstanceID != uuid.Nil {
			s := ev.WorkflowInstanceID.String()
			wfs[i] = &s
		}
		if len(ev.Payload) > 0 {
			p, err := dbx.EncodeJSON(ev.Payload, 0)
			if err != nil {
				return "", "", nil, fmt.Errorf("%w: event payload: %w", revenant.ErrInvalidInput, err)
			}
			s := p.(string)
			payloads[i] = &s
		}
	}
	out = append(args, pq.Array(ids), pq.Array(types), pq.Array(eps), pq.Array(actors),
		pq.Array(wfs), pq.Array(steps), pq.Array(statuses), pq.Array(classes), pq.Array(payloads))
	p := func(i int) string { return "$" + strconv.Itoa(len(args)+i) }
	cte = name + ` AS (
	INSERT INTO revenant_events (id, type, episode_id, actor_id, workflow_instance_id, workflow_step_id, status, error_class, payload)
	SELECT id, type, episode_id, NULLIF(actor_id, ''), workflow_instance_id, NULLIF(step_id, ''), NULLIF(status, ''),
		NULLIF(error_class, ''), payload
	FROM unnest(` + p(1) + `::uuid[], ` + p(2) + `::text[], ` + p(3) + `::uuid[], ` + p(4) + `::text[], ` + p(5) + `::uuid[], ` +
		p(6) + `::text[], ` + p(7) + `::text[], ` + p(8) + `::text[], ` + p(9) + `::jsonb[])
		AS e(id, type, episode_id, actor_id, workflow_instance_id, step_id, status, error_class, payload)
	RETURNING seq
),
` + name + `_notify AS (SELECT pg_notify('` + Channel + `', max(seq)::text) FROM ` + name + `)`
	return cte, name + "_notify", out, nil
}

// InTransaction reports that PublishTx writes to the outbox in the
// caller's transaction, so callers may fold it into their own statements
// with OutboxCTE.
func (b *Outbox) InTransaction() bool { return true }
