package journal

import "github.com/revenant-go/revenant/internal/dialect"

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

// sqliteRecordStepSQL is recordStepSQL on SQLite, where there is no stored
// procedure: the INSERT … SELECT is the fence (it selects the episode row
// only when running under the token), and a trigger on revenant_steps
// bumps the episode's activity time in the same statement. No row back
// means fenced off or sequence taken; sqliteOutcome tells which.
const sqliteRecordStepSQL = `INSERT INTO revenant_steps (episode_id, seq, name, status, output, error, claim_token, started_at, finished_at)
SELECT e.id, $3, $4, $5, $6, $7, e.claim_token,
	strftime('%Y-%m-%d %H:%M:%f', 'now', printf('%+.6f seconds', -($8 / 1000000.0))), ` + dialect.SQLiteNow + `
FROM revenant_episodes e
WHERE e.id = $1 AND e.claim_token = $2 AND e.status = 'running'
ON CONFLICT (episode_id, seq) DO NOTHING
RETURNING 1`

type queries struct {
	fence string
	// sqlite selects the INSERT … SELECT journal write.
	sqlite bool
}

func queriesFor(d dialect.Dialect) *queries {
	return &queries{fence: d.Rewrite(fenceSQL), sqlite: d == dialect.SQLite}
}
