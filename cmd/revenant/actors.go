package main

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/revenant-go/revenant/actors"
	"github.com/revenant-go/revenant/inspect"
	"github.com/revenant-go/revenant/recovery"
)

type definitionJSON struct {
	Recovery     string            `json:"recovery,omitempty"`
	Expectations map[string]string `json:"expectations,omitempty"`
	Disabled     bool              `json:"disabled"`
	UpdatedAt    time.Time         `json:"updated_at"`
}

type actorJSON struct {
	ID string `json:"id"`
	// Definition is the actor's row in the database (package actors);
	// nil when it has none.
	Definition *definitionJSON `json:"definition,omitempty"`
	// LiveNodes registered the actor; Published are the policies they
	// published for it, by node.
	LiveNodes []string              `json:"live_nodes"`
	Published map[string]policyJSON `json:"published,omitempty"`
}

func (a *app) actorsCommand() *cobra.Command {
	return group("actors", "Define, list, disable and enable actors' recovery policies kept in the database",
		a.actorsDefineCommand(), a.actorsListCommand(), a.actorsDisableCommand(true), a.actorsDisableCommand(false))
}

func toDefinitionJSON(d actors.Definition) *definitionJSON {
	return &definitionJSON{Recovery: string(d.Recovery), Expectations: policyStrings(d.ExpectationRecovery), Disabled: d.Disabled, UpdatedAt: d.UpdatedAt}
}

// parsePolicy reads a policy flag value.
func parsePolicy(s, flag string) (recovery.Policy, error) {
	p, err := recovery.ParsePolicy(strings.TrimSpace(s))
	if err != nil {
		return "", usagef("%s: policy %q is neither restart nor fail", flag, s)
	}
	return p, nil
}

func (a *app) actorsDefineCommand() *cobra.Command {
	var policy string
	var expectations []string
	var disabled bool
	c := &cobra.Command{
		Use:   "define ID --recovery restart|fail [--expectation name=policy]...",
		Short: "Write an actor's recovery policy to the database (replacing any definition)",
		Long: `Define what sweeps do with an actor's orphans when no node that sweeps has the
actor in code: restart (back to pending, its journal replays completed steps)
or fail (error class "orphaned"), per actor and optionally per expectation. It
replaces the actor's definition, and takes effect from the next sweep pass.
A policy the sweeping node registered in code, or that the dead owner
published, wins over a definition ('revenant sweep --dry-run' shows the source).`,
		Args: exactArgs(1, "an actor id"),
		RunE: func(cmd *cobra.Command, args []string) error {
			def := actors.Definition{ID: args[0], Disabled: disabled}
			if policy != "" {
				p, err := parsePolicy(policy, "--recovery")
				if err != nil {
					return err
				}
				def.Recovery = p
			}
			for _, e := range expectations {
				name, value, ok := strings.Cut(e, "=")
				if !ok || strings.TrimSpace(name) == "" {
					return usagef("--expectation takes name=policy (e.g. --expectation charge-card=fail), got %q", e)
				}
				p, err := parsePolicy(value, "--expectation "+name)
				if err != nil {
					return err
				}
				if def.ExpectationRecovery == nil {
					def.ExpectationRecovery = map[string]recovery.Policy{}
				}
				def.ExpectationRecovery[strings.TrimSpace(name)] = p
			}
			if def.Recovery == "" && len(def.ExpectationRecovery) == 0 {
				return usagef("state a policy: --recovery restart|fail, or --expectation name=policy")
			}
			ctx, cancel := a.timed(cmd.Context(), 0)
			defer cancel()
			client, err := a.admin(ctx)
			if err != nil {
				return err
			}
			if err := a.confirm(fmt.Sprintf("define actor %q (%s), replacing any definition", def.ID, describeDefinition(def))); err != nil {
				return err
			}
			if err := client.Actors().Define(ctx, def); err != nil {
				return fmt.Errorf("defining actor %q: %w", def.ID, err)
			}
			stored, err := client.Actors().Get(ctx, def.ID)
			if err != nil {
				return fmt.Errorf("reading actor %q back: %w", def.ID, err)
			}
			if a.jsonOut {
				return a.printJSON(actorJSON{ID: stored.ID, Definition: toDefinitionJSON(*stored), LiveNodes: []string{}})
			}
			_, _ = fmt.Fprintf(a.stdout, "defined actor %s: %s\n", stored.ID, describeDefinition(*stored))
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&policy, "recovery", "", "restart or fail: what sweeps do with the actor's orphans")
	f.StringArrayVar(&expectations, "expectation", nil, "name=policy: a policy for the actor's episodes with that expectation (repeatable)")
	f.BoolVar(&disabled, "disabled", false, "write it disabled (kept, ignored by sweeps)")
	return c
}

func describeDefinition(d actors.Definition) string {
	parts := []string{"recovery " + dash(string(d.Recovery))}
	if len(d.ExpectationRecovery) > 0 {
		parts = append(parts, "expectations "+expectationList(d.ExpectationRecovery))
	}
	if d.Disabled {
		parts = append(parts, "disabled")
	}
	return strings.Join(parts, ", ")
}

func expectationList(m map[string]recovery.Policy) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for i, k := range keys {
		keys[i] = k + "=" + string(m[k])
	}
	return dash(strings.Join(keys, ","))
}

func (a *app) actorsListCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List actors: their definitions, and the live nodes that registered them (with the policies they published)",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := a.timed(cmd.Context(), 0)
			defer cancel()
			client, err := a.admin(ctx)
			if err != nil {
				return err
			}
			// Unreadable rows come back as an error beside the readable
			// ones: show those, then fail.
			defs, listErr := client.Actors().List(ctx)
			if listErr != nil && defs == nil {
				return fmt.Errorf("listing actor definitions: %w", listErr)
			}
			nodes, err := a.nodes(ctx)
			if err != nil {
				return err
			}
			list := mergeActors(defs, nodes)
			if a.jsonOut {
				err = a.printJSON(struct {
					Actors []actorJSON `json:"actors"`
				}{list})
			} else {
				err = a.printActors(list)
			}
			if err != nil {
				return err
			}
			if listErr != nil {
				return fmt.Errorf("some actor definitions are unreadable (fix them with 'revenant actors define'): %w", listErr)
			}
			return nil
		},
	}
}

// mergeActors joins definitions and live registrations by actor id.
func mergeActors(defs []actors.Definition, nodes []inspect.Node) []actorJSON {
	byID := map[string]*actorJSON{}
	get := func(id string) *actorJSON {
		if x, ok := byID[id]; ok {
			return x
		}
		x := &actorJSON{ID: id, LiveNodes: []string{}}
		byID[id] = x
		return x
	}
	for _, d := range defs {
		get(d.ID).Definition = toDefinitionJSON(d)
	}
	for _, n := range nodes {
		if n.Liveness != inspect.Alive {
			continue
		}
		for _, actor := range n.Actors {
			x := get(actor)
			x.LiveNodes = append(x.LiveNodes, n.ID)
			if p, ok := n.Policies[actor]; ok {
				if x.Published == nil {
					x.Published = map[string]policyJSON{}
				}
				x.Published[n.ID] = policyJSON{Recovery: string(p.Recovery), Expectations: policyStrings(p.Expectations)}
			}
		}
	}
	out := make([]actorJSON, 0, len(byID))
	for _, x := range byID {
		out = append(out, *x)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func (a *app) printActors(list []actorJSON) error {
	if len(list) == 0 {
		_, _ = fmt.Fprintln(a.stdout, "no actors: none defined, none registered by a live node")
		return nil
	}
	t := newTable(a.stdout, "ACTOR", "DEFINITION", "EXPECTATIONS", "ENABLED", "UPDATED", "LIVE NODES", "PUBLISHED")
	for _, x := range list {
		def, exps, enabled, updated := "-", "-", "-", "-"
		if d := x.Definition; d != nil {
			def, enabled, updated = dash(d.Recovery), fmt.Sprint(!d.Disabled), ago(d.UpdatedAt)
			m := map[string]recovery.Policy{}
			for k, v := range d.Expectations {
				m[k] = recovery.Policy(v)
			}
			exps = expectationList(m)
		}
		published := map[string]bool{}
		for _, p := range x.Published {
			published[dash(p.Recovery)] = true
		}
		pub := make([]string, 0, len(published))
		for p := range published {
			pub = append(pub, p)
		}
		sort.Strings(pub)
		t.row(x.ID, def, exps, enabled, updated, fmt.Sprint(len(x.LiveNodes)), dash(strings.Join(pub, ",")))
	}
	return t.flush()
}

// actorsDisableCommand is "disable" (or, with disable false, "enable").
func (a *app) actorsDisableCommand(disable bool) *cobra.Command {
	verb, short := "enable", "Make sweeps honour an actor's definition again"
	if disable {
		verb, short = "disable", "Keep an actor's definition but make sweeps ignore it"
	}
	return &cobra.Command{
		Use:   verb + " ID",
		Short: short,
		Args:  exactArgs(1, "an actor id"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := a.timed(cmd.Context(), 0)
			defer cancel()
			client, err := a.admin(ctx)
			if err != nil {
				return err
			}
			store := client.Actors()
			if _, err := store.Get(ctx, args[0]); err != nil {
				return fmt.Errorf("actor %q: %w", args[0], err)
			}
			if err := a.confirm(fmt.Sprintf("%s the definition of actor %q", verb, args[0])); err != nil {
				return err
			}
			if disable {
				err = store.Disable(ctx, args[0])
			} else {
				err = store.Enable(ctx, args[0])
			}
			if err != nil {
				return fmt.Errorf("%s actor %q: %w", verb, args[0], err)
			}
			d, err := store.Get(ctx, args[0])
			if err != nil {
				return fmt.Errorf("reading actor %q back: %w", args[0], err)
			}
			if a.jsonOut {
				return a.printJSON(actorJSON{ID: d.ID, Definition: toDefinitionJSON(*d), LiveNodes: []string{}})
			}
			_, _ = fmt.Fprintf(a.stdout, "%sd actor %s: %s\n", verb, d.ID, describeDefinition(*d))
			return nil
		},
	}
}
