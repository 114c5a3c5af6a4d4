package journal

// All of the package's SQL lives here.

// loadSQL returns the episode's fencing state on every row, plus its steps
// (one row with NULL step columns when there are none).
const loadSQL = `SELECT e.status, e.claim_token, s.seq, s.name, s.status, s.output, s.error
FROM revenant_episodes e
LEFT JOIN revenant_steps s ON s.episode_id = e.id
WHERE e.id = $1
ORDER BY s.seq`

// recordStepSQL records a step and bumps the episode's activity time. The
// function's UPDATE is the fence: with a stale token or a non-running episode
// it matches nothing and nothing is inserted (see migrations/sql).
const recordStepSQL = `SELECT revenant_record_step($1, $2, $3, $4, $5, $6, $7, $8)`

// fenceSQL locks the episode row for a transactional step, under the token.
const fenceSQL = `UPDATE revenant_episodes SET last_activity_at = now()
WHERE id = $1 AND claim_token = $2 AND status = 'running'`

const episodeStateSQL = `SELECT status, claim_token FROM revenant_episodes WHERE id = $1`
