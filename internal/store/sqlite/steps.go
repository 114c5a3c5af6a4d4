package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/google/uuid"

	"github.com/revenant-go/revenant/internal/dbx"
	"github.com/revenant-go/revenant/internal/store"
)

const stepLoadSQL = `SELECT e.status, e.claim_token, e.attempts, e.max_attempts, e.error_class, e.error_detail,
	s.seq, s.name, s.status, s.output, s.error
FROM revenant_episodes e
LEFT JOIN revenant_steps s ON s.episode_id = e.id
WHERE e.id = $1
ORDER BY s.seq`

// stepRecordSQL: there is no stored procedure here. The INSERT … SELECT is
// the fence (it selects the episode row only when running under the
// token), and a trigger on revenant_steps bumps the episode's activity
// time in the same statement. No row back means fenced off or sequence
// taken; StepRecord reads the episode to tell which.
const stepRecordSQL = `INSERT INTO revenant_steps (episode_id, seq, name, status, output, error, claim_token, started_at, finished_at)
SELECT e.id, $3, $4, $5, $6, $7, e.claim_token,
	strftime('%Y-%m-%d %H:%M:%f', 'now', printf('%+.6f seconds', -($8 / 1000000.0))), ` + now + `
FROM revenant_episodes e
WHERE e.id = $1 AND e.claim_token = $2 AND e.status = 'running'
ON CONFLICT (episode_id, seq) DO NOTHING
RETURNING 1`

// StepLoad implements store.Store.
func (Store) StepLoad(ctx context.Context, q store.Querier, episodeID uuid.UUID) (*store.StepJournal, error) {
	return store.RunStepLoad(ctx, q, stepLoadSQL, episodeID)
}

// StepRecord implements store.Store.
func (Store) StepRecord(ctx context.Context, q store.Querier, p *store.StepRecordParams) (store.StepOutcome, error) {
	var one int
	err := q.QueryRowContext(ctx, stepRecordSQL, p.EpisodeID, p.ClaimToken, p.Seq, p.Name, p.Status,
		p.Output, p.Error, p.Took.Microseconds()).Scan(&one)
	if err == nil {
		return store.StepRecorded, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return store.StepFenced, dbx.Explain(err)
	}
	status, token, err := store.EpisodeState(ctx, q, episodeStateSQL, p.EpisodeID)
	if errors.Is(err, dbx.ErrNotFound) {
		return store.StepFenced, nil // the episode is gone
	}
	if err != nil {
		// A failed read (a locked file, a lost connection, an unreadable
		// row) says nothing about the lease: report it as it is.
		return store.StepFenced, fmt.Errorf("reading the episode's state after the write matched nothing: %w", dbx.Explain(err))
	}
	if status == "running" && token == p.ClaimToken {
		return store.StepSeqTaken, nil
	}
	return store.StepFenced, nil
}

// StepTxPrepare implements store.Store: SQLite has no idle-in-transaction
// timeout (and a transaction from sqlite.Open holds the file's write lock
// from BEGIN).
func (Store) StepTxPrepare(context.Context, store.Querier, int64) error { return nil }

// SessionIdleTimeout implements store.Store: none on SQLite.
func (Store) SessionIdleTimeout(context.Context, store.Querier) (int64, error) { return 0, nil }

// stepListSQL lists an episode's journal entries; $2 asks for outputs.
const stepListSQL = `SELECT seq, name, status, started_at, finished_at, claim_token, length(CAST(output AS BLOB)),
	CASE WHEN $2 THEN output END, error
FROM revenant_steps WHERE episode_id = $1 ORDER BY seq`

// StepList implements store.Store.
func (Store) StepList(ctx context.Context, q store.Querier, episodeID uuid.UUID, withOutput bool) ([]store.StepDetail, error) {
	return store.ScanStepDetails(q.QueryContext(ctx, stepListSQL, episodeID, withOutput))
}
