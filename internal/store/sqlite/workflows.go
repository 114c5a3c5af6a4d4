package sqlite

import (
	"context"

	"github.com/google/uuid"

	"github.com/revenant-go/revenant/internal/dbx"
	"github.com/revenant-go/revenant/internal/dialect"
	"github.com/revenant-go/revenant/internal/schema"
	"github.com/revenant-go/revenant/internal/store"
)

// SQLite has one writer at a time, so "locking an instance" is taking the
// write lock with a no-op UPDATE of its row before reading it: no other
// engine can change it until commit, and the read is never from an older
// snapshot. A transition is written with a few statements in that
// transaction instead of one (there are no data-modifying CTEs or
// arrays); each is in-process, so round trips cost little.

const workflowProbeSQL = `SELECT count(*) FROM revenant_workflow_instances WHERE false`

const workflowInsertSQL = `INSERT INTO revenant_workflow_instances (id, workflow_id, subject, trigger, source_stack, source_env)
VALUES ($1, $2, $3, $4, $5, $6)`

const workflowInsertStepsSQL = `INSERT INTO revenant_workflow_steps (instance_id, step_id, position)
SELECT $1, value, key + 1 FROM json_each($2)`

const workflowInsertCompensationSQL = `INSERT INTO revenant_workflow_steps (instance_id, step_id, kind, position)
VALUES ($1, $2, 'compensation', $3) ON CONFLICT DO NOTHING`

const workflowDueSQL = `SELECT DISTINCT s.instance_id FROM revenant_workflow_steps s
JOIN revenant_workflow_instances i ON i.id = s.instance_id
WHERE s.status = 'retrying' AND s.due_at <= ` + now + ` AND i.status = 'running'
LIMIT $1`

func workflowOpenSQL(scope string) string {
	return `SELECT id FROM revenant_workflow_instances i
WHERE status IN ('running', 'blocked') AND id > $1` + scope + ` ORDER BY id LIMIT $2`
}

const workflowFindBySubjectSQL = `SELECT id FROM revenant_workflow_instances WHERE workflow_id = $1 AND subject = $2
ORDER BY created_at DESC, id DESC LIMIT 1`

const workflowReadSQL = `SELECT ` + store.WorkflowColumns + `,
	coalesce(s.due_at <= ` + now + `, false), coalesce(e.status, ''), e.result, coalesce(e.error_class, ''), e.error_detail
FROM revenant_workflow_instances i
JOIN revenant_workflow_instances i2 ON i2.id = i.id
JOIN revenant_workflow_steps s ON s.instance_id = i.id
LEFT JOIN revenant_episodes e ON e.id = s.episode_id AND s.status = 'running'
WHERE i.id = $1
ORDER BY s.kind DESC, s.position`

const workflowLockSQL = `UPDATE revenant_workflow_instances SET version = version WHERE id = $1`

var workflowUpdateStepsSQL = `UPDATE revenant_workflow_steps AS s SET
	status = u.status, attempts = u.attempts, episode_id = u.episode_id, result = u.result,
	error_class = NULLIF(u.error_class, ''), error = u.error,
	due_at = CASE WHEN u.due_ms IS NULL THEN NULL ELSE ` + dialect.SQLiteNowPlusMillis("u.due_ms") + ` END,
	updated_at = ` + now + `
FROM (SELECT json_extract(value, '$.step_id') AS step_id, json_extract(value, '$.status') AS status,
		json_extract(value, '$.attempts') AS attempts, json_extract(value, '$.episode_id') AS episode_id,
		json_extract(value, '$.result') AS result, json_extract(value, '$.error_class') AS error_class,
		json_extract(value, '$.error') AS error, json_extract(value, '$.due_ms') AS due_ms
	FROM json_each($2)) AS u
WHERE s.instance_id = $1 AND s.step_id = u.step_id`

const workflowUpdateInstanceSQL = `UPDATE revenant_workflow_instances
SET status = $2, error = coalesce($3, error), compensating = $4, version = version + 1, updated_at = ` + now + `,
	finished_at = CASE WHEN $2 IN ('done', 'failed', 'canceled') THEN coalesce(finished_at, ` + now + `) END
WHERE id = $1`

// A step's episode does not retry errors itself: the step's failure
// policy is the one retry mechanism of workflows (store.StepRetryPolicy).
const workflowInsertEpisodesSQL = `INSERT INTO revenant_episodes (id, actor_id, expectation, input, max_attempts, dedupe_key, source_stack, source_env,
	workflow_instance_id, workflow_step_id, run_at, retry_policy)
SELECT json_extract(value, '$.id'), json_extract(value, '$.actor'), NULLIF(json_extract(value, '$.expectation'), ''),
	json_extract(value, '$.input'), json_extract(value, '$.max_attempts'), json_extract(value, '$.dedupe_key'), $2, $3, $1,
	json_extract(value, '$.step_id'), ` + now + `, '` + store.StepRetryPolicy + `'
FROM json_each($4) WHERE true
ON CONFLICT ` + schema.DedupeConflictTarget + ` DO NOTHING`

// WorkflowProbe implements store.Store.
func (Store) WorkflowProbe(ctx context.Context, q store.Querier) error {
	var n int
	return q.QueryRowContext(ctx, workflowProbeSQL).Scan(&n)
}

// WorkflowInsert implements store.Store. A savepoint keeps the caller's
// transaction usable after a duplicate subject.
func (Store) WorkflowInsert(ctx context.Context, tx store.Querier, p *store.WorkflowInsertParams) (bool, error) {
	if _, err := tx.ExecContext(ctx, `SAVEPOINT revenant_start`); err != nil {
		return false, err
	}
	if _, err := tx.ExecContext(ctx, workflowInsertSQL, p.ID, p.WorkflowID, store.NullString(p.Subject), p.Trigger,
		store.NullString(p.Stack), store.NullString(p.Env)); err != nil {
		_, _ = tx.ExecContext(ctx, `ROLLBACK TO SAVEPOINT revenant_start`)
		if dbx.IsUniqueViolation(err) {
			return true, nil
		}
		return false, err
	}
	ids, err := jsonArray(p.StepIDs)
	if err != nil {
		return false, err
	}
	_, err = tx.ExecContext(ctx, workflowInsertStepsSQL, p.ID, ids)
	return false, err
}

// WorkflowInsertCompensation implements store.Store.
func (Store) WorkflowInsertCompensation(ctx context.Context, tx store.Querier, instanceID uuid.UUID, stepID string, position int) error {
	_, err := tx.ExecContext(ctx, workflowInsertCompensationSQL, instanceID, stepID, position)
	return err
}

// WorkflowGet implements store.Store.
func (Store) WorkflowGet(ctx context.Context, q store.Querier, id uuid.UUID) (*store.WorkflowLoaded, error) {
	loaded, _, err := store.ScanWorkflow(q.QueryContext(ctx, workflowReadSQL, id))
	return loaded, err
}

// WorkflowLoadLocked implements store.Store: the write lock first (no SKIP
// LOCKED: engines take turns); the read that follows sees the latest
// committed state.
func (Store) WorkflowLoadLocked(ctx context.Context, tx store.Querier, id uuid.UUID, _ bool) (*store.WorkflowLoaded, error) {
	if _, err := tx.ExecContext(ctx, workflowLockSQL, id); err != nil {
		return nil, err
	}
	loaded, _, err := store.ScanWorkflow(tx.QueryContext(ctx, workflowReadSQL, id))
	return loaded, err
}

type flushStep struct {
	StepID     string  `json:"step_id"`
	Status     string  `json:"status"`
	Attempts   int     `json:"attempts"`
	EpisodeID  *string `json:"episode_id"`
	Result     *string `json:"result"` // JSON text, stored as is
	ErrorClass string  `json:"error_class"`
	Error      *string `json:"error"`
	DueMS      *int64  `json:"due_ms"`
}

type flushEpisode struct {
	ID          string  `json:"id"`
	Actor       string  `json:"actor"`
	Expectation string  `json:"expectation"`
	Input       *string `json:"input"` // JSON text
	MaxAttempts int     `json:"max_attempts"`
	DedupeKey   string  `json:"dedupe_key"`
	StepID      string  `json:"step_id"`
}

// affected narrows a row count to int (a flush writes a handful of rows).
func affected(n int64, err error) (int, error) { return int(n), err }

// WorkflowFlush implements store.Store: the same writes as on Postgres, as
// statements in the instance's write transaction.
func (s Store) WorkflowFlush(ctx context.Context, tx store.Querier, p *store.WorkflowFlushParams) (store.WorkflowFlushCounts, error) {
	var c store.WorkflowFlushCounts
	if len(p.Steps) > 0 {
		rows := make([]flushStep, len(p.Steps))
		for i, st := range p.Steps {
			rows[i] = flushStep{StepID: st.StepID, Status: st.Status, Attempts: st.Attempts, Result: store.NullJSON(st.Result),
				ErrorClass: st.ErrorClass, Error: store.NullJSON(st.Error), DueMS: st.DueInMS}
			if store.NullUUID(st.EpisodeID) != nil {
				id := st.EpisodeID.String()
				rows[i].EpisodeID = &id
			}
		}
		arg, err := jsonArray(rows)
		if err != nil {
			return c, err
		}
		if c.Steps, err = affected(store.Count(tx.ExecContext(ctx, workflowUpdateStepsSQL, p.InstanceID, arg))); err != nil {
			return c, err
		}
	}
	var err error
	if c.Instances, err = affected(store.Count(tx.ExecContext(ctx, workflowUpdateInstanceSQL, p.InstanceID, p.Status, store.NullJSON(p.ErrorDetail), p.Compensating))); err != nil {
		return c, err
	}
	if len(p.NewEpisodes) > 0 {
		eps := make([]flushEpisode, len(p.NewEpisodes))
		for i, ne := range p.NewEpisodes {
			eps[i] = flushEpisode{ID: ne.ID.String(), Actor: ne.ActorID, Expectation: ne.Expectation, MaxAttempts: ne.MaxAttempts,
				DedupeKey: ne.DedupeKey, StepID: ne.StepID}
			if v, ok := ne.Input.(string); ok {
				eps[i].Input = &v
			}
		}
		arg, err := jsonArray(eps)
		if err != nil {
			return c, err
		}
		if c.Episodes, err = affected(store.Count(tx.ExecContext(ctx, workflowInsertEpisodesSQL, p.InstanceID, store.NullString(p.Stack), store.NullString(p.Env), arg))); err != nil {
			return c, err
		}
	}
	return c, s.EventInsert(ctx, tx, p.Events)
}

// WorkflowDue implements store.Store.
func (Store) WorkflowDue(ctx context.Context, q store.Querier, limit int) ([]uuid.UUID, error) {
	return store.ScanIDs(q.QueryContext(ctx, workflowDueSQL, limit))
}

// WorkflowOpen implements store.Store.
func (Store) WorkflowOpen(ctx context.Context, q store.Querier, scope store.Scope, after uuid.UUID, limit int) ([]uuid.UUID, error) {
	where, args := scope.Where("i", 3)
	return store.ScanIDs(q.QueryContext(ctx, workflowOpenSQL(where), append([]any{after, limit}, args...)...))
}

// WorkflowFindBySubject implements store.Store.
func (Store) WorkflowFindBySubject(ctx context.Context, q store.Querier, workflowID, subject string) (uuid.UUID, error) {
	return store.FindID(ctx, q, workflowFindBySubjectSQL, workflowID, subject)
}
