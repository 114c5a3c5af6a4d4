package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/inspect"
)

type requeueJSON struct {
	At         time.Time `json:"at"`
	By         string    `json:"by,omitempty"`
	Reason     string    `json:"reason,omitempty"`
	From       string    `json:"from"`
	ErrorClass string    `json:"error_class,omitempty"`
	Attempts   int       `json:"attempts"`
	Clean      bool      `json:"clean,omitempty"`
}

// episodeJSON is an episode row. Input, Result and Metadata are set only
// with --data; ErrorDetail only where a command shows one episode.
type episodeJSON struct {
	ID                 string          `json:"id"`
	ActorID            string          `json:"actor_id"`
	Expectation        string          `json:"expectation,omitempty"`
	Status             string          `json:"status"`
	Phase              string          `json:"phase,omitempty"`
	Attempts           int             `json:"attempts"`
	MaxAttempts        int             `json:"max_attempts"`
	OwnerNode          string          `json:"owner_node,omitempty"`
	ClaimToken         int64           `json:"claim_token"`
	ErrorClass         string          `json:"error_class,omitempty"`
	ErrorDetail        json.RawMessage `json:"error_detail,omitempty"`
	Stack              string          `json:"stack"`
	Env                string          `json:"env"`
	DedupeKey          string          `json:"dedupe_key,omitempty"`
	WorkflowInstanceID string          `json:"workflow_instance_id,omitempty"`
	WorkflowStepID     string          `json:"workflow_step_id,omitempty"`
	CreatedAt          time.Time       `json:"created_at"`
	RunAt              time.Time       `json:"run_at"`
	StartedAt          *time.Time      `json:"started_at,omitempty"`
	LastActivityAt     *time.Time      `json:"last_activity_at,omitempty"`
	FinishedAt         *time.Time      `json:"finished_at,omitempty"`
	ArchivedAt         *time.Time      `json:"archived_at,omitempty"`
	CancelRequestedAt  *time.Time      `json:"cancel_requested_at,omitempty"`
	Requeues           []requeueJSON   `json:"requeues,omitempty"`
	Input              json.RawMessage `json:"input,omitempty"`
	Result             json.RawMessage `json:"result,omitempty"`
	Metadata           json.RawMessage `json:"metadata,omitempty"`
}

// toEpisodeJSON converts a row; detail adds the error detail and the
// requeue history, data the input, result and metadata.
func toEpisodeJSON(e *episodes.Episode, detail, data bool) episodeJSON {
	out := episodeJSON{ID: e.ID.String(), ActorID: e.ActorID, Expectation: e.Expectation, Status: string(e.Status), Phase: e.Phase,
		Attempts: e.Attempts, MaxAttempts: e.MaxAttempts, OwnerNode: e.OwnerNode, ClaimToken: e.ClaimToken, ErrorClass: e.ErrorClass,
		Stack: e.SourceStack, Env: e.SourceEnv, DedupeKey: e.DedupeKey, WorkflowInstanceID: idString(e.WorkflowInstanceID),
		WorkflowStepID: e.WorkflowStepID, CreatedAt: e.CreatedAt, RunAt: e.RunAt, StartedAt: e.StartedAt,
		LastActivityAt: e.LastActivityAt, FinishedAt: e.FinishedAt, ArchivedAt: e.ArchivedAt, CancelRequestedAt: e.CancelRequestedAt}
	if detail {
		out.ErrorDetail = e.ErrorDetail
		for _, r := range e.Requeues {
			out.Requeues = append(out.Requeues, requeueJSON{At: r.At, By: r.By, Reason: r.Reason, From: string(r.From),
				ErrorClass: r.ErrorClass, Attempts: r.Attempts, Clean: r.Clean})
		}
	}
	if data {
		out.Input, out.Result, out.Metadata = e.Input, e.Result, e.Metadata
	}
	return out
}

// parseID reads an id argument.
func parseID(arg, what string) (uuid.UUID, error) {
	id, err := uuid.Parse(strings.TrimSpace(arg))
	if err != nil {
		return uuid.Nil, usagef("%q is not %s id (a UUID such as 0190d5f2-7a3c-7b1e-9a4f-2c8e5d1b6f30)", arg, what)
	}
	return id, nil
}

// parseStatuses reads --status values.
func parseStatuses(values []string) ([]episodes.Status, error) {
	var out []episodes.Status
	for _, v := range values {
		for _, s := range strings.Split(v, ",") {
			st := episodes.Status(strings.TrimSpace(s))
			if !st.Valid() {
				return nil, usagef("unknown status %q: use pending, running, blocked, done, failed or canceled", s)
			}
			out = append(out, st)
		}
	}
	return out, nil
}

func (a *app) episodesCommand() *cobra.Command {
	return group("episodes", "List episodes, show one, or explain its state", a.episodesListCommand(), a.episodesShowCommand(), a.episodesExplainCommand())
}

// episodeTable prints episodes, one line each.
func (a *app) episodeTable(eps []*episodes.Episode) error {
	t := newTable(a.stdout, "EPISODE", "ACTOR", "STATUS", "ATTEMPTS", "OWNER", "ERROR CLASS", "SCOPE", "CREATED", "FINISHED")
	for _, e := range eps {
		t.row(e.ID.String(), e.ActorID, string(e.Status), fmt.Sprintf("%d/%d", e.Attempts, e.MaxAttempts), dash(e.OwnerNode),
			dash(e.ErrorClass), scope(e.SourceStack, e.SourceEnv), ago(e.CreatedAt), agoPtr(e.FinishedAt))
	}
	return t.flush()
}

type episodeListJSON struct {
	Episodes []episodeJSON `json:"episodes"`
	// Next is the cursor for the following page (--after), "" at the end.
	Next string `json:"next,omitempty"`
	// Skipped are rows that could not be read.
	Skipped []string `json:"skipped,omitempty"`
}

// printEpisodePage prints one page of a list.
func (a *app) printEpisodePage(res *episodes.ListResult) error {
	if a.jsonOut {
		out := episodeListJSON{Episodes: []episodeJSON{}, Next: idString(res.Next)}
		for _, e := range res.Episodes {
			out.Episodes = append(out.Episodes, toEpisodeJSON(e, false, false))
		}
		for _, s := range res.Skipped {
			out.Skipped = append(out.Skipped, s.Error())
		}
		return a.printJSON(out)
	}
	if len(res.Episodes) == 0 {
		_, _ = fmt.Fprintln(a.stdout, "no episodes")
	} else if err := a.episodeTable(res.Episodes); err != nil {
		return err
	}
	for _, s := range res.Skipped {
		_, _ = fmt.Fprintf(a.stdout, "unreadable row skipped: %v\n", s)
	}
	if res.Next != uuid.Nil {
		_, _ = fmt.Fprintf(a.stdout, "more: pass --after %s\n", res.Next)
	}
	return nil
}

func (a *app) episodesListCommand() *cobra.Command {
	var statuses []string
	var actor, errorClass, after string
	var limit int
	var archived bool
	c := &cobra.Command{
		Use:   "list",
		Short: "List episodes, oldest first, a page at a time",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			sts, err := parseStatuses(statuses)
			if err != nil {
				return err
			}
			p := episodes.ListParams{Statuses: sts, ActorID: actor, ErrorClass: errorClass, Limit: limit, IncludeArchived: archived,
				Stack: a.stack, Env: a.env}
			if after != "" {
				if p.After, err = parseID(after, "an episode"); err != nil {
					return err
				}
			}
			if limit < 1 || limit > episodes.ListLimitMax {
				return usagef("--limit must be between 1 and %d", episodes.ListLimitMax)
			}
			ctx, cancel := a.timed(cmd.Context(), 0)
			defer cancel()
			c, err := a.admin(ctx)
			if err != nil {
				return err
			}
			res, err := c.Episodes().List(ctx, p)
			if err != nil {
				return fmt.Errorf("listing episodes: %w", err)
			}
			return a.printEpisodePage(res)
		},
	}
	f := c.Flags()
	f.StringSliceVar(&statuses, "status", nil, "keep these statuses (repeat or comma-separate): pending, running, blocked, done, failed, canceled")
	f.StringVar(&actor, "actor", "", "keep this actor's episodes")
	f.StringVar(&errorClass, "error-class", "", "keep episodes whose (last) error has this class")
	f.StringVar(&after, "after", "", "continue after this episode id (the previous page's cursor)")
	f.IntVar(&limit, "limit", episodes.ListLimitDefault, "page size")
	f.BoolVar(&archived, "archived", false, "include archived episodes")
	return c
}

type stepJSON struct {
	Seq         int             `json:"seq"`
	Name        string          `json:"name"`
	Status      string          `json:"status"`
	StartedAt   time.Time       `json:"started_at"`
	FinishedAt  time.Time       `json:"finished_at"`
	TookMS      int64           `json:"took_ms"`
	ClaimToken  int64           `json:"claim_token"`
	OutputBytes int             `json:"output_bytes"`
	Output      json.RawMessage `json:"output,omitempty"`
	Error       json.RawMessage `json:"error,omitempty"`
}

type workflowContextJSON struct {
	InstanceID string `json:"instance_id"`
	WorkflowID string `json:"workflow_id"`
	StepID     string `json:"step_id"`
	Status     string `json:"status"`
}

type episodeShowJSON struct {
	Episode  episodeJSON          `json:"episode"`
	Steps    []stepJSON           `json:"steps"`
	Workflow *workflowContextJSON `json:"workflow,omitempty"`
}

func (a *app) episodesShowCommand() *cobra.Command {
	var data bool
	c := &cobra.Command{
		Use:   "show ID",
		Short: "Show an episode: its row, error, requeue history and journal steps",
		Long: `Show one episode: its row, its error detail, its requeue history, and its
journal steps with their durations and output sizes. Its input, result,
metadata and step outputs may hold personal data: they are shown only with
--data.`,
		Args: exactArgs(1, "an episode id"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseID(args[0], "an episode")
			if err != nil {
				return err
			}
			ctx, cancel := a.timed(cmd.Context(), 0)
			defer cancel()
			in, err := a.inspector(ctx)
			if err != nil {
				return err
			}
			d, err := in.Episode(ctx, id, inspect.EpisodeOptions{Data: data})
			if err != nil {
				return err
			}
			out := episodeShowJSON{Episode: toEpisodeJSON(d.Episode, true, data), Steps: []stepJSON{}}
			for _, s := range d.Steps {
				st := stepJSON{Seq: s.Seq, Name: s.Name, Status: s.Status, StartedAt: s.StartedAt, FinishedAt: s.FinishedAt,
					TookMS: ms(s.Took), ClaimToken: s.ClaimToken, OutputBytes: s.OutputBytes, Error: s.Error}
				if data {
					st.Output = s.Output
				}
				out.Steps = append(out.Steps, st)
			}
			if w := d.Workflow; w != nil {
				out.Workflow = &workflowContextJSON{InstanceID: w.InstanceID.String(), WorkflowID: w.WorkflowID, StepID: w.StepID, Status: w.Status}
			}
			if a.jsonOut {
				return a.printJSON(out)
			}
			return a.printEpisodeShow(d, out, data)
		},
	}
	c.Flags().BoolVar(&data, "data", false, "also show the input, result, metadata and step outputs (may hold personal data)")
	return c
}

func (a *app) printEpisodeShow(d *inspect.EpisodeDetail, out episodeShowJSON, data bool) error {
	e := d.Episode
	t := newTable(a.stdout)
	t.row("episode", e.ID.String())
	actor := e.ActorID
	if e.Expectation != "" {
		actor += fmt.Sprintf(" (expectation %s)", e.Expectation)
	}
	t.row("actor", actor)
	status := string(e.Status)
	if e.Phase != "" {
		status += fmt.Sprintf(" (phase %s)", e.Phase)
	}
	t.row("status", status)
	t.row("attempts", fmt.Sprintf("%d of %d (claim token %d)", e.Attempts, e.MaxAttempts, e.ClaimToken))
	t.row("owner", dash(e.OwnerNode))
	t.row("scope", fmt.Sprintf("stack %s, env %s", dash(e.SourceStack), dash(e.SourceEnv)))
	if e.DedupeKey != "" {
		t.row("dedupe key", e.DedupeKey)
	}
	t.row("created", fmt.Sprintf("%s (%s)", e.CreatedAt.Format(time.RFC3339), ago(e.CreatedAt)))
	t.row("due", fmt.Sprintf("%s (%s)", e.RunAt.Format(time.RFC3339), ago(e.RunAt)))
	if e.StartedAt != nil {
		t.row("started", ago(*e.StartedAt))
	}
	if e.LastActivityAt != nil {
		t.row("last activity", ago(*e.LastActivityAt))
	}
	if e.FinishedAt != nil {
		t.row("finished", ago(*e.FinishedAt))
	}
	if e.CancelRequestedAt != nil {
		t.row("cancel requested", ago(*e.CancelRequestedAt))
	}
	if e.ArchivedAt != nil {
		t.row("archived", ago(*e.ArchivedAt))
	}
	if w := out.Workflow; w != nil {
		t.row("workflow", fmt.Sprintf("%s instance %s, step %s (instance %s)", w.WorkflowID, w.InstanceID, w.StepID, w.Status))
	}
	if e.ErrorClass != "" || len(e.ErrorDetail) > 0 {
		t.row("error", fmt.Sprintf("%s %s", dash(e.ErrorClass), compactJSON(e.ErrorDetail, 300)))
	}
	if data {
		t.row("input", compactJSON(e.Input, 0))
		t.row("result", compactJSON(e.Result, 0))
		t.row("metadata", compactJSON(e.Metadata, 0))
	} else {
		t.row("input", "(hidden: pass --data)")
	}
	if err := t.flush(); err != nil {
		return err
	}
	if len(e.Requeues) > 0 {
		_, _ = fmt.Fprintf(a.stdout, "\nREQUEUES (%d)\n", len(e.Requeues))
		t := newTable(a.stdout, "AT", "BY", "REASON", "FROM", "ERROR CLASS", "ATTEMPTS", "CLEAN")
		for _, r := range e.Requeues {
			t.row(ago(r.At), dash(r.By), dash(r.Reason), string(r.From), dash(r.ErrorClass), fmt.Sprint(r.Attempts), fmt.Sprint(r.Clean))
		}
		if err := t.flush(); err != nil {
			return err
		}
	}
	_, _ = fmt.Fprintf(a.stdout, "\nSTEPS (%d)\n", len(d.Steps))
	if len(d.Steps) == 0 {
		_, _ = fmt.Fprintln(a.stdout, "no journal entries")
		return nil
	}
	header := []string{"SEQ", "NAME", "STATUS", "TOOK", "OUTPUT", "CLAIM", "FINISHED", "ERROR"}
	if data {
		header = append(header, "VALUE")
	}
	t = newTable(a.stdout, header...)
	for _, s := range d.Steps {
		cols := []string{fmt.Sprint(s.Seq), s.Name, s.Status, human(s.Took), fmt.Sprintf("%dB", s.OutputBytes), fmt.Sprint(s.ClaimToken),
			ago(s.FinishedAt), compactJSON(s.Error, 120)}
		if data {
			cols = append(cols, compactJSON(s.Output, 120))
		}
		t.row(cols...)
	}
	return t.flush()
}
