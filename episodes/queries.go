package episodes

import (
	"github.com/revenant-go/revenant/internal/dialect"
	"github.com/revenant-go/revenant/internal/schema"
)

// All of the package's SQL lives here. Placeholders are positional ($N);
// columns are always listed.

const episodeColumns = `id, actor_id, expectation, status, phase, input, result, error_class, error_detail,
	attempts, max_attempts, owner_node, claim_token, cancel_requested_at, created_at, started_at,
	last_activity_at, finished_at, archived_at, dedupe_key, source_stack, source_env,
	workflow_instance_id, workflow_step_id, metadata`

const insertSQL = `INSERT INTO revenant_episodes (id, actor_id, expectation, input, max_attempts, dedupe_key,
	source_stack, source_env, workflow_instance_id, workflow_step_id, metadata)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, coalesce($11::jsonb, '{}'::jsonb))
ON CONFLICT ` + schema.DedupeConflictTarget + ` DO NOTHING
RETURNING ` + episodeColumns

const getSQL = `SELECT ` + episodeColumns + ` FROM revenant_episodes WHERE id = $1`

// getByDedupeKeySQL finds the live episode holding a key in one actor and
// scope: keys of other actors, stacks or envs are other episodes.
const getByDedupeKeySQL = `SELECT ` + episodeColumns + `
FROM revenant_episodes
WHERE actor_id = $1 AND coalesce(source_stack, '') = coalesce($2, '') AND coalesce(source_env, '') = coalesce($3, '')
	AND dedupe_key = $4 AND archived_at IS NULL`

// stateSQL reads what a failed compare-and-set needs to explain itself.
const stateSQL = `SELECT status, claim_token FROM revenant_episodes WHERE id = $1`

// Each transition is one compare-and-set: the WHERE clause re-checks the
// allowed source statuses (and the claim token for a holder's writes).

const claimSQL = `UPDATE revenant_episodes
SET status = 'running', owner_node = $2, claim_token = claim_token + 1, attempts = attempts + 1,
	started_at = now(), last_activity_at = now(), phase = NULL
WHERE id = $1 AND status = 'pending'
RETURNING ` + episodeColumns

const completeSQL = `UPDATE revenant_episodes
SET status = 'done', result = $3, finished_at = now(), last_activity_at = now()
WHERE id = $1 AND claim_token = $2 AND status = 'running'
RETURNING ` + episodeColumns

const failSQL = `UPDATE revenant_episodes
SET status = 'failed', error_class = $3, error_detail = $4, finished_at = now(), last_activity_at = now()
WHERE id = $1 AND claim_token = $2 AND status = 'running'
RETURNING ` + episodeColumns

const blockSQL = `UPDATE revenant_episodes
SET status = 'blocked', phase = $3, last_activity_at = now()
WHERE id = $1 AND claim_token = $2 AND status = 'running'
RETURNING ` + episodeColumns

// releaseSQL hands a claimed episode back, e.g. on graceful shutdown. The
// attempt is given back too: a clean stop is not a crash.
const releaseSQL = `UPDATE revenant_episodes
SET status = 'pending', owner_node = NULL, attempts = greatest(attempts - 1, 0), last_activity_at = now()
WHERE id = $1 AND claim_token = $2 AND status = 'running'
RETURNING ` + episodeColumns

const setPhaseSQL = `UPDATE revenant_episodes
SET phase = $3, last_activity_at = now()
WHERE id = $1 AND claim_token = $2 AND status = 'running'
RETURNING ` + episodeColumns

const resumeSQL = `UPDATE revenant_episodes
SET status = 'pending', owner_node = NULL, phase = NULL, last_activity_at = now()
WHERE id = $1 AND status = 'blocked'
RETURNING ` + episodeColumns

const cancelSQL = `UPDATE revenant_episodes
SET status = 'canceled', error_class = 'canceled', error_detail = $2,
	cancel_requested_at = coalesce(cancel_requested_at, now()), finished_at = now()
WHERE id = $1 AND status IN ('pending', 'running', 'blocked')
RETURNING ` + episodeColumns

const archiveSQL = `UPDATE revenant_episodes
SET archived_at = coalesce(archived_at, now())
WHERE id = $1 AND status IN ('done', 'failed', 'canceled')
RETURNING ` + episodeColumns

const listSQLPrefix = `SELECT ` + episodeColumns + ` FROM revenant_episodes WHERE `

// queries is the package's SQL in one dialect. Every statement above is in
// the portable subset that dialect.Rewrite turns into SQLite.
type queries struct {
	insert, get, getByDedupeKey, claim, complete, fail, block, release, setPhase, resume, cancel, archive, listPrefix string
}

func queriesFor(d dialect.Dialect) *queries {
	r := d.Rewrite
	return &queries{
		insert: r(insertSQL), get: r(getSQL), getByDedupeKey: r(getByDedupeKeySQL),
		claim: r(claimSQL), complete: r(completeSQL), fail: r(failSQL), block: r(blockSQL),
		release: r(releaseSQL), setPhase: r(setPhaseSQL), resume: r(resumeSQL), cancel: r(cancelSQL),
		archive: r(archiveSQL), listPrefix: r(listSQLPrefix),
	}
}
