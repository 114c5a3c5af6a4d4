package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/inspect"
)

type explainJSON struct {
	Episode      episodeJSON   `json:"episode"`
	Summary      string        `json:"summary"`
	Owner        *nodeJSON     `json:"owner,omitempty"`
	Plan         *planJSON     `json:"plan,omitempty"`
	AttemptsLeft int           `json:"attempts_left"`
	DueInMS      int64         `json:"due_in_ms"`
	Claimers     []string      `json:"claimers"`
	Breakers     []breakerJSON `json:"breakers"`
}

// explain says why an episode is in its state and what happens next, as
// the CLI's own sweep sees it: in the episode's own scope, with the dead
// owner's published policy, then the actor's definition, then Fail.
func (a *app) explain(ctx context.Context, id uuid.UUID) (*inspect.Explanation, error) {
	in, err := a.inspector(ctx)
	if err != nil {
		return nil, err
	}
	return in.Explain(ctx, id, inspect.ExplainOptions{})
}

func toExplainJSON(x *inspect.Explanation) explainJSON {
	out := explainJSON{Episode: toEpisodeJSON(x.Episode, true, false), Summary: x.Summary, AttemptsLeft: x.AttemptsLeft,
		DueInMS: ms(x.DueIn), Claimers: x.Claimers, Breakers: []breakerJSON{}}
	if out.Claimers == nil {
		out.Claimers = []string{}
	}
	if x.Owner != nil {
		n := toNodeJSON(*x.Owner)
		out.Owner = &n
	}
	if x.Plan != nil {
		p := toPlanJSON(*x.Plan)
		out.Plan = &p
	}
	for _, b := range x.Breakers {
		out.Breakers = append(out.Breakers, toBreakerJSON(b))
	}
	return out
}

func (a *app) episodesExplainCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "explain ID",
		Short: "Say why an episode is in its state, and what happens next",
		Long: `Explain one episode. For a running one: is its owner alive, and by which
signal; would a sweep take it now, by which rule, with which policy from which
source, hence restart, fail or dead-letter it, and how many attempts are left.
For a pending one: is it due, which live nodes can claim it, and which of their
breakers hold it back. The plan is the one 'revenant sweep' acts on.`,
		Args: exactArgs(1, "an episode id"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseID(args[0], "an episode")
			if err != nil {
				return err
			}
			ctx, cancel := a.timed(cmd.Context(), 0)
			defer cancel()
			x, err := a.explain(ctx, id)
			if err != nil {
				return err
			}
			if a.jsonOut {
				return a.printJSON(toExplainJSON(x))
			}
			return a.printExplanation(x)
		},
	}
}

func (a *app) printExplanation(x *inspect.Explanation) error {
	e := x.Episode
	t := newTable(a.stdout)
	t.row("episode", e.ID.String())
	t.row("actor", e.ActorID+expectationSuffix(e.Expectation))
	t.row("status", fmt.Sprintf("%s, %d of %d attempts used (%d left)", e.Status, e.Attempts, e.MaxAttempts, x.AttemptsLeft))
	t.row("why", x.Summary)
	if o := x.Owner; o != nil {
		owner := fmt.Sprintf("%s: %s", o.ID, o.Liveness)
		if o.DeadBy != "" {
			owner += " (" + o.DeadBy + ")"
		}
		if o.HasLock {
			owner += ", lock " + lockState(*o)
		}
		owner += fmt.Sprintf(", last heartbeat %s ago", human(o.HeartbeatAge))
		t.row("owner", owner)
	} else if e.Status == episodes.StatusRunning {
		t.row("owner", fmt.Sprintf("%s (not a known node)", dash(e.OwnerNode)))
	}
	if p := x.Plan; p != nil {
		plan := fmt.Sprintf("%s: rule %s, policy %s from %s", p.Action, dash(p.Reason), dash(string(p.Policy)), dash(p.PolicySource))
		if p.Err != nil {
			plan += fmt.Sprintf(" (left alone: %v)", p.Err)
		}
		t.row("sweep would", plan)
	}
	if e.Status == episodes.StatusPending {
		due := "now"
		if x.DueIn > 0 {
			due = "in " + human(x.DueIn)
		}
		t.row("due", due)
		t.row("claimers", dash(strings.Join(x.Claimers, ", ")))
		for _, b := range x.Breakers {
			t.row("breaker", fmt.Sprintf("%s %s (%s): %s", b.ActorID, b.State, scope(b.Stack, b.Env), dash(b.Reason)))
		}
	}
	if e.ErrorClass != "" {
		t.row("last error", fmt.Sprintf("%s %s", e.ErrorClass, compactJSON(e.ErrorDetail, 200)))
	}
	return t.flush()
}

func expectationSuffix(exp string) string {
	if exp == "" {
		return ""
	}
	return " (expectation " + exp + ")"
}
