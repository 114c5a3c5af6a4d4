package postgres

import (
	"context"
	"strconv"

	"github.com/google/uuid"

	"github.com/revenant-go/revenant/internal/schema"
	"github.com/revenant-go/revenant/internal/store"
)

// claimManySQL claims up to $3 pending episodes of one actor, oldest
// first, in one compare-and-set statement: SKIP LOCKED lets runners on
// many nodes claim side by side without waiting on or double-claiming a
// row. MATERIALIZED: an inlined LIMIT … FOR UPDATE subquery can be
// rescanned once per outer row of a nested loop, claiming far more than
// LIMIT.
//
// Only due episodes are claimed (run_at is past by the database clock), in
// due order: the partial index on (actor_id, run_at, id) holds future rows
// past now, so they cost the claim nothing. The breaker test is part of
// the same statement, an uncorrelated subquery on the breakers' primary
// key computed once; a probe claim (the breaker's half-open trial, in its
// own transaction) leaves it out.
//
// Each claimed row comes back with its journal (claimedStepsSQL), so that
// a restarted run needs no read of its own: 10,000 episodes restarted at
// once cost one statement, not 10,000.
func claimManySQL(scope string, probe bool) string {
	return claimCTEs(scope, probe) + "\n" + claimedSelect
}

// claimedSelect returns the claimed rows (CTE u) and their journals.
var claimedSelect = `SELECT ` + store.QualifiedEpisodeColumns("u") + `, ` + claimedStepsSQL("u") + `
FROM u`

// claimCTEs are the claim's common table expressions: c locks the rows,
// u claims them.
func claimCTEs(scope string, probe bool) string {
	return `WITH c AS MATERIALIZED (
	SELECT id FROM revenant_episodes
	WHERE status = 'pending' AND actor_id = $2 AND run_at <= now() AND archived_at IS NULL AND ` + schema.Bumpable("") + scope +
		breakerClosed(probe) + nodeNotStopped + `
	ORDER BY run_at, id
	LIMIT $3
	FOR UPDATE SKIP LOCKED
),
u AS (
	UPDATE revenant_episodes e
	SET status = 'running', owner_node = $1, claim_token = e.claim_token + 1, attempts = e.attempts + 1,
		started_at = now(), last_activity_at = now(), phase = NULL
	FROM c
	WHERE e.id = c.id AND e.status = 'pending'
	RETURNING ` + store.QualifiedEpisodeColumns("e") + `
)`
}

// claimWithEventsSQL is claimManySQL that also writes an outbox event of
// type $N (startedArg) per claimed row in the same statement: what the
// claim's transaction did in three more round trips. The event is the one
// the runner would publish: the episode's ids, its status and the error
// class of an attempt before it. No NOTIFY: the caller announces the
// events after the commit (EventAnnounce).
func claimWithEventsSQL(scope string, probe bool, startedArg int) string {
	return claimCTEs(scope, probe) + `,
ev AS (
	INSERT INTO revenant_events (id, type, episode_id, actor_id, workflow_instance_id, workflow_step_id, status, error_class)
	SELECT ` + newEventIDSQL + `, $` + strconv.Itoa(startedArg) + `, u.id, u.actor_id, u.workflow_instance_id, u.workflow_step_id, u.status, u.error_class
	FROM u
	RETURNING seq
)
` + claimedSelect
}

// claimedStepsSQL is the steps of the episode alias names, as a JSON
// array of [seq, name, status, output, error] arrays (store.RunClaimMany
// reads it), or NULL when the statement's snapshot may lack some: the
// claim may lock a row that changed after the snapshot was taken (a
// claim, steps and a release by another node in between), and the steps
// are read from that snapshot. Unless the snapshot's token is the one the
// claim replaced, NULL lets journal.Open read the journal itself, after
// the claim committed.
func claimedStepsSQL(alias string) string {
	return `CASE WHEN (SELECT x.claim_token FROM revenant_episodes x WHERE x.id = ` + alias + `.id) = ` + alias + `.claim_token - 1
	THEN coalesce((SELECT json_agg(json_build_array(s.seq, s.name, s.status, s.output, s.error) ORDER BY s.seq)
		FROM revenant_steps s WHERE s.episode_id = ` + alias + `.id), '[]') END`
}

const handBackSQL = `UPDATE revenant_episodes
SET status = 'pending', owner_node = NULL, phase = NULL, last_activity_at = now()
WHERE id = $1 AND claim_token = $2 AND status = 'running' AND owner_node = $3`

const failUnreadableSQL = `UPDATE revenant_episodes
SET status = 'failed', error_class = 'corrupt_row', error_detail = $3, finished_at = now(), last_activity_at = now()
WHERE id = $1 AND claim_token = $2 AND status = 'running'`

// EpisodeClaimMany implements store.Store.
func (Store) EpisodeClaimMany(ctx context.Context, q store.Querier, p *store.ClaimManyParams) ([]store.ClaimedRow, error) {
	if p.StartedEvent != "" {
		return store.RunClaimMany(ctx, q, claimWithEventsSQL(p.ClaimScope(), p.Probe, p.ArgCount()+1), p, p.StartedEvent)
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
