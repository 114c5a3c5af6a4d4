package sqlite

import (
	"context"
	"time"

	"github.com/revenant-go/revenant/internal/dialect"
	"github.com/revenant-go/revenant/internal/store"
)

// eventInsertSQL inserts events given as a JSON array of objects.
// created_at is set once per statement (the column default would run the
// clock per row). There is no NOTIFY: readers poll.
const eventInsertSQL = `INSERT INTO revenant_events (id, type, episode_id, actor_id, workflow_instance_id, workflow_step_id, status, error_class, payload, created_at)
SELECT value ->> '$.id', value ->> '$.type', value ->> '$.episode_id',
	NULLIF(value ->> '$.actor_id', ''), value ->> '$.workflow_instance_id',
	NULLIF(value ->> '$.step_id', ''), NULLIF(value ->> '$.status', ''),
	NULLIF(value ->> '$.error_class', ''), value ->> '$.payload', ` + now + `
FROM json_each($1)`

const eventReadAfterSQL = `SELECT ` + store.EventColumns + ` FROM revenant_events WHERE seq > $1 ORDER BY seq LIMIT $2`

// eventReadRangesSQL takes the ranges as a JSON array of [lo, hi] pairs.
const eventReadRangesSQL = `SELECT ` + store.EventColumns + ` FROM revenant_events
WHERE seq IN (SELECT e.seq FROM json_each($1) AS g
	JOIN revenant_events e ON e.seq BETWEEN json_extract(g.value, '$[0]') AND json_extract(g.value, '$[1]'))
ORDER BY seq LIMIT $2`

const eventPositionSQL = `SELECT coalesce(max(seq), 0) FROM revenant_events`

var eventPruneSQL = `DELETE FROM revenant_events WHERE created_at < ` + dialect.SQLiteNowMinusMillis("$1")

// eventRow is one event as eventInsertSQL reads it.
type eventRow struct {
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

func eventRows(evs []store.Event) []eventRow {
	rows := make([]eventRow, len(evs))
	for i, ev := range evs {
		rows[i] = eventRow{ID: ev.ID.String(), Type: ev.Type, ActorID: ev.ActorID, StepID: ev.WorkflowStepID,
			Status: ev.Status, ErrorClass: ev.ErrorClass, Payload: store.NullJSON(ev.Payload)}
		if store.NullUUID(ev.EpisodeID) != nil {
			s := ev.EpisodeID.String()
			rows[i].EpisodeID = &s
		}
		if store.NullUUID(ev.WorkflowInstanceID) != nil {
			s := ev.WorkflowInstanceID.String()
			rows[i].Workflow = &s
		}
	}
	return rows
}

// EventInsert implements store.Store: one INSERT, no NOTIFY.
func (Store) EventInsert(ctx context.Context, q store.Querier, evs []store.Event) error {
	if len(evs) == 0 {
		return nil
	}
	arg, err := jsonArray(eventRows(evs))
	if err != nil {
		return err
	}
	_, err = q.ExecContext(ctx, eventInsertSQL, arg)
	return err
}

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
