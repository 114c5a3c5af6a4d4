package recovery

import (
	"context"
	"fmt"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"

	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/internal/dbx"
	"github.com/revenant-go/revenant/internal/store"
	"github.com/revenant-go/revenant/internal/store/backend"
)

// dryRun reports what a sweep would do with each orphan, and why, changing
// nothing. It resolves policies exactly as the real sweep does.
func dryRun(ctx context.Context, db conn, c *config, res *Result) error {
	orphans, err := c.st.OrphanList(ctx, db, c.orphans(), DryRunLimitDefault)
	if err != nil {
		return fmt.Errorf("sweep: listing orphans: %w", err)
	}
	var actors, owners []string
	seen := map[string]bool{}
	for _, o := range orphans {
		if a := "a:" + o.Episode.ActorID; !seen[a] {
			seen[a] = true
			actors = append(actors, o.Episode.ActorID)
		}
		if n := "n:" + o.Episode.OwnerNode; o.Episode.OwnerNode != "" && !seen[n] {
			seen[n] = true
			owners = append(owners, o.Episode.OwnerNode)
		}
	}
	r, err := newResolver(ctx, db, c, owners, actors)
	if err != nil {
		return fmt.Errorf("sweep: %w", err)
	}
	for _, o := range orphans {
		pl := plan(ctx, c, r, o)
		switch pl.Action {
		case ActionSkip:
			res.Skipped++
			res.Errors = append(res.Errors, EpisodeError{EpisodeID: pl.EpisodeID, ActorID: pl.ActorID, Err: pl.Err})
		case ActionRestart:
			res.Restarted++
		case ActionDeadLetter:
			res.DeadLettered++
		default:
			res.Failed++
		}
		res.Plans = append(res.Plans, pl)
	}
	return nil
}

// plan is the verdict on one orphan, by the policy the sweep would use.
func plan(ctx context.Context, c *config, r *resolver, o store.Orphan) Plan {
	ep := (*episodes.Episode)(o.Episode)
	pl := Plan{EpisodeID: ep.ID, ActorID: ep.ActorID, Expectation: ep.Expectation, Reason: o.Reason,
		PreviousOwner: ep.OwnerNode, Attempts: ep.Attempts, MaxAttempts: ep.MaxAttempts}
	var v resolved
	if c.ResolvePolicy != nil {
		p, err := c.callback(ctx, ep)
		v = resolved{policy: p, source: SourceCallback, err: err}
	} else {
		v = r.resolve(orphanKey{ep.OwnerNode, ep.ActorID, ep.Expectation})
	}
	pl.Policy, pl.PolicySource, pl.Err = v.policy, v.source, v.err
	switch {
	case v.err != nil:
		pl.Action = ActionSkip
	case v.policy == Restart && ep.Attempts < ep.MaxAttempts:
		pl.Action = ActionRestart
	case v.policy == Restart:
		pl.Action = ActionDeadLetter
	default:
		pl.Action = ActionFail
	}
	return pl
}

// Explain says what a sweep with opts would do now with one episode, by
// the same rules and the same policy resolution as Sweep (a dry run of one
// episode): nil when it is not an orphan in the sweep's scope (its owner
// is alive, it is not running, or it is out of scope). It changes nothing.
func Explain(ctx context.Context, db *sqlx.DB, id uuid.UUID, opts *Options) (*Plan, error) {
	if db == nil {
		return nil, ErrNilDB
	}
	c, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	c.st = backend.For(db)
	q := c.orphans()
	q.Episode = id
	orphans, err := c.st.OrphanList(ctx, db, q, 1)
	if err != nil {
		return nil, fmt.Errorf("explain: listing the orphan: %w", dbx.Explain(err))
	}
	if len(orphans) == 0 {
		// An orphan whose counters are at their maximum is left out of
		// the list, and reported as skipped, as a dry run does.
		refs, err := c.st.OrphanExhausted(ctx, db, q, 1)
		if err != nil || len(refs) == 0 {
			return nil, dbx.Explain(err)
		}
		return &Plan{EpisodeID: refs[0].ID, ActorID: refs[0].ActorID, Action: ActionSkip, Err: ErrExhausted}, nil
	}
	o := orphans[0]
	var owners []string
	if o.Episode.OwnerNode != "" {
		owners = []string{o.Episode.OwnerNode}
	}
	r, err := newResolver(ctx, db, c, owners, []string{o.Episode.ActorID})
	if err != nil {
		return nil, fmt.Errorf("explain: %w", err)
	}
	pl := plan(ctx, c, r, o)
	return &pl, nil
}
