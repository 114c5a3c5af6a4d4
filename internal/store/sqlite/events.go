package sqlite

import (
	"context"
	"strings"
	"time"

	"github.com/revenant-go/revenant/internal/dialect"
	"github.com/revenant-go/revenant/internal/store"
)

// eventInsertRowSQL is one row of an event insert: nine parameters, and
// the clock (the same for every row of a statement). Parameters beat a
// JSON array here: the rows are not parsed again in the database, which
// halves the cost of a sweep's thousands of events. There is no NOTIFY:
// readers poll.
const eventInsertRowSQL = `(?, ?, ?, ?, ?, ?, ?, ?, ?, ` + now + `)`

const eventInsertPrefix = `INSERT INTO revenant_events (id, type, episode_id, actor_id, workflow_instance_id, workflow_step_id, status, error_class, payload, created_at) VALUES `

// eventsPerInsert keeps a statement's parameters under SQLite's limit
// (32,766).
const eventsPerInsert = 3000

const eventReadAfterSQL = `SELECT ` + store.EventColumns + ` FROM revenant_events WHERE seq > $1 ORDER BY seq LIMIT $2`

// eventReadRangesSQL takes the ranges as a JSON array of [lo, hi] pairs.
const eventReadRangesSQL = `SELECT ` + store.EventColumns + ` FROM revenant_events
WHERE seq IN (SELECT e.seq FROM json_each($1) AS g
	JOIN revenant_events e ON e.seq BETWEEN json_extract(g.value, '$[0]') AND json_extract(g.value, '$[1]'))
ORDER BY seq LIMIT $2`

const eventPositionSQL = `SELECT coalesce(max(seq), 0) FROM revenant_events`

var eventPruneSQL = `DELETE FROM revenant_events WHERE created_at < ` + dialect.SQLiteNowMinusMillis("$1")

// eventArgs appends ev's nine parameters to args.
func eventArgs(args []any, ev *store.Event) []any {
	var episode, workflow any
	if store.NullUUID(ev.EpisodeID) != nil {
		episode = ev.EpisodeID.String()
	}
	if store.NullUUID(ev.WorkflowInstanceID) != nil {
		workflow = ev.WorkflowInstanceID.String()
	}
	var payload any
	if p := store.NullJSON(ev.Payload); p != nil {
		payload = *p
	}
	return append(args, ev.ID.String(), ev.Type, episode, store.NullString(ev.ActorID), workflow,
		store.NullString(ev.WorkflowStepID), store.NullString(ev.Status), store.NullString(ev.ErrorClass), payload)
}

// EventInsert implements store.Store: one INSERT per 3,000 events, no
// NOTIFY.
func (Store) EventInsert(ctx context.Context, q store.Querier, evs []store.Event) error {
	for lo := 0; lo < len(evs); lo += eventsPerInsert {
		hi := min(lo+eventsPerInsert, len(evs))
		var query strings.Builder
		query.Grow(len(eventInsertPrefix) + (hi-lo)*(len(eventInsertRowSQL)+1))
		query.WriteString(eventInsertPrefix)
		args := make([]any, 0, 9*(hi-lo))
		for i := lo; i < hi; i++ {
			if i > lo {
				query.WriteByte(',')
			}
			query.WriteString(eventInsertRowSQL)
			args = eventArgs(args, &evs[i])
		}
		if _, err := q.ExecContext(ctx, query.String(), args...); err != nil {
			return err
		}
	}
	return nil
}

// EventAnnounce implements store.Store: readers poll on SQLite.
func (Store) EventAnnounce(context.Context, store.Querier) error { return nil }

// EventReadAfter implements store.Store.
func (Store) EventReadAfter(ctx context.Context, q store.Querier, after int64, limit int) ([]store.EventRecord, error) {
	return store.ScanEvents(q.QueryContext(ctx, eventReadAfterSQL, after, limit))
}

// EventReadRanges implements store.Store.
func (Store) EventReadRanges(ctx context.Context, q store.Querier, ranges []store.SeqRange, limit int) ([]store.EventRecord, error) {
	pairs := make([][2]int64, len(ranges))
	for i, r := range ranges {
		pairs[i] = [2]int64{r.From, r.To}
	}
	arg, err := jsonArray(pairs)
	if err != nil {
		return nil, err
	}
	return store.ScanEvents(q.QueryContext(ctx, eventReadRangesSQL, arg, limit))
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
