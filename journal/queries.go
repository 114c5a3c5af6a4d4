package journal

// All of the package's SQL lives here.

// loadSQL returns the episode's fencing state on every row, plus its steps
// (one row with NULL step columns when there are none).
const loadSQL = `SELECT e.status, e.claim_token, s.seq, s.name, s.status, s.output, s.error
FROM revenant_episodes e
LEFT JOIN revenant_steps s ON s.episode_id = e.id
WHERE e.id = $1
ORDER BY s.seq`

// insertStepSQL records a step and bumps the episode's activity time in one
// statement. The UPDATE is the fence: with a stale token or a non-running
// episode it matches nothing, so nothing is inserted. Parameters in the
// SELECT list are cast because INSERT … SELECT does not infer their types.
const insertStepSQL = `WITH ep AS (
	UPDATE revenant_episodes SET last_activity_at = now()
	WHERE id = $1 AND claim_token = $2 AND status = 'running'
	RETURNING id
)
INSERT INTO revenant_steps (episode_id, seq, name, status, output, error, claim_token, started_at)
SELECT ep.id, $3::integer, $4::text, $5::text, $6::jsonb, $7::jsonb, $2::bigint,
	now() - ($8::bigint * interval '1 microsecond')
FROM ep
ON CONFLICT (episode_id, seq) DO NOTHING
RETURNING seq`

// fenceSQL locks the episode row for a transactional step, under the token.
const fenceSQL = `UPDATE revenant_episodes SET last_activity_at = now()
WHERE id = $1 AND claim_token = $2 AND status = 'running'`

// conflictSQL explains an insert that matched no row.
const conflictSQL = `SELECT e.status, e.claim_token, s.name, s.claim_token, s.status
FROM revenant_episodes e
LEFT JOIN revenant_steps s ON s.episode_id = e.id AND s.seq = $2
WHERE e.id = $1`

const episodeStateSQL = `SELECT status, claim_token FROM revenant_episodes WHERE id = $1`
