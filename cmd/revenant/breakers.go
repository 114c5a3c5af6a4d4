package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/revenant-go/revenant/breakers"
)

type breakerJSON struct {
	ActorID        string     `json:"actor_id"`
	Stack          string     `json:"stack"`
	Env            string     `json:"env"`
	State          string     `json:"state"`
	Manual         bool       `json:"manual"`
	Failures       int        `json:"failures"`
	WindowFailures int        `json:"window_failures"`
	ReopenAt       *time.Time `json:"reopen_at,omitempty"`
	Reason         string     `json:"reason,omitempty"`
	ChangedAt      time.Time  `json:"changed_at"`
}

func toBreakerJSON(b breakers.Breaker) breakerJSON {
	return breakerJSON{ActorID: b.ActorID, Stack: b.Stack, Env: b.Env, State: string(b.State), Manual: b.Manual, Failures: b.Failures,
		WindowFailures: b.WindowFailures, ReopenAt: b.ReopenAt, Reason: b.Reason, ChangedAt: b.ChangedAt}
}

func (a *app) breakersCommand() *cobra.Command {
	return group("breakers", "List, open and close actors' circuit breakers",
		a.breakersListCommand(), a.breakerSetCommand(true), a.breakerSetCommand(false))
}

func (a *app) breakersListCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the breakers that have a state (every other breaker is closed)",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := a.timed(cmd.Context(), 0)
			defer cancel()
			client, err := a.admin(ctx)
			if err != nil {
				return err
			}
			list, err := client.Breakers().List(ctx)
			if err != nil {
				return fmt.Errorf("listing breakers: %w", err)
			}
			out := []breakerJSON{}
			for _, b := range list {
				if a.inScope(b.Stack, b.Env) {
					out = append(out, toBreakerJSON(b))
				}
			}
			if a.jsonOut {
				return a.printJSON(struct {
					Breakers []breakerJSON `json:"breakers"`
				}{out})
			}
			if len(out) == 0 {
				_, _ = fmt.Fprintln(a.stdout, "no breakers recorded: every breaker is closed")
				return nil
			}
			t := newTable(a.stdout, "ACTOR", "SCOPE", "STATE", "BY", "FAILURES", "REOPENS", "CHANGED", "REASON")
			for _, b := range out {
				by, reopens := "breaker", "-"
				if b.Manual {
					by = "operator"
				}
				if b.ReopenAt != nil {
					reopens = ago(*b.ReopenAt)
				}
				t.row(b.ActorID, scope(b.Stack, b.Env), b.State, by, fmt.Sprintf("%d (%d in window)", b.Failures, b.WindowFailures),
					reopens, ago(b.ChangedAt), dash(b.Reason))
			}
			return t.flush()
		},
	}
}

// breakerSetCommand is "open" (or, with open false, "close").
func (a *app) breakerSetCommand(open bool) *cobra.Command {
	var reason string
	verb, short := "close", "Close an actor's breaker by hand (its failures count from zero again)"
	long := `Close the breaker of ACTOR in the scope --stack and --env (none by default):
nodes in that scope claim the actor's episodes again, and its failure counts
start from zero. Asks for confirmation unless --yes.`
	if open {
		verb, short = "open", "Open an actor's breaker by hand: no node in its scope claims the actor's episodes"
		long = `Open the breaker of ACTOR in the scope --stack and --env (none by default): no
node in that scope claims the actor's episodes until an operator closes it
('revenant breakers close'); failures and probes leave a breaker opened by hand
alone. Asks for confirmation unless --yes.`
	}
	c := &cobra.Command{
		Use:   verb + " ACTOR",
		Short: short,
		Long:  long,
		Args:  exactArgs(1, "an actor id"),
		RunE: func(cmd *cobra.Command, args []string) error {
			key := breakers.Key{ActorID: args[0], Stack: a.stack, Env: a.env}
			ctx, cancel := a.timed(cmd.Context(), 0)
			defer cancel()
			client, err := a.admin(ctx)
			if err != nil {
				return err
			}
			if err := a.confirm(fmt.Sprintf("%s the breaker of actor %q (stack %s, env %s)", verb, key.ActorID, dash(key.Stack), dash(key.Env))); err != nil {
				return err
			}
			set := client.Breakers().Close
			if open {
				set = client.Breakers().Open
			}
			b, err := set(ctx, key, reason)
			if err != nil {
				return fmt.Errorf("%s the breaker of actor %q: %w", verb, key.ActorID, err)
			}
			if a.jsonOut {
				return a.printJSON(struct {
					Breaker breakerJSON `json:"breaker"`
				}{toBreakerJSON(b)})
			}
			_, _ = fmt.Fprintf(a.stdout, "breaker of actor %s (%s) is %s\n", b.ActorID, scope(b.Stack, b.Env), b.State)
			return nil
		},
	}
	c.Flags().StringVar(&reason, "reason", "", "why, recorded and shown with the breaker")
	return c
}
