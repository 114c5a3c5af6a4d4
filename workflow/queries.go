package workflow

import "github.com/revenant-go/revenant/internal/schema"

// All of the package's SQL lives here.

// probeSQL checks at Launch that the database answers and is migrated.
const probeSQL = `SELECT count(*) FROM revenant_workflow_instances WHERE false`

const insertInstanceSQL = `INSERT INTO revenant_workflow_instances (id, workflow_id, subject, trigger, source_stack, source_env)
VALUES ($1, $2, $3, $4, $5, $6)`

const insertStepSQL = `INSERT INTO revenant_workflow_steps (instance_id, step_id, position)
SELECT $1, s.id, s.pos FROM unnest($2::text[]) WITH ORDINALITY AS s(id, pos)`

const insertCompensationSQL = `INSERT INTO revenant_workflow_steps (instance_id, step_id, kind, position)
VALUES ($1, $2, 'compensation', $3) ON CONFLICT DO NOTHING`

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

// readInstanceSQL reads an instance with its steps and, for running steps,
// their episode's outcome: one statement, one row per step.
const readInstanceSQL = `SELECT i2.version, ` + instanceColumnsI + `,
	s.step_id, s.kind, s.position, s.status, s.attempts, s.episode_id, s.result, coalesce(s.error_class, ''), s.error, s.due_at,
	coalesce(s.due_at <= now(), false), coalesce(e.status, ''), e.result, coalesce(e.error_class, ''), e.error_detail
FROM revenant_workflow_instances i
JOIN revenant_workflow_instances i2 ON i2.id = i.id
JOIN revenant_workflow_steps s ON s.instance_id = i.id
LEFT JOIN revenant_episodes e ON e.id = s.episode_id AND s.status = 'running'
WHERE i.id = $1
ORDER BY s.kind DESC, s.position`

// loadLockedSQL also locks the instance row. Caution: when it waits for the
// lock, READ COMMITTED re-fetches only the locked row (i); the joined rows
// still come from the statement's older snapshot. i2 is the same row read
// from that snapshot: if i.version and i2.version differ, another engine
// committed meanwhile and the caller reads again.
const loadLockedSQL = readInstanceSQL + `
FOR UPDATE OF i`

const instanceColumnsI = `i.id, i.workflow_id, i.status, coalesce(i.subject, ''), i.trigger, i.error, i.compensating, i.version,
	i.created_at, i.finished_at, coalesce(i.source_stack, ''), coalesce(i.source_env, '')`

// flushSQL writes one transition in one statement: changed steps, the
// instance, new episodes (deduplicated by key) and their wake-ups. The
// caller appends the outbox CTEs and the final SELECT.
const flushSQL = `WITH st AS (
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
	INSERT INTO revenant_episodes (id, actor_id, expectation, input, max_attempts, dedupe_key, source_stack, source_env,
		workflow_instance_id, workflow_step_id)
	SELECT x.id, x.actor, NULLIF(x.expectation, ''), x.input, x.max_attempts, x.dedupe_key, $20, $21, $1, x.step_id
	FROM unnest($13::uuid[], $14::text[], $15::text[], $16::jsonb[], $17::int[], $18::text[], $19::text[])
		AS x(id, actor, expectation, input, max_attempts, dedupe_key, step_id)
	ON CONFLICT ` + schema.DedupeConflictTarget + ` DO NOTHING
	RETURNING id
),
wake AS (SELECT pg_notify($22, a) FROM (SELECT DISTINCT unnest($14::text[]) AS a) d)`
