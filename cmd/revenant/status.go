package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/revenant-go/revenant/breakers"
	"github.com/revenant-go/revenant/inspect"
	"github.com/revenant-go/revenant/recovery"
)

// StuckExplainedMax bounds the stuck episodes that status explains one by
// one; 'revenant sweep --dry-run' lists them all.
const StuckExplainedMax = 20

type backlogJSON struct {
	ActorID         string `json:"actor_id"`
	Stack           string `json:"stack"`
	Env             string `json:"env"`
	Due             int    `json:"due"`
	Scheduled       int    `json:"scheduled"`
	Running         int    `json:"running"`
	Blocked         int    `json:"blocked"`
	Failed          int    `json:"failed"`
	OldestDueWaitMS int64  `json:"oldest_due_wait_ms"`
	Claimable       bool   `json:"claimable"`
}

type stuckJSON struct {
	planJSON
	// Summary is the episode's one-line explanation ("" past
	// StuckExplainedMax).
	Summary string `json:"summary,omitempty"`
}

type statusJSON struct {
	// Attention lists what needs an operator; empty when all is well
	// (exit 0), otherwise exit 5.
	Attention []string `json:"attention"`
	// Nodes are the alive nodes, and the others that still own running
	// episodes; OtherNodes counts the rest (stopped, or dead owning
	// nothing).
	Nodes      []nodeJSON    `json:"nodes"`
	OtherNodes int           `json:"other_nodes"`
	Backlog    []backlogJSON `json:"backlog"`
	// Stuck are the running episodes a sweep would take now (orphans of
	// dead nodes), and those it would have to leave (exhausted, no
	// policy), each with its explanation.
	Stuck        []stuckJSON   `json:"stuck"`
	OpenBreakers []breakerJSON `json:"open_breakers"`
	// LastSweep is the newest Sweeper pass across the nodes; nil when no
	// node recorded one.
	LastSweep *sweepRecordJSON `json:"last_sweep"`
}

func (a *app) statusCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "What is stuck? Nodes, backlog, stuck episodes (explained), open breakers, last sweep",
		Long: `Answer "what is stuck?" in one command: the nodes (alive, and dead ones that
still own running episodes), the backlog per actor (due, scheduled, running,
blocked, failed, the oldest due wait, and whether any live node can claim it),
the stuck episodes (orphans of dead nodes, and those a sweep has to leave), each
with its one-line explanation, the open breakers, and the last sweep.

Exits 5 when something needs attention: dead nodes owning episodes, orphaned or
exhausted episodes, unclaimable backlog, open breakers, or a failed last sweep.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := a.timed(cmd.Context(), 0)
			defer cancel()
			st, err := a.status(ctx)
			if err != nil {
				return err
			}
			if a.jsonOut {
				err = a.printJSON(st)
			} else {
				err = a.printStatus(st)
			}
			if err == nil && len(st.Attention) > 0 {
				return silent(exitAttention)
			}
			return err
		},
	}
}

// status gathers everything status shows.
func (a *app) status(ctx context.Context) (*statusJSON, error) {
	st := &statusJSON{Attention: []string{}, Nodes: []nodeJSON{}, Backlog: []backlogJSON{}, Stuck: []stuckJSON{}, OpenBreakers: []breakerJSON{}}
	nodes, err := a.nodes(ctx)
	if err != nil {
		return nil, err
	}
	for _, n := range nodes {
		if rec := sweepRecord(n); rec != nil && (st.LastSweep == nil || rec.At.After(st.LastSweep.At)) {
			st.LastSweep = rec
		}
		if n.Liveness != inspect.Alive && n.Running == 0 {
			st.OtherNodes++
			continue
		}
		st.Nodes = append(st.Nodes, toNodeJSON(n))
		if n.Liveness != inspect.Alive {
			why := string(n.Liveness)
			if n.DeadBy != "" {
				why += " (" + n.DeadBy + ")"
			}
			st.attend("node %s is %s and owns %d running episode(s)", n.ID, why, n.Running)
		}
	}
	if err := a.statusBacklog(ctx, st); err != nil {
		return nil, err
	}
	if err := a.statusStuck(ctx, st); err != nil {
		return nil, err
	}
	if err := a.statusBreakers(ctx, st); err != nil {
		return nil, err
	}
	if s := st.LastSweep; s != nil && s.Error != "" {
		st.attend("the last sweep (node %s, %s) failed: %s", s.Node, ago(s.At), s.Error)
	}
	return st, nil
}

func (st *statusJSON) attend(format string, args ...any) {
	st.Attention = append(st.Attention, fmt.Sprintf(format, args...))
}

func (a *app) statusBacklog(ctx context.Context, st *statusJSON) error {
	in, err := a.inspector(ctx)
	if err != nil {
		return err
	}
	backlog, err := in.Backlog(ctx)
	if err != nil {
		return fmt.Errorf("reading the backlog: %w", err)
	}
	for _, b := range backlog {
		if !a.inScope(b.Stack, b.Env) {
			continue
		}
		st.Backlog = append(st.Backlog, backlogJSON{ActorID: b.ActorID, Stack: b.Stack, Env: b.Env, Due: b.Due, Scheduled: b.Scheduled,
			Running: b.Running, Blocked: b.Blocked, Failed: b.Failed, OldestDueWaitMS: ms(b.OldestDueWait), Claimable: b.Claimable})
		if !b.Claimable && b.Due+b.Scheduled > 0 {
			st.attend("%d pending episode(s) of actor %q (stack %s, env %s) are unclaimable: no live node in their scope registered the actor (a typo, or a node with another stack or env?)",
				b.Due+b.Scheduled, b.ActorID, dash(b.Stack), dash(b.Env))
		}
	}
	return nil
}

// statusStuck lists what a sweep would take now, or have to leave, with
// each one's explanation: the dry run is the same code as the sweep's.
func (a *app) statusStuck(ctx context.Context, st *statusJSON) error {
	res, err := a.dryRun(ctx)
	if err != nil {
		return err
	}
	exhausted, left := 0, 0
	for i, p := range res.Plans {
		s := stuckJSON{planJSON: toPlanJSON(p)}
		if i < StuckExplainedMax {
			x, err := a.explain(ctx, p.EpisodeID)
			switch {
			case err == nil:
				s.Summary = x.Summary
			case ctx.Err() != nil:
				return err
			default:
				// Recovered or finished since the dry run: say so rather than fail.
				s.Summary = fmt.Sprintf("(could not explain it: %v)", err)
			}
		}
		st.Stuck = append(st.Stuck, s)
		switch {
		case errors.Is(p.Err, recovery.ErrExhausted):
			exhausted++
		case p.Action == recovery.ActionSkip:
			left++
		}
	}
	if orphans := len(res.Plans) - exhausted - left; orphans > 0 {
		st.attend("%d orphaned running episode(s) wait for a sweep (a node's Sweeper takes them, or run 'revenant sweep')", orphans)
	}
	if exhausted > 0 {
		st.attend("%d orphaned episode(s) are exhausted (claim token or attempts at their maximum): a sweep cannot recover them; cancel them", exhausted)
	}
	if left > 0 {
		st.attend("%d orphaned episode(s) have no usable recovery policy: a sweep leaves them running (define one with 'revenant actors define')", left)
	}
	return nil
}

func (a *app) statusBreakers(ctx context.Context, st *statusJSON) error {
	c, err := a.admin(ctx)
	if err != nil {
		return err
	}
	list, err := c.Breakers().List(ctx)
	if err != nil {
		return fmt.Errorf("reading breakers: %w", err)
	}
	for _, b := range list {
		if b.State == breakers.Closed || !a.inScope(b.Stack, b.Env) {
			continue
		}
		st.OpenBreakers = append(st.OpenBreakers, toBreakerJSON(b))
		if b.State == breakers.Open {
			st.attend("the breaker of actor %q (stack %s, env %s) is open: %s", b.ActorID, dash(b.Stack), dash(b.Env), dash(b.Reason))
		}
	}
	return nil
}

func (a *app) printStatus(st *statusJSON) error {
	w := a.stdout
	alive := 0
	for _, n := range st.Nodes {
		if n.Liveness == string(inspect.Alive) {
			alive++
		}
	}
	_, _ = fmt.Fprintf(w, "NODES: %d alive, %d dead or stopped owning running episodes, %d others (see 'revenant nodes')\n",
		alive, len(st.Nodes)-alive, st.OtherNodes)
	if len(st.Nodes) > 0 {
		t := newTable(w, "NODE", "SCOPE", "LIVENESS", "DEAD BY", "HEARTBEAT", "RUNNING", "LAST SWEEP")
		for _, n := range st.Nodes {
			t.row(n.ID, scope(n.Stack, n.Env), n.Liveness, dash(n.DeadBy), human(msDuration(n.HeartbeatAgeMS))+" ago", fmt.Sprint(n.Running),
				lastSweepCell(n.LastSweep))
		}
		if err := t.flush(); err != nil {
			return err
		}
	}
	_, _ = fmt.Fprintf(w, "\nBACKLOG: %d actor(s)\n", len(st.Backlog))
	if len(st.Backlog) > 0 {
		t := newTable(w, "ACTOR", "SCOPE", "DUE", "SCHEDULED", "RUNNING", "BLOCKED", "FAILED", "OLDEST DUE", "CLAIMABLE")
		for _, b := range st.Backlog {
			oldest := "-"
			if b.Due > 0 {
				oldest = human(msDuration(b.OldestDueWaitMS))
			}
			claimable := "yes"
			switch {
			case b.Due+b.Scheduled == 0:
				claimable = "-" // nothing waits to be claimed
			case !b.Claimable:
				claimable = "NO"
			}
			t.row(b.ActorID, scope(b.Stack, b.Env), fmt.Sprint(b.Due), fmt.Sprint(b.Scheduled), fmt.Sprint(b.Running), fmt.Sprint(b.Blocked),
				fmt.Sprint(b.Failed), oldest, claimable)
		}
		if err := t.flush(); err != nil {
			return err
		}
	}
	_, _ = fmt.Fprintf(w, "\nSTUCK: %d episode(s)", len(st.Stuck))
	if len(st.Stuck) > 0 {
		_, _ = fmt.Fprint(w, " (what a sweep does with them: 'revenant sweep --dry-run')")
	}
	_, _ = fmt.Fprintln(w)
	for _, s := range st.Stuck {
		_, _ = fmt.Fprintf(w, "  %s  %s  owner %s (%s)  -> %s", s.EpisodeID, s.ActorID, dash(s.PreviousOwner), dash(s.Reason), s.Action)
		if s.Policy != "" {
			_, _ = fmt.Fprintf(w, " (policy %s from %s)", s.Policy, s.PolicySource)
		}
		_, _ = fmt.Fprintf(w, ", attempts %d/%d\n", s.Attempts, s.MaxAttempts)
		if s.Summary != "" {
			_, _ = fmt.Fprintf(w, "      %s\n", s.Summary)
		}
	}
	_, _ = fmt.Fprintf(w, "\nBREAKERS: %d not closed\n", len(st.OpenBreakers))
	for _, b := range st.OpenBreakers {
		_, _ = fmt.Fprintf(w, "  %s (%s) %s since %s: %s\n", b.ActorID, scope(b.Stack, b.Env), b.State, ago(b.ChangedAt), dash(b.Reason))
	}
	_, _ = fmt.Fprint(w, "\nLAST SWEEP: ")
	if s := st.LastSweep; s == nil {
		_, _ = fmt.Fprintln(w, "none recorded")
	} else {
		outcome := "ok"
		if s.Error != "" {
			outcome = "FAILED: " + s.Error
		}
		_, _ = fmt.Fprintf(w, "%s by %s, took %s: restarted %d, failed %d, dead-lettered %d, skipped %d; %s\n", ago(s.At), s.Node,
			human(msDuration(s.TookMS)), s.Restarted, s.Failed, s.DeadLettered, s.Skipped, outcome)
	}
	if len(st.Attention) == 0 {
		_, _ = fmt.Fprintln(w, "\nOK: nothing needs attention")
		return nil
	}
	_, _ = fmt.Fprintf(w, "\nNEEDS ATTENTION (%d):\n", len(st.Attention))
	for _, s := range st.Attention {
		_, _ = fmt.Fprintf(w, "  - %s\n", s)
	}
	return nil
}
