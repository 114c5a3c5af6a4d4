package workflow

// All of the package's SQL lives here.

const instanceColumns = `id, workflow_id, status, coalesce(subject, ''), trigger, error, compensating, version,
	created_at, finished_at, coalesce(source_stack, ''), coalesce(source_env, '')`

const insertInstanceSQL = `INSERT INTO revenant_workflow_instances (id, workflow_id, subject, trigger, source_stack, source_env)
VALUES ($1, $2, $3, $4, $5, $6)`

const insertStepSQL = `INSERT INTO revenant_workflow_steps (instance_id, step_id, position)
SELECT $1, s.id, s.pos FROM unnest($2::text[]) WITH ORDINALITY AS s(id, pos)`

// lockInstanceSQL serialises every change to one instance: whoever holds
// the row lock advances it; the others see the result.
const lockInstanceSQL = `SELECT ` + instanceColumns + ` FROM revenant_workflow_instances WHERE id = $1 FOR UPDATE`

const lockInstanceSkipSQL = `SELECT ` + instanceColumns + ` FROM revenant_workflow_instances WHERE id = $1 FOR UPDATE SKIP LOCKED`

const getInstanceSQL = `SELECT ` + instanceColumns + ` FROM revenant_workflow_instances WHERE id = $1`

// stepsSQL also says, with the database clock, whether a retry is due.
const stepsSQL = `SELECT step_id, kind, position, status, attempts, episode_id, result, coalesce(error_class, ''), error, due_at,
	coalesce(due_at <= now(), false)
FROM revenant_workflow_steps WHERE instance_id = $1 ORDER BY kind DESC, position`

const updateStepSQL = `UPDATE revenant_workflow_steps
SET status = $3, attempts = $4, episode_id = $5, result = $6, error_class = NULLIF($7, ''), error = $8,
	due_at = CASE WHEN $9::bigint IS NULL THEN NULL ELSE now() + $9::bigint * interval '1 millisecond' END,
	updated_at = now()
WHERE instance_id = $1 AND step_id = $2`

const insertCompensationSQL = `INSERT INTO revenant_workflow_steps (instance_id, step_id, kind, position)
VALUES ($1, $2, 'compensation', $3) ON CONFLICT DO NOTHING`

const updateInstanceSQL = `UPDATE revenant_workflow_instances
SET status = $2, error = coalesce($3, error), compensating = $4, version = version + 1, updated_at = now(),
	finished_at = CASE WHEN $2 IN ('done', 'failed', 'canceled') THEN coalesce(finished_at, now()) END
WHERE id = $1`

const notifyPendingSQL = `SELECT pg_notify($1, $2)`

// dueInstancesSQL finds instances with a retry due, by the database clock.
const dueInstancesSQL = `SELECT DISTINCT s.instance_id FROM revenant_workflow_steps s
JOIN revenant_workflow_instances i ON i.id = s.instance_id
WHERE s.status = 'retrying' AND s.due_at <= now() AND i.status = 'running'
LIMIT 200`

// openInstancesSQL lists running or blocked instances for reconciliation
// (keyset paged); the scope filter is appended.
const openInstancesSQL = `SELECT id FROM revenant_workflow_instances i
WHERE status IN ('running', 'blocked') AND id > $1`

const findBySubjectSQL = `SELECT id FROM revenant_workflow_instances WHERE workflow_id = $1 AND subject = $2
ORDER BY created_at DESC, id DESC LIMIT 1`
