package revenanttest

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"

	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/inspect"
)

// RequireEnqueuedOpts narrows RequireEnqueued. A nil
// *RequireEnqueuedOpts (or a zero field) does not filter.
type RequireEnqueuedOpts struct {
	// Input, when set, must equal the episode's input as JSON (any value
	// json.Marshal accepts, or a json.RawMessage). Defaults to any input.
	Input any
	// Status, when set, must be the episode's status. Defaults to any.
	Status episodes.Status
	// Stack and Env, when set, must be the episode's SourceStack and
	// SourceEnv. Default to any.
	Stack, Env string
	// DedupeKey, when set, must be the episode's. Defaults to any.
	DedupeKey string
	// Count, when positive, is how many matching episodes there must be.
	// Defaults to 0: at least one.
	Count int
}

// RequireEnqueued fails the test unless an episode of actorID matching opts
// exists (archived ones aside), and returns the newest such episode. Its
// message lists the episodes it found instead.
func RequireEnqueued(t TB, db *sqlx.DB, actorID string, opts *RequireEnqueuedOpts) *episodes.Episode {
	t.Helper()
	if opts == nil {
		opts = &RequireEnqueuedOpts{}
	}
	var want json.RawMessage
	if opts.Input != nil {
		b, err := json.Marshal(opts.Input)
		if err != nil {
			t.Fatalf("revenanttest: RequireEnqueued: opts.Input cannot be encoded as JSON: %v", err)
		}
		want = b
	}
	ctx, cancel := context.WithTimeout(context.Background(), TimeoutDefault)
	defer cancel()
	all, err := listEpisodes(ctx, db, episodes.ListParams{ActorID: actorID})
	if err != nil {
		t.Fatalf("revenanttest: RequireEnqueued: listing episodes of %q: %v", actorID, err)
	}
	var matched []*episodes.Episode
	for _, ep := range all {
		if (opts.Status == "" || ep.Status == opts.Status) && (opts.Stack == "" || ep.SourceStack == opts.Stack) &&
			(opts.Env == "" || ep.SourceEnv == opts.Env) && (opts.DedupeKey == "" || ep.DedupeKey == opts.DedupeKey) &&
			(want == nil || jsonEqual(want, ep.Input)) {
			matched = append(matched, ep)
		}
	}
	if len(matched) > 0 && (opts.Count <= 0 || len(matched) == opts.Count) {
		return matched[len(matched)-1]
	}
	var b strings.Builder
	if opts.Count > 0 {
		fmt.Fprintf(&b, "want %d episodes of actor %q%s, found %d matching", opts.Count, actorID, describeOpts(opts, want), len(matched))
	} else {
		fmt.Fprintf(&b, "no episode of actor %q%s was enqueued", actorID, describeOpts(opts, want))
	}
	if len(all) == 0 {
		b.WriteString("; there is no episode of that actor at all")
		if others := otherActors(ctx, db, actorID); others != "" {
			b.WriteString("; episodes exist for: " + others)
		}
	} else {
		fmt.Fprintf(&b, "; the episodes of %q are:", actorID)
		for i, ep := range all {
			if i == 10 {
				fmt.Fprintf(&b, "\n  … and %d more", len(all)-10)
				break
			}
			fmt.Fprintf(&b, "\n  %s: %s, input %s", ep.ID, ep.Status, compact(ep.Input))
			if ep.SourceStack != "" || ep.SourceEnv != "" {
				fmt.Fprintf(&b, ", stack %q env %q", ep.SourceStack, ep.SourceEnv)
			}
			if ep.DedupeKey != "" {
				fmt.Fprintf(&b, ", dedupe key %q", ep.DedupeKey)
			}
		}
	}
	t.Fatalf("revenanttest: %s", b.String())
	return nil
}

func describeOpts(o *RequireEnqueuedOpts, input json.RawMessage) string {
	var parts []string
	if input != nil {
		parts = append(parts, "input "+compact(input))
	}
	if o.Status != "" {
		parts = append(parts, "status "+string(o.Status))
	}
	if o.Stack != "" {
		parts = append(parts, fmt.Sprintf("stack %q", o.Stack))
	}
	if o.Env != "" {
		parts = append(parts, fmt.Sprintf("env %q", o.Env))
	}
	if o.DedupeKey != "" {
		parts = append(parts, fmt.Sprintf("dedupe key %q", o.DedupeKey))
	}
	if len(parts) == 0 {
		return ""
	}
	return " with " + strings.Join(parts, ", ")
}

// otherActors names the actors that do have episodes, with their counts.
func otherActors(ctx context.Context, db *sqlx.DB, except string) string {
	all, err := listEpisodes(ctx, db, episodes.ListParams{})
	if err != nil {
		return ""
	}
	n := map[string]int{}
	for _, ep := range all {
		if ep.ActorID != except {
			n[ep.ActorID]++
		}
	}
	names := make([]string, 0, len(n))
	for a := range n {
		names = append(names, a)
	}
	sort.Strings(names)
	for i, a := range names {
		names[i] = fmt.Sprintf("%q (%d)", a, n[a])
	}
	return strings.Join(names, ", ")
}

// listEpisodes reads every non-archived episode p selects, in id order.
func listEpisodes(ctx context.Context, db *sqlx.DB, p episodes.ListParams) ([]*episodes.Episode, error) {
	st, err := episodes.New(db, nil)
	if err != nil {
		return nil, err
	}
	p.Limit = episodes.ListLimitMax
	var out []*episodes.Episode
	for {
		page, err := st.List(ctx, p)
		if err != nil {
			return nil, err
		}
		out = append(out, page.Episodes...)
		if page.Next == uuid.Nil {
			return out, nil
		}
		p.After = page.Next
	}
}

// RequireEpisode fails the test unless episode id exists and is in status,
// and returns it. Its message says the status found, with the error of a
// failed episode.
func RequireEpisode(t TB, db *sqlx.DB, id uuid.UUID, status episodes.Status) *episodes.Episode {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), TimeoutDefault)
	defer cancel()
	st, err := episodes.New(db, nil)
	if err != nil {
		t.Fatalf("revenanttest: RequireEpisode: %v", err)
	}
	ep, err := st.Get(ctx, id)
	if err != nil {
		t.Fatalf("revenanttest: RequireEpisode: reading episode %s: %v", id, err)
	}
	if ep.Status != status {
		msg := fmt.Sprintf("episode %s of actor %q is %s, want %s (attempt %d of %d)", id, ep.ActorID, ep.Status, status, ep.Attempts, ep.MaxAttempts)
		if ep.ErrorClass != "" {
			msg += fmt.Sprintf("; its error (%s): %s", ep.ErrorClass, errorOf(ep).Message)
		}
		if ep.Status == episodes.StatusRunning {
			msg += fmt.Sprintf("; node %q runs it", ep.OwnerNode)
		}
		t.Fatalf("revenanttest: %s", msg)
	}
	return ep
}

// RequireSteps fails the test unless the journal of episode id holds
// exactly the steps names, in order, and returns them (with outputs). Its
// message lists the steps found.
func RequireSteps(t TB, db *sqlx.DB, id uuid.UUID, names ...string) []inspect.Step {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), TimeoutDefault)
	defer cancel()
	in, err := inspect.New(db, nil)
	if err != nil {
		t.Fatalf("revenanttest: RequireSteps: %v", err)
	}
	d, err := in.Episode(ctx, id, inspect.EpisodeOptions{Data: true})
	if err != nil {
		t.Fatalf("revenanttest: RequireSteps: reading episode %s: %v", id, err)
	}
	got := make([]string, len(d.Steps))
	for i, s := range d.Steps {
		got[i] = s.Name
	}
	if !equalStrings(got, names) {
		var b strings.Builder
		fmt.Fprintf(&b, "episode %s (%s) recorded steps %s, want %s", id, d.Episode.Status, quoteList(got), quoteList(names))
		for i := range max(len(got), len(names)) {
			var g, w string
			if i < len(got) {
				g = fmt.Sprintf("%q", got[i])
			} else {
				g = "nothing"
			}
			if i < len(names) {
				w = fmt.Sprintf("%q", names[i])
			} else {
				w = "nothing"
			}
			if g != w {
				fmt.Fprintf(&b, "; step %d is %s, want %s", i, g, w)
				break
			}
		}
		t.Fatalf("revenanttest: %s", b.String())
	}
	return d.Steps
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func quoteList(s []string) string {
	q := make([]string, len(s))
	for i, v := range s {
		q[i] = fmt.Sprintf("%q", v)
	}
	return "[" + strings.Join(q, ", ") + "]"
}
