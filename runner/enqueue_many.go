package runner

import (
	"context"
	"fmt"
	"sort"

	"github.com/jmoiron/sqlx"

	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/internal/dbx"
	"github.com/revenant-go/revenant/internal/store"
)

// EnqueueMany creates many pending episodes in one transaction, one
// statement per episodes.CreateManyBatch rows, and wakes runners once per
// batch, on commit. Every element is checked first (an invalid one
// refuses the call, with its index); duplicates of a taken dedupe key
// return the episode holding it. Results are in the order of ps.
func (r *Runner) EnqueueMany(ctx context.Context, ps []episodes.CreateParams) ([]*episodes.CreateResult, error) {
	var out []*episodes.CreateResult
	err := r.inTx(ctx, func(tx *sqlx.Tx) error {
		var err error
		out, err = r.EnqueueManyTx(ctx, tx, ps)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("enqueue many: %w", err)
	}
	r.signal()
	return out, nil
}

// EnqueueManyTx is EnqueueMany inside the caller's transaction: the
// episodes exist, and runners are woken, only if it commits.
func (r *Runner) EnqueueManyTx(ctx context.Context, tx episodes.Executor, ps []episodes.CreateParams) ([]*episodes.CreateResult, error) {
	if err := dbx.CheckExecutor("runner EnqueueManyTx", tx); err != nil {
		return nil, err
	}
	if len(ps) == 0 {
		return nil, nil
	}
	ps = append([]episodes.CreateParams(nil), ps...) // the caller's slice is left as it was
	r.mu.Lock()
	for i := range ps {
		if a, ok := r.actors[ps[i].ActorID]; ok && ps[i].MaxAttempts == 0 {
			ps[i].MaxAttempts = a.MaxAttempts
		}
	}
	r.mu.Unlock()
	// Each actor and scope is checked once (and cached, as Enqueue does).
	known := map[store.ActorScope]bool{}
	for _, p := range ps {
		a := r.scopeOf(p)
		if _, done := known[a]; done {
			continue
		}
		k, err := r.actorKnown(ctx, tx, p)
		if err != nil {
			return nil, err
		}
		if !k && r.config.StrictActors {
			return nil, fmt.Errorf("%w: %q: no live node in scope (stack %q, env %q) has registered it and it has no definition; check the spelling, register it on a node, define it (package actors), or unset StrictActors to enqueue anyway",
				ErrUnknownActor, a.ActorID, a.Stack, a.Env)
		}
		known[a] = k
	}
	out, err := r.store.CreateManyTx(ctx, tx, ps)
	if err != nil {
		return nil, err
	}
	wake := map[string]bool{}
	for i, res := range out {
		res.UnknownActor = !known[r.scopeOf(ps[i])]
		if !res.Duplicate {
			wake[ps[i].ActorID] = true
		}
	}
	if len(wake) > 0 {
		actors := make([]string, 0, len(wake))
		for a := range wake {
			actors = append(actors, a)
		}
		sort.Strings(actors)
		if err := r.st.NotifyEach(ctx, tx, store.PendingChannel, actors); err != nil {
			return nil, fmt.Errorf("enqueue many: notify: %w", err)
		}
	}
	return out, nil
}
