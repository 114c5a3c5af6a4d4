package sqlite

import (
	"context"
	"errors"

	"github.com/google/uuid"

	"github.com/revenant-go/revenant/internal/schema"
	"github.com/revenant-go/revenant/internal/store"
)

// claimManySQL claims up to $3 pending episodes of one actor. One UPDATE
// statement takes SQLite's single write lock before it reads, so the
// subquery sees every committed claim and none can interleave: claims stay
// exclusive without SKIP LOCKED (runners on one file take turns instead of
// side by side).
//
// Only due episodes are claimed, in due order, and none while the actor's
// breaker is not closed (a probe claim leaves that test out), as on
// Postgres. Each claimed row comes back with its journal, as on Postgres
// (one writer at a time: the journal read is the claim's own), or NULL
// when a step holds malformed JSON: journal.Open then reads the journal
// and reports that episode alone, instead of the whole claim failing.
func claimManySQL(scope string, probe bool) string {
	return `UPDATE revenant_episodes
SET status = 'running', owner_node = $1, claim_token = claim_token + 1, attempts = attempts + 1,
	started_at = ` + now + `, last_activity_at = ` + now + `, phase = NULL
WHERE id IN (
	SELECT id FROM revenant_episodes
	WHERE status = 'pending' AND actor_id = $2 AND run_at <= ` + now + ` AND archived_at IS NULL AND ` + schema.Bumpable("") + scope +
		breakerClosed(probe) + nodeNotStopped + `
	ORDER BY run_at, id
	LIMIT $3
) AND status = 'pending'
RETURNING ` + store.EpisodeColumns + `,
	(SELECT CASE WHEN min(coalesce(json_valid(s.output), 1) AND coalesce(json_valid(s.error), 1)) = 0 THEN NULL
		ELSE json_group_array(json_array(s.seq, s.name, s.status,
			CASE WHEN json_valid(s.output) THEN json(s.output) END, CASE WHEN json_valid(s.error) THEN json(s.error) END)) END
	FROM revenant_steps s WHERE s.episode_id = revenant_episodes.id)`
}

const handBackSQL = `UPDATE revenant_episodes
SET status = 'pending', owner_node = NULL, phase = NULL, last_activity_at = ` + now + `
WHERE id = $1 AND claim_token = $2 AND status = 'running' AND owner_node = $3`

const failUnreadableSQL = `UPDATE revenant_episodes
SET status = 'failed', error_class = 'corrupt_row', error_detail = $3, finished_at = ` + now + `, last_activity_at = ` + now + `
WHERE id = $1 AND claim_token = $2 AND status = 'running'`

// EpisodeClaimMany implements store.Store.
func (Store) EpisodeClaimMany(ctx context.Context, q store.Querier, p *store.ClaimManyParams) ([]store.ClaimedRow, error) {
	if p.StartedEvent != "" {
		return nil, errors.New("store: sqlite cannot write a claim's events in its statement (no StatementEvents)")
	}
	return store.RunClaimMany(ctx, q, claimManySQL(p.ClaimScope(), p.Probe), p)
}

// EpisodeHandBack implements store.Store.
func (Store) EpisodeHandBack(ctx context.Context, q store.Querier, id uuid.UUID, claimToken int64, node string) (bool, error) {
	return store.Affected(q.ExecContext(ctx, handBackSQL, id, claimToken, node))
}

// EpisodeFailUnreadable implements store.Store.
func (Store) EpisodeFailUnreadable(ctx context.Context, q store.Querier, id uuid.UUID, claimToken int64, detail string) error {
	_, err := q.ExecContext(ctx, failUnreadableSQL, id, claimToken, detail)
	return err
}

// nodeNotStopped refuses a claim by a node whose row a sweep marked
// stopped (found dead): until its heartbeat notices and it re-registers,
// whatever it claimed would be an orphan at once, and each such claim
// would cost the episode an attempt.
const nodeNotStopped = `
		AND NOT EXISTS (SELECT 1 FROM revenant_nodes n WHERE n.node_id = $1 AND n.stopped_at IS NOT NULL)`

// breakerClosed is the claim's breaker test ($2 actor, $4 stack, $5 env):
// closed for a claim, at most half-open for a probe (which moved it there
// in its transaction).
func breakerClosed(probe bool) string {
	blocking := `<> 'closed'`
	if probe {
		blocking = `= 'open'`
	}
	return `
		AND NOT EXISTS (SELECT 1 FROM revenant_breakers b WHERE b.actor_id = $2 AND b.stack = $4 AND b.env = $5 AND b.state ` + blocking + `)`
}
