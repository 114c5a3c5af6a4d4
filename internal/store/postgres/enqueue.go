package postgres

import (
	"context"

	"github.com/lib/pq"

	"github.com/revenant-go/revenant/internal/schema"
	"github.com/revenant-go/revenant/internal/store"
)

// episodeInsertManySQL inserts a batch in one statement from parallel
// arrays; rows whose dedupe key is taken are left out of RETURNING. A
// batch without dedupe keys cannot conflict on one, and skips ON
// CONFLICT's speculative insertion (episodeInsertManyPlainSQL).
const episodeInsertManyPlainSQL = `INSERT INTO revenant_episodes (id, actor_id, expectation, input, max_attempts, dedupe_key,
	source_stack, source_env, workflow_instance_id, workflow_step_id, metadata, run_at, retry_policy)
SELECT x.id, x.actor, NULLIF(x.expectation, ''), x.input, x.max_attempts, NULLIF(x.dedupe_key, ''),
	NULLIF(x.stack, ''), NULLIF(x.env, ''), x.wf, NULLIF(x.step, ''), coalesce(x.meta, '{}'::jsonb),
	coalesce(x.run_at, now() + coalesce(x.delay_ms, 0) * interval '1 millisecond'), x.retry
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::jsonb[], $5::int[], $6::text[], $7::text[], $8::text[],
	$9::uuid[], $10::text[], $11::jsonb[], $12::timestamptz[], $13::bigint[], $14::jsonb[])
	AS x(id, actor, expectation, input, max_attempts, dedupe_key, stack, env, wf, step, meta, run_at, delay_ms, retry)
`

const episodeInsertManySQL = episodeInsertManyPlainSQL + `ON CONFLICT ` + schema.DedupeConflictTarget + ` DO NOTHING
` + insertedColumns

// insertedColumns are what a batch reads back: the rest it knows.
const insertedColumns = `RETURNING id, created_at, run_at`

// EpisodeInsertMany implements store.Store.
func (Store) EpisodeInsertMany(ctx context.Context, q store.Querier, rows []*store.EpisodeInsertParams) ([]*store.Episode, error) {
	n := len(rows)
	ids, actors, exps, keys, stacks, envs, steps := make([]string, n), make([]string, n), make([]string, n),
		make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	inputs, metas, retries, wfs, runAts := make([]*string, n), make([]*string, n), make([]*string, n), make([]*string, n), make([]*string, n)
	maxes, delays := make([]int64, n), make([]int64, n)
	query := episodeInsertManyPlainSQL + insertedColumns
	for i, p := range rows {
		if p.DedupeKey != "" {
			query = episodeInsertManySQL
		}
		ids[i], actors[i], exps[i], keys[i] = p.ID.String(), p.ActorID, p.Expectation, p.DedupeKey
		stacks[i], envs[i], steps[i] = p.SourceStack, p.SourceEnv, p.WorkflowStepID
		inputs[i], metas[i], retries[i] = textOf(p.Input), textOf(p.Metadata), textOf(p.Retry)
		if store.NullUUID(p.WorkflowInstanceID) != nil {
			wf := p.WorkflowInstanceID.String()
			wfs[i] = &wf
		}
		if !p.RunAt.IsZero() {
			at := p.RunAt.UTC().Format("2006-01-02T15:04:05.999999Z07:00")
			runAts[i] = &at
		}
		maxes[i], delays[i] = int64(p.MaxAttempts), p.DelayMillis
	}
	res, err := q.QueryContext(ctx, query, pq.Array(ids), pq.Array(actors), arrayOrNull(exps),
		arrayOrNull(inputs), pq.Array(maxes), arrayOrNull(keys), arrayOrNull(stacks), arrayOrNull(envs), arrayOrNull(wfs),
		arrayOrNull(steps), arrayOrNull(metas), arrayOrNull(runAts), arrayOrNull(delays), arrayOrNull(retries))
	return store.ScanInserted(res, err, rows)
}

// arrayOrNull sends a column no row of the batch sets as NULL instead of
// an array of zero values: unnest pads it with NULLs, which the statement
// reads as unset. Most batches set few of the fourteen columns, and each
// array is encoded in Go and parsed in the database, element by element.
func arrayOrNull[T comparable](a []T) any {
	var zero T
	for _, v := range a {
		if v != zero {
			return pq.Array(a)
		}
	}
	return nil
}

// textOf is an encoded JSON value (a string) or nil as an array element.
func textOf(v any) *string {
	if s, ok := v.(string); ok {
		return &s
	}
	if b, ok := v.([]byte); ok && b != nil {
		s := string(b)
		return &s
	}
	return nil
}
