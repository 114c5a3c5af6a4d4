package postgres

import (
	"context"
	"strconv"
	"time"

	"github.com/lib/pq"

	"github.com/revenant-go/revenant/internal/store"
)

// eventColumnsOfE names store.EventColumns' columns on a subquery aliased e.
const eventColumnsOfE = `e.seq, e.id, e.type, e.episode_id, e.actor_id, e.workflow_instance_id, e.workflow_step_id,
	e.status, e.error_class, e.payload, e.created_at`

// eventReadAfterSQL reads the outbox's tail. The upper bound is always
// true, and there for the planner: an outbox without statistics yet (new,
// or grown faster than autovacuum analyzes it) has its open-ended seq > $1
// estimated at a third of the table, and is then read whole and sorted on
// every read; a range on both sides is estimated narrow, so only the rows
// after $1 are read, through the primary key (a reader far behind still
// reads and sorts all of those). With statistics the bound changes nothing.
const eventReadAfterSQL = `SELECT ` + store.EventColumns + ` FROM revenant_events
WHERE seq > $1 AND seq <= 9223372036854775807 ORDER BY seq LIMIT $2`

// eventReadRangesSQL re-reads ranges (lo and hi arrays): one index range
// scan per range, whatever its width. LATERAL keeps it so; a plain join on
// BETWEEN is planned as a walk of the whole table in seq order.
const eventReadRangesSQL = `SELECT ` + eventColumnsOfE + ` FROM unnest($1::bigint[], $2::bigint[]) AS g(lo, hi)
CROSS JOIN LATERAL (SELECT ` + store.EventColumns + ` FROM revenant_events
	WHERE seq BETWEEN g.lo AND g.hi ORDER BY seq LIMIT $3) AS e
ORDER BY e.seq LIMIT $3`

const eventPositionSQL = `SELECT coalesce(max(seq), 0) FROM revenant_events`

const eventPruneSQL = `DELETE FROM revenant_events WHERE created_at < now() - $1 * interval '1 millisecond'`

// newEventIDSQL is a time-ordered (version 7) UUID computed in SQL, for
// events a statement writes itself (PostgreSQL 15 has no uuidv7()): the
// Unix time in milliseconds in the first 48 bits, then random ones, with
// the version bits of gen_random_uuid's 4 turned into 7. Random (v4) ids
// would land all over the outbox's unique index on id; these land at
// its end, as the ids Go gives other events do.
const newEventIDSQL = `encode(set_bit(set_bit(overlay(uuid_send(gen_random_uuid())
	placing substring(int8send(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3) FROM 1 FOR 6),
	52, 1), 53, 1), 'hex')::uuid`

// outboxCTE returns common table expressions that insert evs into the
// outbox and NOTIFY readers, for statements that fold publication into a
// larger write (a workflow transition). Parameters are numbered after
// args, which is returned extended. The statement must reference the CTE
// named ref, or the notification is not sent.
func outboxCTE(name string, args []any, evs []store.Event) (cte, ref string, out []any) {
	cte, out = quietOutboxCTE(name, "", args, evs)
	cte += `,
` + name + `_notify AS (SELECT pg_notify('` + store.OutboxChannel + `', max(seq)::text) FROM ` + name + `)`
	return cte, name + "_notify", out
}

// quietOutboxCTE is the CTE name inserting evs, only where gate (an SQL
// condition, "" for none) holds, with no NOTIFY: the caller announces
// them once the statement has committed (EventAnnounce). Data-modifying
// CTEs run whether or not the statement references them.
func quietOutboxCTE(name, gate string, args []any, evs []store.Event) (cte string, out []any) {
	where := ""
	if gate != "" {
		where = "\n\tWHERE " + gate
	}
	n := len(evs)
	ids, types, eps, actors, wfs, steps, statuses, classes, payloads :=
		make([]string, n), make([]string, n), make([]*string, n), make([]string, n), make([]*string, n),
		make([]string, n), make([]string, n), make([]string, n), make([]*string, n)
	for i, ev := range evs {
		ids[i], types[i], actors[i], steps[i], statuses[i], classes[i] =
			ev.ID.String(), ev.Type, ev.ActorID, ev.WorkflowStepID, ev.Status, ev.ErrorClass
		if u := store.NullUUID(ev.EpisodeID); u != nil {
			s := ev.EpisodeID.String()
			eps[i] = &s
		}
		if u := store.NullUUID(ev.WorkflowInstanceID); u != nil {
			s := ev.WorkflowInstanceID.String()
			wfs[i] = &s
		}
		payloads[i] = store.NullJSON(ev.Payload)
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
		AS e(id, type, episode_id, actor_id, workflow_instance_id, step_id, status, error_class, payload)` + where + `
	RETURNING seq
)`
	return cte, out
}

// eventAnnounceSQL wakes the outbox readers. Its commit need not wait for
// the disk (a lost wake-up is only a later read), so the NOTIFY lock,
// held through commit, is held only briefly.
const eventAnnounceSQL = `SELECT set_config('synchronous_commit', 'off', true), pg_notify('` + store.OutboxChannel + `', '')`

// EventAnnounce implements store.Store.
func (Store) EventAnnounce(ctx context.Context, q store.Querier) error {
	_, err := q.ExecContext(ctx, eventAnnounceSQL)
	return err
}

// EventInsert implements store.Store: one statement, with the NOTIFY.
func (Store) EventInsert(ctx context.Context, q store.Querier, evs []store.Event) error {
	if len(evs) == 0 {
		return nil
	}
	cte, ref, args := outboxCTE("ev", nil, evs)
	_, err := q.ExecContext(ctx, "WITH "+cte+" SELECT * FROM "+ref, args...)
	return err
}

// EventReadAfter implements store.Store.
func (Store) EventReadAfter(ctx context.Context, q store.Querier, after int64, limit int) ([]store.EventRecord, error) {
	return store.ScanEvents(q.QueryContext(ctx, eventReadAfterSQL, after, limit))
}

// EventReadRanges implements store.Store.
func (Store) EventReadRanges(ctx context.Context, q store.Querier, ranges []store.SeqRange, limit int) ([]store.EventRecord, error) {
	lo, hi := make([]int64, len(ranges)), make([]int64, len(ranges))
	for i, r := range ranges {
		lo[i], hi[i] = r.From, r.To
	}
	return store.ScanEvents(q.QueryContext(ctx, eventReadRangesSQL, pq.Array(lo), pq.Array(hi), limit))
}

// EventPosition implements store.Store.
func (Store) EventPosition(ctx context.Context, q store.Querier) (int64, error) {
	var high int64
	err := q.QueryRowContext(ctx, eventPositionSQL).Scan(&high)
	return high, err
}

// EventPrune implements store.Store.
func (Store) EventPrune(ctx context.Context, q store.Querier, age time.Duration) (int64, error) {
	return store.Count(q.ExecContext(ctx, eventPruneSQL, age.Milliseconds()))
}
