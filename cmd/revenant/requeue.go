package main

import (
	"errors"
	"fmt"
	"os/user"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/revenant-go/revenant"
	"github.com/revenant-go/revenant/episodes"
)

type episodeErrorJSON struct {
	EpisodeID string `json:"episode_id"`
	Error     string `json:"error"`
}

type requeueResultJSON struct {
	Requeued []episodeJSON      `json:"requeued"`
	Errors   []episodeErrorJSON `json:"errors"`
}

// operator names who requeues, for the episode's requeue history.
func operator() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return AdminNodeName + ":" + u.Username
	}
	return AdminNodeName
}

func (a *app) requeueCommand() *cobra.Command {
	var actor, errorClass, reason, by string
	var limit int
	var clean bool
	var delay time.Duration
	c := &cobra.Command{
		Use:   "requeue ID... | requeue --actor A [--error-class C] [--limit N]",
		Short: "Put failed (or canceled) episodes back to pending with fresh attempts",
		Long: `Requeue failed (or canceled) episodes: by id, or in bulk by actor (and error
class) from the dead-letter list. Each goes back to pending with fresh attempts;
its completed journal steps still count unless --clean. The requeue is recorded
in the episode's history with --by and --reason. Asks for confirmation unless
--yes. Workflow steps cannot be requeued: resume their workflow instead.`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			switch {
			case len(args) == 0 && actor == "":
				return usagef("name the episodes to requeue (requeue ID...) or select them (requeue --actor A)")
			case len(args) > 0 && (actor != "" || errorClass != "" || cmd.Flags().Changed("limit")):
				return usagef("requeue takes ids or --actor (with --error-class, --limit), not both")
			case len(args) == 0 && errorClass != "" && actor == "":
				return usagef("--error-class selects within an actor: pass --actor too")
			case delay < 0 || delay > episodes.MaxScheduleDelay:
				return usagef("--delay must be between 0 and %s", episodes.MaxScheduleDelay)
			case limit < 1 || limit > episodes.ListLimitMax:
				return usagef("--limit must be between 1 and %d", episodes.ListLimitMax)
			}
			ids := make([]uuid.UUID, len(args))
			for i, arg := range args {
				id, err := parseID(arg, "an episode")
				if err != nil {
					return err
				}
				ids[i] = id
			}
			opts := episodes.RequeueOptions{Delay: delay, Clean: clean, By: by, Reason: reason}
			if opts.By == "" {
				opts.By = operator()
			}
			ctx, cancel := a.timed(cmd.Context(), 0)
			defer cancel()
			client, err := a.admin(ctx)
			if err != nil {
				return err
			}
			out := requeueResultJSON{Requeued: []episodeJSON{}, Errors: []episodeErrorJSON{}}
			if actor != "" {
				what := fmt.Sprintf("requeue up to %d failed episode(s) of actor %q", limit, actor)
				if errorClass != "" {
					what += fmt.Sprintf(" with error class %q", errorClass)
				}
				if err := a.confirm(what); err != nil {
					return err
				}
				eps, err := client.RequeueMatching(ctx, episodes.RequeueFilter{ActorID: actor, ErrorClass: errorClass, Limit: limit}, opts)
				if err != nil {
					return fmt.Errorf("requeueing: %w", err)
				}
				for _, e := range eps {
					out.Requeued = append(out.Requeued, toEpisodeJSON(e, false, false))
				}
				return a.printRequeued(out, nil)
			}
			if err := a.confirm(fmt.Sprintf("requeue %d episode(s)", len(ids))); err != nil {
				return err
			}
			var errs []error
			for _, id := range ids {
				e, err := client.Requeue(ctx, id, opts)
				if err != nil {
					errs = append(errs, err)
					out.Errors = append(out.Errors, episodeErrorJSON{EpisodeID: id.String(), Error: err.Error()})
					continue
				}
				out.Requeued = append(out.Requeued, toEpisodeJSON(e, false, false))
			}
			return a.printRequeued(out, errs)
		},
	}
	f := c.Flags()
	f.StringVar(&actor, "actor", "", "requeue dead letters of this actor")
	f.StringVar(&errorClass, "error-class", "", "with --actor: only those whose error has this class")
	f.IntVar(&limit, "limit", episodes.ListLimitDefault, "with --actor: requeue at most this many (run again for more)")
	f.BoolVar(&clean, "clean", false, "clear the journal so that every step runs again")
	f.DurationVar(&delay, "delay", 0, "schedule them this long from now instead of at once")
	f.StringVar(&reason, "reason", "", "recorded in each episode's requeue history (e.g. a ticket)")
	f.StringVar(&by, "by", "", "who requeues, recorded in the history (default revenant-cli:$USER)")
	return c
}

// printRequeued prints what was requeued, then fails with the errors:
// exit 3 when every failure was an unknown id, 1 otherwise.
func (a *app) printRequeued(out requeueResultJSON, errs []error) error {
	if a.jsonOut {
		if err := a.printJSON(out); err != nil {
			return err
		}
	} else {
		_, _ = fmt.Fprintf(a.stdout, "requeued %d episode(s)\n", len(out.Requeued))
		if len(out.Requeued) > 0 {
			t := newTable(a.stdout, "EPISODE", "ACTOR", "STATUS", "DUE")
			for _, e := range out.Requeued {
				t.row(e.ID, e.ActorID, e.Status, ago(e.RunAt))
			}
			if err := t.flush(); err != nil {
				return err
			}
		}
	}
	if len(errs) == 0 {
		return nil
	}
	code := exitNotFound
	for _, err := range errs {
		if !errors.Is(err, revenant.ErrNotFound) {
			code = exitError
		}
	}
	return withCode(code, errors.Join(errs...))
}

func (a *app) cancelCommand() *cobra.Command {
	var reason string
	c := &cobra.Command{
		Use:   "cancel ID",
		Short: "Cancel a pending, running or blocked episode",
		Long: `Cancel an episode from outside: a pending, running or blocked episode becomes
canceled, and a node still running it is fenced off (its next write fails) and
its run's context canceled. Asks for confirmation unless --yes.`,
		Args: exactArgs(1, "an episode id"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseID(args[0], "an episode")
			if err != nil {
				return err
			}
			ctx, cancel := a.timed(cmd.Context(), 0)
			defer cancel()
			client, err := a.admin(ctx)
			if err != nil {
				return err
			}
			if err := a.confirm("cancel episode " + id.String()); err != nil {
				return err
			}
			e, err := client.Cancel(ctx, id, reason)
			if err != nil {
				return fmt.Errorf("canceling: %w", err)
			}
			if a.jsonOut {
				return a.printJSON(struct {
					Canceled episodeJSON `json:"canceled"`
				}{toEpisodeJSON(e, false, false)})
			}
			_, _ = fmt.Fprintf(a.stdout, "canceled episode %s (actor %s): status %s\n", e.ID, e.ActorID, e.Status)
			return nil
		},
	}
	c.Flags().StringVar(&reason, "reason", "", "why, recorded with the cancellation")
	return c
}

func (a *app) deadLettersCommand() *cobra.Command {
	var actor, errorClass, after string
	var limit int
	c := &cobra.Command{
		Use:   "dead-letters",
		Short: "List the dead-letter list: failed episodes, not archived (workflow steps left out)",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p := episodes.ListParams{ActorID: actor, ErrorClass: errorClass, Limit: limit, Stack: a.stack, Env: a.env}
			if after != "" {
				var err error
				if p.After, err = parseID(after, "an episode"); err != nil {
					return err
				}
			}
			if limit < 1 || limit > episodes.ListLimitMax {
				return usagef("--limit must be between 1 and %d", episodes.ListLimitMax)
			}
			ctx, cancel := a.timed(cmd.Context(), 0)
			defer cancel()
			client, err := a.admin(ctx)
			if err != nil {
				return err
			}
			res, err := client.DeadLetters(ctx, p)
			if err != nil {
				return fmt.Errorf("listing dead letters: %w", err)
			}
			return a.printEpisodePage(res)
		},
	}
	f := c.Flags()
	f.StringVar(&actor, "actor", "", "keep this actor's")
	f.StringVar(&errorClass, "error-class", "", "keep those whose error has this class")
	f.StringVar(&after, "after", "", "continue after this episode id (the previous page's cursor)")
	f.IntVar(&limit, "limit", episodes.ListLimitDefault, "page size")
	return c
}
