package workflow

import (
	"fmt"

	"github.com/revenant-go/revenant/internal/dbx"
	"github.com/revenant-go/revenant/internal/dialect"
	"github.com/revenant-go/revenant/internal/schema"
)

// The SQLite side of the engine. SQLite has one writer at a time, so
// "locking an instance" is taking the write lock with a no-op UPDATE of its
// row before reading it: no other engine can change it until commit, and
// the read is never from an older snapshot. A transition is written with a
// few statements in that transaction instead of one (there are no
// data-modifying CTEs or arrays); each is in-process, so round trips cost
// little.

// queries is the engine's SQL in one dialect.
type queries struct {
	readInstance, dueInstances string
}

func queriesFor(d dialect.Dialect) queries {
	return queries{readInstance: d.Rewrite(readInstanceSQL), dueInstances: d.Rewrite(dueInstancesSQL)}
}

const sqliteLockInstanceSQL = `UPDATE revenant_workflow_instances SET version = version WHERE id = $1`

const sqliteInsertStepSQL = `INSERT INTO revenant_workflow_steps (instance_id, step_id, position)
SELECT $1, value, key + 1 FROM json_each($2)`

var sqliteUpdateStepsSQL = `UPDATE revenant_workflow_steps AS s SET
	status = u.status, attempts = u.attempts, episode_id = u.episode_id, result = u.result,
	error_class = NULLIF(u.error_class, ''), error = u.error,
	due_at = CASE WHEN u.due_ms IS NULL THEN NULL ELSE ` + dialect.SQLiteNowPlusMillis("u.due_ms") + ` END,
	updated_at = ` + dialect.SQLiteNow + `
FROM (SELECT json_extract(value, '$.step_id') AS step_id, json_extract(value, '$.status') AS status,
		json_extract(value, '$.attempts') AS attempts, json_extract(value, '$.episode_id') AS episode_id,
		json_extract(value, '$.result') AS result, json_extract(value, '$.error_class') AS error_class,
		json_extract(value, '$.error') AS error, json_extract(value, '$.due_ms') AS due_ms
	FROM json_each($2)) AS u
WHERE s.instance_id = $1 AND s.step_id = u.step_id`

var sqliteUpdateInstanceSQL = `UPDATE revenant_workflow_instances
SET status = $2, error = coalesce($3, error), compensating = $4, version = version + 1, updated_at = ` + dialect.SQLiteNow + `,
	finished_at = CASE WHEN $2 IN ('done', 'failed', 'canceled') THEN coalesce(finished_at, ` + dialect.SQLiteNow + `) END
WHERE id = $1`

const sqliteInsertEpisodesSQL = `INSERT INTO revenant_episodes (id, actor_id, expectation, input, max_attempts, dedupe_key, source_stack, source_env,
	workflow_instance_id, workflow_step_id)
SELECT json_extract(value, '$.id'), json_extract(value, '$.actor'), NULLIF(json_extract(value, '$.expectation'), ''),
	json_extract(value, '$.input'), json_extract(value, '$.max_attempts'), json_extract(value, '$.dedupe_key'), $2, $3, $1,
	json_extract(value, '$.step_id')
FROM json_each($4) WHERE true
ON CONFLICT ` + schema.DedupeConflictTarget + ` DO NOTHING`

// flushSQLite is flush on SQLite: the same writes as flushSQL, as
// statements in the instance's write transaction, then the events through
// the bus in that transaction (outbox) or after commit (others).
func (t *txn) flushSQLite(dirty []*StepState) error {
	type stepRow struct {
		StepID     string  `json:"step_id"`
		Status     string  `json:"status"`
		Attempts   int     `json:"attempts"`
		EpisodeID  *string `json:"episode_id"`
		Result     *string `json:"result"` // JSON text, stored as is
		ErrorClass string  `json:"error_class"`
		Error      *string `json:"error"`
		DueMS      *int64  `json:"due_ms"`
	}
	rows := make([]stepRow, len(dirty))
	for i, s := range dirty {
		rows[i] = stepRow{StepID: s.ID, Status: s.Status, Attempts: s.Attempts, EpisodeID: uuidPtr(s.EpisodeID),
			Result: jsonPtr(s.Result), ErrorClass: s.ErrorClass, Error: jsonPtr(s.Error), DueMS: s.dueInMS}
	}
	if len(rows) > 0 {
		res, err := t.tx.ExecContext(t.ctx, sqliteUpdateStepsSQL, t.inst.ID, string(mustJSON(rows)))
		if err != nil {
			return fmt.Errorf("writing steps of instance %s: %w", t.inst.ID, dbx.Explain(err))
		}
		if n, _ := res.RowsAffected(); int(n) != len(rows) {
			return fmt.Errorf("%w: instance %s: wrote %d of %d steps", ErrCorruptRow, t.inst.ID, n, len(rows))
		}
	}
	var errDetail any
	if t.errDetail != nil {
		errDetail = string(mustJSON(t.errDetail))
	}
	res, err := t.tx.ExecContext(t.ctx, sqliteUpdateInstanceSQL, t.inst.ID, t.inst.Status, errDetail, t.inst.Compensating)
	if err != nil {
		return fmt.Errorf("writing instance %s: %w", t.inst.ID, dbx.Explain(err))
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return fmt.Errorf("%w: instance %s: wrote %d of 1 instance", ErrCorruptRow, t.inst.ID, n)
	}
	if len(t.newEpisodes) > 0 {
		type epRow struct {
			ID          string  `json:"id"`
			Actor       string  `json:"actor"`
			Expectation string  `json:"expectation"`
			Input       *string `json:"input"` // JSON text
			MaxAttempts int     `json:"max_attempts"`
			DedupeKey   string  `json:"dedupe_key"`
			StepID      string  `json:"step_id"`
		}
		eps := make([]epRow, len(t.newEpisodes))
		for i, ne := range t.newEpisodes {
			eps[i] = epRow{ID: ne.id.String(), Actor: ne.actor, Expectation: ne.expectation, MaxAttempts: ne.maxAttempts,
				DedupeKey: ne.dedupeKey, StepID: ne.stepID}
			if v, ok := ne.input.(string); ok {
				eps[i].Input = &v
			}
		}
		res, err := t.tx.ExecContext(t.ctx, sqliteInsertEpisodesSQL, t.inst.ID, nullString(t.e.config.Stack), nullString(t.e.config.Env), string(mustJSON(eps)))
		if err != nil {
			return fmt.Errorf("creating episodes of instance %s: %w", t.inst.ID, dbx.Explain(err))
		}
		if n, _ := res.RowsAffected(); int(n) != len(eps) {
			return fmt.Errorf("%w: instance %s: wrote %d of %d episodes (an episode for that attempt already exists)",
				ErrCorruptRow, t.inst.ID, n, len(eps))
		}
		t.newEpisodes = nil
	}
	_, inOutbox := t.e.config.Bus.(outboxWriter)
	if inOutbox && len(t.events) > 0 {
		if err := t.e.config.Bus.PublishTx(t.ctx, t.tx, t.events...); err != nil {
			return fmt.Errorf("publishing events of instance %s: %w", t.inst.ID, err)
		}
	} else {
		t.afterCommit = append(t.afterCommit, t.events...)
	}
	return nil
}
