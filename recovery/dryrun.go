package recovery

import (
	"context"
	"fmt"

	"github.com/revenant-go/revenant/episodes"
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
			res.Skipped++
			res.Errors = append(res.Errors, EpisodeError{EpisodeID: ep.ID, ActorID: ep.ActorID, Err: v.err})
		case v.policy == Restart && ep.Attempts < ep.MaxAttempts:
			pl.Action = ActionRestart
			res.Restarted++
		case v.policy == Restart:
			pl.Action = ActionDeadLetter
			res.DeadLettered++
		default:
			pl.Action = ActionFail
			res.Failed++
		}
		res.Plans = append(res.Plans, pl)
	}
	return nil
}
