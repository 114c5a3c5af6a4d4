package sqlite

import (
	"context"
	"encoding/json"

	"github.com/revenant-go/revenant/internal/dialect"
	"github.com/revenant-go/revenant/internal/schema"
	"github.com/revenant-go/revenant/internal/store"
)

// episodeInsertManySQL inserts a batch in one statement from one JSON
// array of row arrays; rows whose dedupe key is taken are left out of
// RETURNING. The clock is read once for rows due now (the common case).
// ("WHERE true" keeps ON CONFLICT from parsing as a join
// constraint.)
var episodeInsertManySQL = `WITH c AS (SELECT ` + now + ` AS now)
INSERT INTO revenant_episodes (id, actor_id, expectation, input, max_attempts, dedupe_key,
	source_stack, source_env, workflow_instance_id, workflow_step_id, metadata, run_at, retry_policy)
SELECT value ->> 0, value ->> 1, NULLIF(value ->> 2, ''), value ->> 3, value ->> 4, NULLIF(value ->> 5, ''),
	NULLIF(value ->> 6, ''), NULLIF(value ->> 7, ''), value ->> 8, NULLIF(value ->> 9, ''), coalesce(value ->> 10, '{}'),
	coalesce(value ->> 11, CASE WHEN value ->> 12 = 0 THEN c.now ELSE ` + dialect.SQLiteNowPlusMillis("(value ->> 12)") + ` END),
	value ->> 13
FROM json_each($1), c WHERE true
ON CONFLICT ` + schema.DedupeConflictTarget + ` DO NOTHING
RETURNING id, created_at, run_at`

// EpisodeInsertMany implements store.Store.
func (Store) EpisodeInsertMany(ctx context.Context, q store.Querier, rows []*store.EpisodeInsertParams) ([]*store.Episode, error) {
	batch := make([][14]any, len(rows))
	for i, p := range rows {
		var runAt, wf any
		if !p.RunAt.IsZero() {
			runAt = timeArg(p.RunAt)
		}
		if id := store.NullUUID(p.WorkflowInstanceID); id != nil {
			wf = p.WorkflowInstanceID.String()
		}
		batch[i] = [14]any{p.ID.String(), p.ActorID, p.Expectation, p.Input, p.MaxAttempts, p.DedupeKey, p.SourceStack,
			p.SourceEnv, wf, p.WorkflowStepID, p.Metadata, runAt, p.DelayMillis, p.Retry}
	}
	arg, err := json.Marshal(batch)
	if err != nil {
		return nil, err
	}
	res, err := q.QueryContext(ctx, episodeInsertManySQL, string(arg))
	return store.ScanInserted(res, err, rows)
}
