package postgres

import (
	"context"
	"fmt"

	"github.com/google/uuid"

	"github.com/revenant-go/revenant/internal/store"
)

// stepLoadSQL returns the episode's fencing state on every row, plus its
// steps (one row with NULL step columns when there are none).
const stepLoadSQL = `SELECT e.status, e.claim_token, e.attempts, e.max_attempts, e.error_class, e.error_detail,
	s.seq, s.name, s.status, s.output, s.error
FROM revenant_episodes e
LEFT JOIN revenant_steps s ON s.episode_id = e.id
WHERE e.id = $1
ORDER BY s.seq`

// stepRecordSQL records a step and bumps the episode's activity time (at
// most once a second) in one call, whatever the driver (the function's
// plans are cached). Its row lock on the episode is the fence: with a
// stale token it locks nothing and inserts nothing; a non-running episode
// under the same token (finished by its own run) is locked until the
// step's transaction rolls back, and nothing is inserted; otherwise the
// episode cannot move until the step commits. It returns 1 recorded, 0
// fenced off, -1 sequence taken (see migrations/sql).
const stepRecordSQL = `SELECT revenant_record_step($1, $2, $3, $4, $5, $6, $7, $8)`

// StepLoad implements store.Store.
func (Store) StepLoad(ctx context.Context, q store.Querier, episodeID uuid.UUID) (*store.StepJournal, error) {
	return store.RunStepLoad(ctx, q, stepLoadSQL, episodeID)
}

// StepRecord implements store.Store.
func (Store) StepRecord(ctx context.Context, q store.Querier, p *store.StepRecordParams) (store.StepOutcome, error) {
	var outcome int
	err := q.QueryRowContext(ctx, stepRecordSQL, p.EpisodeID, p.ClaimToken, p.Seq, p.Name, p.Status,
		p.Output, p.Error, p.Took.Microseconds()).Scan(&outcome)
	if err != nil {
		return store.StepFenced, err
	}
	switch outcome {
	case 1:
		return store.StepRecorded, nil
	case 0:
		return store.StepFenced, nil
	default:
		return store.StepSeqTaken, nil
	}
}

// StepTxPrepare implements store.Store. SET takes no parameters; the
// value is an integer we format.
func (Store) StepTxPrepare(ctx context.Context, tx store.Querier, idleTimeoutMillis int64) error {
	if idleTimeoutMillis <= 0 {
		return nil
	}
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("SET LOCAL idle_in_transaction_session_timeout = %d", idleTimeoutMillis)); err != nil {
		return fmt.Errorf("setting idle timeout: %w", err)
	}
	return nil
}

// SessionIdleTimeout implements store.Store. pg_settings gives the value
// in its unit, milliseconds, whatever unit set it.
func (Store) SessionIdleTimeout(ctx context.Context, q store.Querier) (int64, error) {
	var ms int64
	err := q.QueryRowContext(ctx, `SELECT setting::bigint FROM pg_settings WHERE name = 'idle_in_transaction_session_timeout'`).Scan(&ms)
	return ms, err
}

// stepListSQL lists an episode's journal entries; $2 asks for outputs.
const stepListSQL = `SELECT seq, name, status, started_at, finished_at, claim_token, octet_length(output::text),
	CASE WHEN $2 THEN output END, error
FROM revenant_steps WHERE episode_id = $1 ORDER BY seq`

// StepList implements store.Store.
func (Store) StepList(ctx context.Context, q store.Querier, episodeID uuid.UUID, withOutput bool) ([]store.StepDetail, error) {
	return store.ScanStepDetails(q.QueryContext(ctx, stepListSQL, episodeID, withOutput))
}
