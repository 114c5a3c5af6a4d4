package postgres

import (
	"context"

	"github.com/google/uuid"
	"github.com/lib/pq"

	"github.com/revenant-go/revenant/internal/dbx"
	"github.com/revenant-go/revenant/internal/schema"
	"github.com/revenant-go/revenant/internal/store"
)

const workflowProbeSQL = `SELECT count(*) FROM revenant_workflow_instances WHERE false`

const workflowInsertSQL = `INSERT INTO revenant_workflow_instances (id, workflow_id, subject, trigger, source_stack, source_env)
VALUES ($1, $2, $3, $4, $5, $6)`

const workflowInsertStepsSQL = `INSERT INTO revenant_workflow_steps (instance_id, step_id, position)
SELECT $1, s.id, s.pos FROM unnest($2::text[]) WITH ORDINALITY AS s(id, pos)`

const workflowInsertCompensationSQL = `INSERT INTO revenant_workflow_steps (instance_id, step_id, kind, position)
VALUES ($1, $2, 'compensation', $3) ON CONFLICT DO NOTHING`

// workflowDueSQL finds instances with a retry due, by the database clock.
const workflowDueSQL = `SELECT DISTINCT s.instance_id FROM revenant_workflow_steps s
JOIN revenant_workflow_instances i ON i.id = s.instance_id
WHERE s.status = 'retrying' AND s.due_at <= now() AND i.status = 'running'
LIMIT $1`

// workflowOpenSQL lists running or blocked instances (keyset paged); the
// scope's condition goes before the ORDER BY.
func workflowOpenSQL(scope string) string {
	return `SELECT id FROM revenant_workflow_instances i
WHERE status IN ('running', 'blocked') AND id > $1` + scope + ` ORDER BY id LIMIT $2`
}

const workflowFindBySubjectSQL = `SELECT id FROM revenant_workflow_instances WHERE workflow_id = $1 AND subject = $2
ORDER BY created_at DESC, id DESC LIMIT 1`

// workflowReadSQL reads an instance with its steps and, for running steps,
// their episode's outcome: one statement, one row per step.
const workflowReadSQL = `SELECT ` + store.WorkflowColumns + `,
	coalesce(s.due_at <= now(), false), coalesce(e.status, ''), e.result, coalesce(e.error_class, ''), e.error_detail
FROM revenant_workflow_instances i
JOIN revenant_workflow_instances i2 ON i2.id = i.id
JOIN revenant_workflow_steps s ON s.instance_id = i.id
LEFT JOIN revenant_episodes e ON e.id = s.episode_id AND s.status = 'running'
WHERE i.id = $1
ORDER BY s.kind DESC, s.position`

// workflowLoadLockedSQL also locks the instance row. Caution: when it
// waits for the lock, READ COMMITTED re-fetches only the locked row (i);
// the joined rows still come from the statement's older snapshot. i2 is
// the same row read from that snapshot: if i.version and i2.version
// differ, another engine committed meanwhile and the read is repeated.
const workflowLoadLockedSQL = workflowReadSQL + `
FOR UPDATE OF i`

// workflowFlushSQL writes one transition in one statement: changed steps,
// the instance, new episodes (deduplicated by key) and their wake-ups. The
// outbox CTEs and the final SELECT are appended.
const workflowFlushSQL = `WITH st AS (
	UPDATE revenant_workflow_steps s
	SET status = u.status, attempts = u.attempts, episode_id = u.episode_id, result = u.result,
		error_class = NULLIF(u.error_class, ''), error = u.error,
		due_at = CASE WHEN u.due_ms IS NULL THEN NULL ELSE now() + u.due_ms * interval '1 millisecond' END,
		updated_at = now()
	FROM unnest($2::text[], $3::text[], $4::int[], $5::uuid[], $6::jsonb[], $7::text[], $8::jsonb[], $9::bigint[])
		AS u(step_id, status, attempts, episode_id, result, error_class, error, due_ms)
	WHERE s.instance_id = $1 AND s.step_id = u.step_id
	RETURNING 1
),
inst AS (
	UPDATE revenant_workflow_instances
	SET status = $10, error = coalesce($11::jsonb, error), compensating = $12, version = version + 1, updated_at = now(),
		finished_at = CASE WHEN $10 IN ('done', 'failed', 'canceled') THEN coalesce(finished_at, now()) END
	WHERE id = $1
	RETURNING 1
),
ep AS (
	-- A step's episode does not retry errors itself: the step's failure
	-- policy is the one retry mechanism of workflows.
	INSERT INTO revenant_episodes (id, actor_id, expectation, input, max_attempts, dedupe_key, source_stack, source_env,
		workflow_instance_id, workflow_step_id, retry_policy)
	SELECT x.id, x.actor, NULLIF(x.expectation, ''), x.input, x.max_attempts, x.dedupe_key, $20, $21, $1, x.step_id,
		'` + store.StepRetryPolicy + `'::jsonb
	FROM unnest($13::uuid[], $14::text[], $15::text[], $16::jsonb[], $17::int[], $18::text[], $19::text[])
		AS x(id, actor, expectation, input, max_attempts, dedupe_key, step_id)
	ON CONFLICT ` + schema.DedupeConflictTarget + ` DO NOTHING
	RETURNING id
),
wake AS (SELECT pg_notify('` + store.PendingChannel + `', a) FROM (SELECT DISTINCT unnest($14::text[]) AS a) d)`

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
	_, err := tx.ExecContext(ctx, workflowInsertStepsSQL, p.ID, pq.Array(p.StepIDs))
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

// WorkflowLoadLocked implements store.Store.
func (Store) WorkflowLoadLocked(ctx context.Context, tx store.Querier, id uuid.UUID, skipLocked bool) (*store.WorkflowLoaded, error) {
	q := workflowLoadLockedSQL
	if skipLocked {
		q += " SKIP LOCKED"
	}
	loaded, stale, err := store.ScanWorkflow(tx.QueryContext(ctx, q, id))
	if err == nil && stale {
		// We waited for the lock while another engine advanced the
		// instance; now that we hold it, a fresh read is consistent.
		loaded, _, err = store.ScanWorkflow(tx.QueryContext(ctx, workflowLoadLockedSQL, id))
	}
	return loaded, err
}

// WorkflowFlush implements store.Store: one statement, with the outbox
// insert and its NOTIFY folded in when there are events.
func (Store) WorkflowFlush(ctx context.Context, tx store.Querier, p *store.WorkflowFlushParams) (store.WorkflowFlushCounts, error) {
	n := len(p.Steps)
	ids, statuses, classes := make([]string, n), make([]string, n), make([]string, n)
	attempts := make([]int64, n)
	epIDs, results, errs := make([]*string, n), make([]*string, n), make([]*string, n)
	dues := make([]*int64, n)
	for i, s := range p.Steps {
		ids[i], statuses[i], classes[i], attempts[i] = s.StepID, s.Status, s.ErrorClass, int64(s.Attempts)
		if store.NullUUID(s.EpisodeID) != nil {
			id := s.EpisodeID.String()
			epIDs[i] = &id
		}
		results[i], errs[i], dues[i] = store.NullJSON(s.Result), store.NullJSON(s.Error), s.DueInMS
	}
	m := len(p.NewEpisodes)
	neIDs, neActors, neExps, neKeys, neSteps := make([]string, m), make([]string, m), make([]string, m), make([]string, m), make([]string, m)
	neInputs, neMax := make([]*string, m), make([]int64, m)
	for i, ne := range p.NewEpisodes {
		neIDs[i], neActors[i], neExps[i], neKeys[i], neSteps[i] = ne.ID.String(), ne.ActorID, ne.Expectation, ne.DedupeKey, ne.StepID
		if v, ok := ne.Input.(string); ok {
			neInputs[i] = &v
		}
		neMax[i] = int64(ne.MaxAttempts)
	}
	args := []any{p.InstanceID, pq.Array(ids), pq.Array(statuses), pq.Array(attempts), pq.Array(epIDs), pq.Array(results),
		pq.Array(classes), pq.Array(errs), pq.Array(dues), p.Status, store.NullJSON(p.ErrorDetail), p.Compensating,
		pq.Array(neIDs), pq.Array(neActors), pq.Array(neExps), pq.Array(neInputs), pq.Array(neMax), pq.Array(neKeys), pq.Array(neSteps),
		store.NullString(p.Stack), store.NullString(p.Env)}
	query := workflowFlushSQL
	final := `SELECT (SELECT count(*) FROM st), (SELECT count(*) FROM inst), (SELECT count(*) FROM ep), (SELECT count(*) FROM wake)`
	if len(p.Events) > 0 {
		cte, ref, a := outboxCTE("ev", args, p.Events)
		query += ",\n" + cte
		final += `, (SELECT count(*) FROM ` + ref + `)`
		args = a
	} else {
		final += `, 0`
	}
	var c store.WorkflowFlushCounts
	var nWake, nEv int
	err := tx.QueryRowContext(ctx, query+"\n"+final, args...).Scan(&c.Steps, &c.Instances, &c.Episodes, &nWake, &nEv)
	return c, err
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
