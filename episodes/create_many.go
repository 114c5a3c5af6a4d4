package episodes

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"

	"github.com/revenant-go/revenant/internal/dbx"
	"github.com/revenant-go/revenant/internal/store"
)

// CreateManyBatch is how many episodes one statement of CreateMany
// inserts; larger slices take several statements (in the caller's
// transaction with CreateManyTx).
const CreateManyBatch = 10000

// CreateMany inserts many pending episodes in one statement per
// CreateManyBatch rows, in one transaction. Every element is checked
// before anything is written: an invalid one refuses the whole call, with
// its index. An element whose dedupe key is taken (by an existing episode
// or an earlier element) returns the episode holding it, with Duplicate
// set. Results are in the order of ps. Inputs and metadata are returned as
// given (Postgres stores them normalized: key order and spacing may
// differ when read back).
func (s *Store) CreateMany(ctx context.Context, ps []CreateParams) ([]*CreateResult, error) {
	var out []*CreateResult
	err := dbx.InTx(ctx, s.db, func(tx *sqlx.Tx) error {
		var err error
		out, err = s.CreateManyTx(ctx, tx, ps)
		return err
	})
	return out, err
}

// CreateManyTx is CreateMany inside the caller's transaction: the
// episodes exist only if it commits.
func (s *Store) CreateManyTx(ctx context.Context, tx Executor, ps []CreateParams) ([]*CreateResult, error) {
	if err := dbx.CheckExecutor("episodes.CreateManyTx", tx); err != nil {
		return nil, err
	}
	rows := make([]*store.EpisodeInsertParams, len(ps))
	seen := make(map[uuid.UUID]int, len(ps))
	for i, p := range ps {
		row, err := s.rowOf(p)
		if err != nil {
			return nil, fmt.Errorf("episode %d of %d: %w", i, len(ps), err)
		}
		// Rows are matched to what the insert returned by id: an id given
		// twice would mix two elements up.
		if j, dup := seen[row.ID]; dup {
			return nil, fmt.Errorf("%w: episodes %d and %d of %d have the same ID %s; give each its own (or leave ID empty)",
				ErrInvalidInput, j, i, len(ps), row.ID)
		}
		seen[row.ID] = i
		rows[i] = row
	}
	out := make([]*CreateResult, len(ps))
	for start := 0; start < len(rows); start += CreateManyBatch {
		batch := rows[start:min(start+CreateManyBatch, len(rows))]
		inserted, err := s.st.EpisodeInsertMany(ctx, tx, batch)
		if err != nil {
			return nil, fmt.Errorf("creating %d episodes: %w", len(batch), dbx.Explain(err))
		}
		byID := make(map[uuid.UUID]*store.Episode, len(inserted))
		for _, ep := range inserted {
			byID[ep.ID] = ep
		}
		for i, row := range batch {
			if ep, ok := byID[row.ID]; ok {
				out[start+i] = &CreateResult{Episode: (*Episode)(ep)}
				continue
			}
			// Not inserted: its dedupe key is held (a row inserted with a
			// given id that is not returned can only be a dedupe conflict;
			// an id conflict is an error).
			ep, err := s.st.EpisodeGetByDedupeKey(ctx, tx, row.ActorID, row.SourceStack, row.SourceEnv, row.DedupeKey)
			if err != nil {
				if errors.Is(err, ErrNotFound) {
					return nil, fmt.Errorf("episode %d of %d (actor %q): not inserted and no episode holds its dedupe key", start+i, len(ps), row.ActorID)
				}
				return nil, fmt.Errorf("reading the episode holding a dedupe key of actor %q: %w", row.ActorID, dbx.Explain(err))
			}
			out[start+i] = &CreateResult{Episode: (*Episode)(ep), Duplicate: true}
		}
	}
	return out, nil
}
