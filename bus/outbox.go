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
)

// Channel is the NOTIFY channel announcing new outbox rows (payload: seq).
const Channel = "revenant_events"

// Defaults for the outbox bus.
const (
	PollIntervalDefault = time.Second
	RetentionDefault    = time.Hour
	// GapWaitDefault is how long a reader waits for a sequence gap (a
	// transaction that took its seq but has not committed yet) before
	// moving on. Events that commit later than that are still delivered if
	// seen, since reads dedupe by id, but may be missed; the reconciler
	// repairs what they would have done.
	GapWaitDefault = 10 * time.Second
)

// OutboxConfig configures the outbox bus.
type OutboxConfig struct {
	// ListenDSN is used by lib/pq's Listener for LISTEN (Postgres only).
	// Without it the bus polls every PollInterval; on SQLite it always
	// polls.
	ListenDSN string
	// PollInterval is the catch-up poll period. Defaults to
	// PollIntervalDefault.
	PollInterval time.Duration
	// Retention is how long outbox rows are kept. Defaults to
	// RetentionDefault.
	Retention time.Duration
	// GapWait defaults to GapWaitDefault.
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

	mu        sync.Mutex
	low       int64               // every seq <= low has been handled
	high      int64               // the highest seq read
	delivered map[int64]bool      // seqs above low already delivered
	gaps      map[int64]time.Time // seqs above low not seen yet, since when
	started   bool
	stop      chan struct{}
	done      chan struct{}
	wake      chan struct{}
	listener  *pq.Listener
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
	if c.PollInterval < 0 || c.Retention < 0 || c.GapWait < 0 {
		return nil, fmt.Errorf("%w: bus OutboxConfig durations must not be negative (0 means the default)", revenant.ErrInvalidInput)
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
	if c.Logger == nil {
		c.Logger = dbx.DiscardLogger()
	}
	return &Outbox{db: db, sqlite: sqlite, config: c, logger: c.Logger, delivered: map[int64]bool{}, gaps: map[int64]time.Time{},
		stop: make(chan struct{}), done: make(chan struct{}), wake: make(chan struct{}, 1)}, nil
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

const eventColumns = `seq, id, type, episode_id, coalesce(actor_id, ''), workflow_instance_id, coalesce(workflow_step_id, ''),
	coalesce(status, ''), coalesce(error_class, ''), payload, created_at`

const readBatch = 1000

var readSQL = `SELECT ` + eventColumns + ` FROM revenant_events WHERE seq > $1 ORDER BY seq LIMIT ` + strconv.Itoa(readBatch)

const readGapsSQL = `SELECT ` + eventColumns + ` FROM revenant_events WHERE seq = ANY($1::bigint[]) ORDER BY seq`

const pruneSQL = `DELETE FROM revenant_events WHERE created_at < now() - $1 * interval '1 millisecond'`

const sqliteReadGapsSQL = `SELECT ` + eventColumns + ` FROM revenant_events WHERE seq IN (SELECT value FROM json_each($1)) ORDER BY seq`

var sqlitePruneSQL = `DELETE FROM revenant_events WHERE created_at < ` + dialect.SQLiteNowMinusMillis("$1")

// Start begins delivery from now on (events already in the outbox are not
// delivered; the reconciler covers what they would have done).
func (b *Outbox) Start(ctx context.Context) error {
	b.mu.Lock()
	if b.started {
		b.mu.Unlock()
		return fmt.Errorf("%w: bus already started", revenant.ErrInvalidInput)
	}
	b.started = true
	b.mu.Unlock()
	if err := b.db.GetContext(ctx, &b.low, `SELECT coalesce(max(seq), 0) FROM revenant_events`); err != nil {
		return fmt.Errorf("bus: reading the outbox position: %w", err)
	}
	b.high = b.low
	if b.config.ListenDSN != "" {
		l := pq.NewListener(b.config.ListenDSN, 50*time.Millisecond, 5*time.Second, nil)
		if err := l.Listen(Channel); err != nil {
			_ = l.Close()
			b.logger.WarnContext(ctx, "revenant: bus LISTEN failed; polling only", slog.Any("error", err))
		} else {
			b.listener = l
		}
	}
	go b.loop()
	return nil
}

// Stop ends delivery.
func (b *Outbox) Stop() {
	b.mu.Lock()
	started := b.started
	b.mu.Unlock()
	if !started {
		return
	}
	select {
	case <-b.stop:
		return
	default:
		close(b.stop)
	}
	<-b.done
	if b.listener != nil {
		_ = b.listener.Close()
	}
}

func (b *Outbox) loop() {
	defer close(b.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { <-b.stop; cancel() }()
	poll := time.NewTicker(b.config.PollInterval)
	defer poll.Stop()
	prune := time.NewTicker(time.Minute)
	defer prune.Stop()
	var notes <-chan *pq.Notification
	if b.listener != nil {
		notes = b.listener.NotificationChannel()
	}
	for {
		select {
		case <-b.stop:
			return
		case n := <-notes:
			if n != nil && b.config.DropNotification != nil && b.config.DropNotification() {
				continue
			}
		case <-poll.C:
		case <-prune.C:
			q := pruneSQL
			if b.sqlite {
				q = sqlitePruneSQL
			}
			if _, err := b.db.ExecContext(ctx, q, b.config.Retention.Milliseconds()); err != nil && ctx.Err() == nil {
				b.logger.WarnContext(ctx, "revenant: pruning the outbox failed", slog.Any("error", err))
			}
			continue
		}
		if err := b.catchUp(ctx); err != nil && ctx.Err() == nil {
			b.logger.WarnContext(ctx, "revenant: reading the outbox failed", slog.Any("error", err))
		}
	}
}

// CatchUp delivers every event committed since the last read. The loop
// calls it on each notification and poll tick; tests call it directly.
func (b *Outbox) CatchUp(ctx context.Context) error { return b.catchUp(ctx) }

func (b *Outbox) catchUp(ctx context.Context) error {
	// Sequence numbers that were skipped (taken by transactions not yet
	// committed) are re-checked by number, so a gap never makes the reader
	// page over the same rows again.
	b.mu.Lock()
	gaps := make([]int64, 0, len(b.gaps))
	for seq := range b.gaps {
		gaps = append(gaps, seq)
	}
	b.mu.Unlock()
	if len(gaps) > 0 {
		q, arg := readGapsSQL, any(pq.Array(gaps))
		if b.sqlite {
			gj, _ := json.Marshal(gaps)
			q, arg = sqliteReadGapsSQL, string(gj)
		}
		evs, seqs, err := b.query(ctx, q, arg)
		if err != nil {
			return err
		}
		b.deliver(ctx, evs, seqs)
	}
	for {
		b.mu.Lock()
		high := b.high
		b.mu.Unlock()
		evs, seqs, err := b.query(ctx, readSQL, high)
		if err != nil {
			return err
		}
		b.deliver(ctx, evs, seqs)
		if len(evs) < readBatch {
			b.advance()
			return nil
		}
	}
}

// deliver hands new events to subscribers once each and records gaps.
func (b *Outbox) deliver(ctx context.Context, evs []Event, seqs []int64) {
	now := time.Now()
	for i, ev := range evs {
		b.mu.Lock()
		seen := b.delivered[seqs[i]] || seqs[i] <= b.low
		b.delivered[seqs[i]] = true
		delete(b.gaps, seqs[i])
		if seqs[i] > b.high {
			for s := b.high + 1; s < seqs[i]; s++ {
				if !b.delivered[s] {
					b.gaps[s] = now
				}
			}
			b.high = seqs[i]
		}
		b.mu.Unlock()
		if !seen {
			b.subs.deliver(ctx, b.logger, ev)
		}
	}
}

// advance moves low past every seq that is delivered, or that has been a
// gap for longer than GapWait, forgetting their bookkeeping.
func (b *Outbox) advance() {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	for b.low < b.high {
		next := b.low + 1
		if b.delivered[next] {
			delete(b.delivered, next)
			b.low = next
			continue
		}
		if since, ok := b.gaps[next]; ok && now.Sub(since) > b.config.GapWait {
			delete(b.gaps, next)
			b.low = next
			continue
		}
		return
	}
}

func (b *Outbox) query(ctx context.Context, q string, arg any) ([]Event, []int64, error) {
	rows, err := b.db.QueryContext(ctx, q, arg)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	var evs []Event
	var seqs []int64
	for rows.Next() {
		var (
			ev      Event
			seq     int64
			ep, wf  uuid.NullUUID
			payload []byte
		)
		if err := rows.Scan(&seq, &ev.ID, &ev.Type, &ep, &ev.ActorID, &wf, &ev.WorkflowStepID, &ev.Status, &ev.ErrorClass, &payload, &ev.CreatedAt); err != nil {
			return nil, nil, err
		}
		ev.EpisodeID, ev.WorkflowInstanceID = ep.UUID, wf.UUID
		if payload != nil {
			ev.Payload = append([]byte(nil), payload...)
		}
		evs = append(evs, ev)
		seqs = append(seqs, seq)
	}
	return evs, seqs, rows.Err()
}
