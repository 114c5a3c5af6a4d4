package main

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/revenant-go/revenant/inspect"
	"github.com/revenant-go/revenant/recovery"
)

type policyJSON struct {
	Recovery     string            `json:"recovery,omitempty"`
	Expectations map[string]string `json:"expectations,omitempty"`
}

type sweepRecordJSON struct {
	Node         string    `json:"node"`
	At           time.Time `json:"at"`
	TookMS       int64     `json:"took_ms"`
	Restarted    int       `json:"restarted"`
	Failed       int       `json:"failed"`
	DeadLettered int       `json:"dead_lettered"`
	Skipped      int       `json:"skipped"`
	Error        string    `json:"error,omitempty"`
}

type nodeJSON struct {
	ID             string                `json:"id"`
	Name           string                `json:"name"`
	Stack          string                `json:"stack"`
	Env            string                `json:"env"`
	Liveness       string                `json:"liveness"`
	DeadBy         string                `json:"dead_by,omitempty"`
	HasLock        bool                  `json:"has_lock"`
	LockHeld       bool                  `json:"lock_held"`
	StartedAt      time.Time             `json:"started_at"`
	HeartbeatAt    time.Time             `json:"heartbeat_at"`
	ExpiresAt      time.Time             `json:"expires_at"`
	HeartbeatAgeMS int64                 `json:"heartbeat_age_ms"`
	StoppedAt      *time.Time            `json:"stopped_at,omitempty"`
	Actors         []string              `json:"actors"`
	Policies       map[string]policyJSON `json:"policies,omitempty"`
	Running        int                   `json:"running"`
	LastSweep      *sweepRecordJSON      `json:"last_sweep,omitempty"`
}

func toNodeJSON(n inspect.Node) nodeJSON {
	out := nodeJSON{ID: n.ID, Name: n.Name, Stack: n.Stack, Env: n.Env, Liveness: string(n.Liveness), DeadBy: n.DeadBy,
		HasLock: n.HasLock, LockHeld: n.LockHeld, StartedAt: n.StartedAt, HeartbeatAt: n.HeartbeatAt, ExpiresAt: n.ExpiresAt,
		HeartbeatAgeMS: ms(n.HeartbeatAge), StoppedAt: n.StoppedAt, Actors: n.Actors, Running: n.Running,
		LastSweep: sweepRecord(n)}
	if out.Actors == nil {
		out.Actors = []string{}
	}
	if len(n.Policies) > 0 {
		out.Policies = map[string]policyJSON{}
		for actor, p := range n.Policies {
			out.Policies[actor] = policyJSON{Recovery: string(p.Recovery), Expectations: policyStrings(p.Expectations)}
		}
	}
	return out
}

func policyStrings(m map[string]recovery.Policy) map[string]string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = string(v)
	}
	return out
}

// sweepRecord is a node's Sweeper's last pass, nil before its first.
func sweepRecord(n inspect.Node) *sweepRecordJSON {
	s := n.LastSweep
	if s == nil {
		return nil
	}
	return &sweepRecordJSON{Node: n.ID, At: s.At, TookMS: ms(s.Took), Restarted: s.Restarted, Failed: s.Failed,
		DeadLettered: s.DeadLettered, Skipped: s.Skipped, Error: s.Error}
}

// inScope keeps what --stack and --env select (everything without them).
func (a *app) inScope(stack, env string) bool {
	return (!a.stackSet || stack == a.stack) && (!a.envSet || env == a.env)
}

// nodes reads the nodes in scope.
func (a *app) nodes(ctx context.Context) ([]inspect.Node, error) {
	in, err := a.inspector(ctx)
	if err != nil {
		return nil, err
	}
	all, err := in.Nodes(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading nodes: %w", err)
	}
	var out []inspect.Node
	for _, n := range all {
		if a.inScope(n.Stack, n.Env) {
			out = append(out, n)
		}
	}
	return out, nil
}

func (a *app) nodesCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "nodes",
		Short: "List the nodes: liveness (and the rule that found a dead one), heartbeat, running episodes",
		Long: `List every node the database knows, oldest first: alive, dead (and by which
rule: its session lock was released, or its heartbeat TTL lapsed) or stopped,
its last heartbeat, the episodes it runs (for a dead node: its orphans not yet
recovered), its actors and its Sweeper's last pass. Rows of nodes stopped over
a day ago that own nothing are pruned by sweeps.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := a.timed(cmd.Context(), 0)
			defer cancel()
			nodes, err := a.nodes(ctx)
			if err != nil {
				return err
			}
			if a.jsonOut {
				out := struct {
					Nodes []nodeJSON `json:"nodes"`
				}{Nodes: []nodeJSON{}}
				for _, n := range nodes {
					out.Nodes = append(out.Nodes, toNodeJSON(n))
				}
				return a.printJSON(out)
			}
			if len(nodes) == 0 {
				_, _ = fmt.Fprintln(a.stdout, "no nodes")
				return nil
			}
			t := newTable(a.stdout, "NODE", "NAME", "SCOPE", "LIVENESS", "DEAD BY", "LOCK", "HEARTBEAT", "STARTED", "RUNNING", "ACTORS", "LAST SWEEP")
			for _, n := range nodes {
				t.row(n.ID, n.Name, scope(n.Stack, n.Env), string(n.Liveness), dash(n.DeadBy), lockState(n),
					human(n.HeartbeatAge)+" ago", ago(n.StartedAt), fmt.Sprint(n.Running), actorList(n.Actors), lastSweepCell(sweepRecord(n)))
			}
			return t.flush()
		},
	}
}

func lockState(n inspect.Node) string {
	switch {
	case !n.HasLock:
		return "-"
	case n.LockHeld:
		return "held"
	}
	return "released"
}

func actorList(actors []string) string {
	s := append([]string(nil), actors...)
	sort.Strings(s)
	return dash(strings.Join(s, ","))
}

func lastSweepCell(s *sweepRecordJSON) string {
	switch {
	case s == nil:
		return "-"
	case s.Error != "":
		return ago(s.At) + " (failed)"
	}
	return ago(s.At)
}
