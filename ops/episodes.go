package ops

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/google/uuid"

	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/inspect"
)

// episodeFilter is the episode and dead-letter lists' query.
type episodeFilter struct {
	Status, Actor, ErrorClass, Stack, Env, Workflow string
}

type listData struct {
	Filter   episodeFilter
	Statuses []episodes.Status
	Episodes []*episodes.Episode
	// Next links the next page ("" at the end), First the first one
	// ("" on it), both keeping the filters.
	Next, First string
	Skipped     []episodes.RowError
}

var allStatuses = []episodes.Status{episodes.StatusPending, episodes.StatusRunning, episodes.StatusBlocked,
	episodes.StatusDone, episodes.StatusFailed, episodes.StatusCanceled}

// listParams reads the filters and cursor of a list page.
func (h *Handler) listParams(r *http.Request) (episodes.ListParams, episodeFilter, error) {
	q := r.URL.Query()
	f := episodeFilter{Status: q.Get("status"), Actor: q.Get("actor"), ErrorClass: q.Get("error_class"),
		Stack: q.Get("stack"), Env: q.Get("env"), Workflow: q.Get("workflow")}
	p := episodes.ListParams{ActorID: f.Actor, ErrorClass: f.ErrorClass, Stack: f.Stack, Env: f.Env, Limit: h.cfg.PageSize}
	if f.Status != "" {
		s := episodes.Status(f.Status)
		if !s.Valid() {
			return p, f, fmt.Errorf("%w: unknown status %q; choose one of pending, running, blocked, done, failed, canceled", errBadRequest, f.Status)
		}
		p.Statuses = []episodes.Status{s}
	}
	if f.Workflow != "" {
		id, err := uuid.Parse(f.Workflow)
		if err != nil {
			return p, f, fmt.Errorf("%w: workflow %q is not a workflow instance id (a UUID)", errBadRequest, f.Workflow)
		}
		p.WorkflowInstanceID = id
	}
	if a := q.Get("after"); a != "" {
		id, err := uuid.Parse(a)
		if err != nil {
			return p, f, fmt.Errorf("%w: the page cursor %q is not an episode id; start again from the first page", errBadRequest, a)
		}
		p.After = id
	}
	return p, f, nil
}

// pageLinks links the pages after and before res in list page path,
// keeping the filters.
func pageLinks(r *http.Request, path string, res *episodes.ListResult) (next, first string) {
	q := r.URL.Query()
	for k, v := range q {
		if len(v) == 1 && v[0] == "" {
			delete(q, k)
		}
	}
	if q.Get("after") != "" {
		q.Del("after")
		first = path + "?" + q.Encode()
	}
	if res.Next != uuid.Nil {
		q.Set("after", res.Next.String())
		next = path + "?" + q.Encode()
	}
	return next, first
}

// episodesPage lists episodes by status, actor and error class, a page
// at a time.
func (h *Handler) episodesPage(ctx context.Context, r *http.Request, v *view) error {
	v.Title = "Episodes"
	p, f, err := h.listParams(r)
	if err != nil {
		return err
	}
	res, err := h.c.Episodes().List(ctx, p)
	if err != nil {
		return fmt.Errorf("listing episodes: %w", err)
	}
	hideData(res.Episodes)
	d := &listData{Filter: f, Statuses: allStatuses, Episodes: res.Episodes, Skipped: res.Skipped}
	d.Next, d.First = pageLinks(r, "episodes", res)
	v.Data = d
	return nil
}

// deadLettersPage lists failed episodes, each with a requeue button when
// actions are on.
func (h *Handler) deadLettersPage(ctx context.Context, r *http.Request, v *view) error {
	v.Title = "Dead letters"
	p, f, err := h.listParams(r)
	if err != nil {
		return err
	}
	res, err := h.c.DeadLetters(ctx, episodes.ListParams{ActorID: p.ActorID, ErrorClass: p.ErrorClass, Stack: p.Stack, Env: p.Env,
		After: p.After, Limit: p.Limit})
	if err != nil {
		return fmt.Errorf("listing dead letters: %w", err)
	}
	hideData(res.Episodes)
	d := &listData{Filter: f, Episodes: res.Episodes, Skipped: res.Skipped}
	d.Next, d.First = pageLinks(r, "dead-letters", res)
	v.Data = d
	return nil
}

// hideData drops what lists never show, so that no template can leak it.
func hideData(eps []*episodes.Episode) {
	for _, ep := range eps {
		ep.Input, ep.Result, ep.Metadata = nil, nil, nil
	}
}

type episodeData struct {
	D *inspect.EpisodeDetail
	X *inspect.Explanation
	// Timeline places each journal entry on the span from the first
	// step's start to the last one's finish.
	Timeline []stepBar
	Span     time.Duration
	// CanRequeue and CanCancel say which buttons apply.
	CanRequeue, CanCancel bool
	// EpisodesOfWorkflow links the instance's other episodes.
	EpisodesOfWorkflow string
}

// stepBar is one journal entry on the timeline, in percent of its width.
type stepBar struct {
	inspect.Step
	X, W float64
}

// episodePage answers "why?": the row, its error and requeues, the
// journal as a timeline, and the explanation.
func (h *Handler) episodePage(ctx context.Context, r *http.Request, v *view) error {
	id, err := uuid.Parse(r.PathValue("id"))
	if err != nil {
		return fmt.Errorf("%w: %q is not an episode id (a UUID)", errBadRequest, r.PathValue("id"))
	}
	v.Title = "Episode " + id.String()
	d, err := h.c.Inspect().Episode(ctx, id, inspect.EpisodeOptions{Data: h.cfg.ShowData})
	if err != nil {
		return fmt.Errorf("reading episode %s: %w", id, err)
	}
	if !h.cfg.ShowData {
		d.Episode.Input, d.Episode.Result, d.Episode.Metadata = nil, nil, nil
		for i := range d.Steps {
			d.Steps[i].Output = nil
		}
	}
	x, err := h.explain(ctx, id)
	if err != nil {
		return fmt.Errorf("explaining episode %s: %w", id, err)
	}
	st := d.Episode.Status
	data := &episodeData{D: d, X: x, CanRequeue: st == episodes.StatusFailed || st == episodes.StatusCanceled,
		CanCancel: !st.Terminal()}
	data.Timeline, data.Span = timeline(d.Steps)
	if d.Episode.WorkflowInstanceID != uuid.Nil {
		data.EpisodesOfWorkflow = "episodes?" + url.Values{"workflow": {d.Episode.WorkflowInstanceID.String()}}.Encode()
	}
	v.Data = data
	return nil
}

// timeline positions steps by their start and finish times.
func timeline(steps []inspect.Step) ([]stepBar, time.Duration) {
	if len(steps) == 0 {
		return nil, 0
	}
	start, end := steps[0].StartedAt, steps[0].FinishedAt
	for _, s := range steps {
		if s.StartedAt.Before(start) {
			start = s.StartedAt
		}
		if s.FinishedAt.After(end) {
			end = s.FinishedAt
		}
	}
	span := end.Sub(start)
	bars := make([]stepBar, len(steps))
	for i, s := range steps {
		b := stepBar{Step: s, X: 0, W: 100}
		if span > 0 {
			b.X = 100 * float64(s.StartedAt.Sub(start)) / float64(span)
			b.W = 100 * float64(s.FinishedAt.Sub(s.StartedAt)) / float64(span)
		}
		// A memoized or instant step still shows as a sliver.
		b.W = max(b.W, 0.6)
		b.X = min(max(b.X, 0), 100-b.W)
		bars[i] = b
	}
	return bars, span
}
