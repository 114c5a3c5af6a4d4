package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/spf13/cobra"

	"github.com/revenant-go/revenant/recovery"
)

// planJSON is a dry run's verdict on one orphan.
type planJSON struct {
	EpisodeID     string `json:"episode_id"`
	ActorID       string `json:"actor_id"`
	Expectation   string `json:"expectation,omitempty"`
	PreviousOwner string `json:"previous_owner,omitempty"`
	Reason        string `json:"reason,omitempty"`
	Policy        string `json:"policy,omitempty"`
	PolicySource  string `json:"policy_source,omitempty"`
	Action        string `json:"action"`
	Attempts      int    `json:"attempts"`
	MaxAttempts   int    `json:"max_attempts"`
	Error         string `json:"error,omitempty"`
}

func toPlanJSON(p recovery.Plan) planJSON {
	out := planJSON{EpisodeID: idString(p.EpisodeID), ActorID: p.ActorID, Expectation: p.Expectation, PreviousOwner: p.PreviousOwner,
		Reason: p.Reason, Policy: string(p.Policy), PolicySource: p.PolicySource, Action: string(p.Action), Attempts: p.Attempts,
		MaxAttempts: p.MaxAttempts}
	if p.Err != nil {
		out.Error = p.Err.Error()
	}
	return out
}

// actionJSON is what a real sweep did with one orphan.
type actionJSON struct {
	EpisodeID     string `json:"episode_id"`
	ActorID       string `json:"actor_id"`
	PreviousOwner string `json:"previous_owner,omitempty"`
	Reason        string `json:"reason,omitempty"`
	Action        string `json:"action"`
	ErrorClass    string `json:"error_class,omitempty"`
	Error         string `json:"error,omitempty"`
}

type scopeJSON struct {
	Stack     string `json:"stack,omitempty"`
	AllStacks bool   `json:"all_stacks"`
	Env       string `json:"env,omitempty"`
	AllEnvs   bool   `json:"all_envs"`
}

type sweepJSON struct {
	DryRun bool      `json:"dry_run"`
	Scope  scopeJSON `json:"scope"`
	// Plans (dry run) are what the sweep would do; Actions (real sweep)
	// what it did.
	Plans        []planJSON   `json:"plans"`
	Actions      []actionJSON `json:"actions"`
	Restarted    int          `json:"restarted"`
	Failed       int          `json:"failed"`
	DeadLettered int          `json:"dead_lettered"`
	Skipped      int          `json:"skipped"`
	// DeadNodes are the nodes found dead and marked stopped (a dry run:
	// that it would mark).
	DeadNodes  []string `json:"dead_nodes"`
	DurationMS int64    `json:"duration_ms"`
}

// sweepOptions scope a sweep: every stack and env, or those of --stack
// and --env. No node and no registry: policies come from the dead owners'
// published policies, then actor definitions, then Fail, for the dry run
// and the real sweep alike.
func (a *app) sweepOptions(dryRun bool) *recovery.Options {
	return &recovery.Options{Stack: a.stack, AllStacks: !a.stackSet, Env: a.env, AllEnvs: !a.envSet, DryRun: dryRun, Logger: a.logger}
}

// scopeText says, for people, which episodes the CLI's sweeps cover.
func (a *app) scopeText() string {
	stack, env := "every stack", "every env"
	if a.stackSet {
		stack = fmt.Sprintf("stack %q (and episodes with none)", a.stack)
	}
	if a.envSet {
		env = fmt.Sprintf("env %q", a.env)
	}
	return fmt.Sprintf("'revenant sweep': %s, %s", stack, env)
}

func (a *app) sweepScope() scopeJSON {
	return scopeJSON{Stack: a.stack, AllStacks: !a.stackSet, Env: a.env, AllEnvs: !a.envSet}
}

// dryRun runs a sweep that changes nothing.
func (a *app) dryRun(ctx context.Context) (*recovery.Result, error) {
	db, err := a.open(ctx, false)
	if err != nil {
		return nil, err
	}
	res, err := recovery.Sweep(ctx, db, a.sweepOptions(true))
	if err != nil {
		return nil, fmt.Errorf("dry-run sweep: %w", err)
	}
	return res, nil
}

// tally counts plans by action.
func tally(plans []recovery.Plan) map[recovery.Action]int {
	n := map[recovery.Action]int{}
	for _, p := range plans {
		n[p.Action]++
	}
	return n
}

func (a *app) sweepCommand() *cobra.Command {
	var dry bool
	c := &cobra.Command{
		Use:   "sweep [--dry-run]",
		Short: "Recover orphaned episodes now (--dry-run: say what recovery will do)",
		Long: `Sweep: find running episodes whose owner is dead, and restart, fail or
dead-letter each by its actor's recovery policy, as nodes' Sweepers do.

--dry-run changes nothing and shows, per orphan, its previous owner, why it is
orphaned (the rule), the policy, where the policy comes from and the action,
and the dead nodes the sweep would mark stopped. The real sweep resolves
policies in exactly the same way (the dead owner's published policy, then the
actor's definition, then fail) and shows what it did; it asks for confirmation
unless --yes.

By default every stack and env is swept; --stack and --env keep to those.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := a.timed(cmd.Context(), 0)
			defer cancel()
			plan, err := a.dryRun(ctx)
			if err != nil {
				return err
			}
			if dry {
				return a.printSweep(plan, true, nil)
			}
			if len(plan.Plans) == 0 && len(plan.DeadNodes) == 0 {
				return a.printSweep(&recovery.Result{}, false, []actionJSON{})
			}
			n := tally(plan.Plans)
			if err := a.confirm(fmt.Sprintf("sweep %d orphaned episode(s) (restart %d, fail %d, dead-letter %d, leave %d) and mark %d dead node(s) stopped",
				len(plan.Plans), n[recovery.ActionRestart], n[recovery.ActionFail], n[recovery.ActionDeadLetter], n[recovery.ActionSkip],
				len(plan.DeadNodes))); err != nil {
				return err
			}
			res, actions, err := a.sweep(ctx)
			if err != nil {
				return err
			}
			return a.printSweep(res, false, actions)
		},
	}
	c.Flags().BoolVar(&dry, "dry-run", false, "change nothing: show what the sweep would do, and why")
	return c
}

// sweep runs the real sweep, publishing its events on the bus (so that
// workflow engines and subscribers hear of the recoveries), and reports
// what it did per episode.
func (a *app) sweep(ctx context.Context) (*recovery.Result, []actionJSON, error) {
	client, err := a.admin(ctx)
	if err != nil {
		return nil, nil, err
	}
	db, err := a.open(ctx, false)
	if err != nil {
		return nil, nil, err
	}
	var mu sync.Mutex
	actions := []actionJSON{}
	opts := a.sweepOptions(false)
	opts.Bus = client.Bus()
	opts.OnEvent = func(_ context.Context, ev recovery.Event) {
		act := string(recovery.ActionFail)
		switch ev.Type {
		case recovery.EventRecovered:
			act = string(recovery.ActionRestart)
		case recovery.EventDeadLettered:
			act = string(recovery.ActionDeadLetter)
		}
		mu.Lock()
		defer mu.Unlock()
		actions = append(actions, actionJSON{EpisodeID: idString(ev.EpisodeID), ActorID: ev.ActorID, PreviousOwner: ev.PreviousOwner,
			Reason: ev.Reason, Action: act, ErrorClass: ev.ErrorClass})
	}
	res, err := recovery.Sweep(ctx, db, opts)
	if err != nil {
		return nil, nil, fmt.Errorf("sweep (what it did before failing stays done): %w", err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, e := range res.Errors {
		actions = append(actions, actionJSON{EpisodeID: idString(e.EpisodeID), ActorID: e.ActorID, Action: string(recovery.ActionSkip), Error: e.Err.Error()})
	}
	// Events arrive batch by batch; in id order, as the dry run's plans
	// are, the output is stable and reads against it line by line.
	slices.SortStableFunc(actions, func(x, y actionJSON) int { return strings.Compare(x.EpisodeID, y.EpisodeID) })
	return res, actions, nil
}

func (a *app) printSweep(res *recovery.Result, dry bool, actions []actionJSON) error {
	out := sweepJSON{DryRun: dry, Scope: a.sweepScope(), Plans: []planJSON{}, Actions: actions, Restarted: res.Restarted,
		Failed: res.Failed, DeadLettered: res.DeadLettered, Skipped: res.Skipped, DeadNodes: res.DeadNodes, DurationMS: ms(res.Duration)}
	if out.Actions == nil {
		out.Actions = []actionJSON{}
	}
	if out.DeadNodes == nil {
		out.DeadNodes = []string{}
	}
	for _, p := range res.Plans {
		out.Plans = append(out.Plans, toPlanJSON(p))
	}
	if dry {
		// A dry run's counts are its plans'.
		n := tally(res.Plans)
		out.Restarted, out.Failed, out.DeadLettered, out.Skipped = n[recovery.ActionRestart], n[recovery.ActionFail], n[recovery.ActionDeadLetter], n[recovery.ActionSkip]
	}
	if a.jsonOut {
		return a.printJSON(out)
	}
	if dry {
		_, _ = fmt.Fprintf(a.stdout, "DRY RUN (nothing changed): %d orphaned episode(s); a sweep would restart %d, fail %d, dead-letter %d, leave %d\n",
			len(out.Plans), out.Restarted, out.Failed, out.DeadLettered, out.Skipped)
		if len(out.Plans) > 0 {
			t := newTable(a.stdout, "EPISODE", "ACTOR", "PREVIOUS OWNER", "REASON", "POLICY", "SOURCE", "ACTION", "ATTEMPTS", "NOTE")
			for _, p := range out.Plans {
				t.row(p.EpisodeID, p.ActorID+expectationSuffix(p.Expectation), dash(p.PreviousOwner), dash(p.Reason), dash(p.Policy),
					dash(p.PolicySource), p.Action, fmt.Sprintf("%d/%d", p.Attempts, p.MaxAttempts), dash(p.Error))
			}
			if err := t.flush(); err != nil {
				return err
			}
		}
		if len(out.DeadNodes) > 0 {
			_, _ = fmt.Fprintf(a.stdout, "would mark dead nodes stopped: %s\n", strings.Join(out.DeadNodes, ", "))
		}
		return nil
	}
	if len(out.Actions) == 0 && len(out.DeadNodes) == 0 {
		_, _ = fmt.Fprintln(a.stdout, "nothing to sweep: no orphaned episodes, no dead nodes to mark")
		return nil
	}
	_, _ = fmt.Fprintf(a.stdout, "swept in %s: restarted %d, failed %d, dead-lettered %d, left %d\n",
		human(res.Duration), out.Restarted, out.Failed, out.DeadLettered, out.Skipped)
	if len(out.Actions) > 0 {
		t := newTable(a.stdout, "EPISODE", "ACTOR", "PREVIOUS OWNER", "REASON", "ACTION", "ERROR CLASS", "NOTE")
		for _, x := range out.Actions {
			t.row(dash(x.EpisodeID), x.ActorID, dash(x.PreviousOwner), dash(x.Reason), x.Action, dash(x.ErrorClass), dash(x.Error))
		}
		if err := t.flush(); err != nil {
			return err
		}
	}
	if len(out.DeadNodes) > 0 {
		_, _ = fmt.Fprintf(a.stdout, "marked dead nodes stopped: %s\n", strings.Join(out.DeadNodes, ", "))
	}
	return nil
}
