package ops

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/google/uuid"

	"github.com/revenant-go/revenant/breakers"
	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/inspect"
	"github.com/revenant-go/revenant/recovery"
)

// stuckScanRows bounds the running episodes the overview reads to find
// the orphans of dead nodes outside the dry run's scope.
const stuckScanRows = 1000

// unclaimableSample is how many episodes of each unclaimable backlog the
// overview explains.
const unclaimableSample = 3

// Why an episode is listed as stuck.
const (
	stuckOrphan      = "orphan"
	stuckExhausted   = "exhausted"
	stuckUnclaimable = "unclaimable"
)

type overviewData struct {
	Nodes                        []inspect.Node
	Alive, Dead, Stopped         int
	Backlog                      []inspect.Backlog
	Stuck                        []stuck
	StuckTotal, StuckMore        int
	Breakers                     []breakers.Breaker
	Scope                        string
	DryRunError                  string
	UnclaimableActors, Exhausted int
}

// stuck is one episode the overview explains.
type stuck struct {
	// Why is stuckOrphan, stuckExhausted or stuckUnclaimable.
	Why string
	X   *inspect.Explanation
}

// scope says which episodes the dashboard's sweep covers.
func (h *Handler) scope() string {
	if s := h.cfg.Sweep; s != nil {
		return s.Scope
	}
	r := h.c.Runner()
	return fmt.Sprintf("this client's scope: stack %q, env %q", r.Stack(), r.Env())
}

// dryRun is the dashboard's sweep, run dry: Config.Sweep's, or the
// client's own.
func (h *Handler) dryRun(ctx context.Context) (*recovery.Result, error) {
	if s := h.cfg.Sweep; s != nil {
		return s.DryRun(ctx)
	}
	return h.c.Sweep(ctx, true)
}

// explain explains an episode as the dashboard's sweep sees it.
func (h *Handler) explain(ctx context.Context, id uuid.UUID) (*inspect.Explanation, error) {
	if s := h.cfg.Sweep; s != nil {
		return s.Explain(ctx, id)
	}
	return h.c.Explain(ctx, id)
}

// overview answers "what is stuck?": nodes, backlog, stuck episodes with
// their explanations, breakers.
func (h *Handler) overview(ctx context.Context, _ *http.Request, v *view) error {
	v.Title = "Overview"
	in := h.c.Inspect()
	d := &overviewData{Scope: h.scope()}
	var err error
	if d.Nodes, err = in.Nodes(ctx); err != nil {
		return fmt.Errorf("reading the nodes: %w", err)
	}
	for _, n := range d.Nodes {
		switch n.Liveness {
		case inspect.Alive:
			d.Alive++
		case inspect.Dead:
			d.Dead++
		default:
			d.Stopped++
		}
	}
	if d.Backlog, err = in.Backlog(ctx); err != nil {
		return fmt.Errorf("reading the backlog: %w", err)
	}
	if d.Breakers, err = h.c.Breakers().List(ctx); err != nil {
		return fmt.Errorf("reading the breakers: %w", err)
	}
	ids, why, err := h.stuckIDs(ctx, d)
	if err != nil {
		return err
	}
	d.StuckTotal = len(ids)
	if len(ids) > h.cfg.StuckLimit {
		d.StuckMore = len(ids) - h.cfg.StuckLimit
		ids = ids[:h.cfg.StuckLimit]
	}
	for _, id := range ids {
		x, err := h.explain(ctx, id)
		if errors.Is(err, episodes.ErrNotFound) {
			continue // archived meanwhile
		}
		if err != nil {
			return fmt.Errorf("explaining episode %s: %w", id, err)
		}
		d.Stuck = append(d.Stuck, stuck{Why: why[id], X: x})
	}
	v.Data = d
	return nil
}

// stuckIDs finds the stuck episodes: the orphans the dry run finds (the
// running episodes of dead nodes in the sweep's scope, exhausted ones
// included), the running episodes of dead nodes outside that scope, and a
// few pending episodes of each backlog no live node can claim.
func (h *Handler) stuckIDs(ctx context.Context, d *overviewData) ([]uuid.UUID, map[uuid.UUID]string, error) {
	var ids []uuid.UUID
	why := map[uuid.UUID]string{}
	add := func(id uuid.UUID, w string) {
		if _, ok := why[id]; !ok {
			ids = append(ids, id)
			why[id] = w
		}
	}
	fromDead := map[string]int{}
	res, err := h.dryRun(ctx)
	if err != nil {
		// The rest of the overview still answers; the scan below finds
		// the dead nodes' episodes.
		d.DryRunError = sanitize(err.Error())
		h.logger.Warn("ops: the overview's dry run failed", "err", d.DryRunError)
	} else {
		for _, p := range res.Plans {
			w := stuckOrphan
			if p.Action == recovery.ActionDeadLetter || p.Action == recovery.ActionSkip && errors.Is(p.Err, recovery.ErrExhausted) {
				w = stuckExhausted
				d.Exhausted++
			}
			add(p.EpisodeID, w)
			fromDead[p.PreviousOwner]++
		}
	}
	missing := false
	dead := map[string]bool{}
	for _, n := range d.Nodes {
		if n.Liveness == inspect.Dead && n.Running > fromDead[n.ID] {
			dead[n.ID], missing = true, true
		}
	}
	if missing {
		p := episodes.ListParams{Statuses: []episodes.Status{episodes.StatusRunning}, Limit: 500}
		for scanned := 0; scanned < stuckScanRows; {
			page, err := h.c.Episodes().List(ctx, p)
			if err != nil {
				return nil, nil, fmt.Errorf("listing running episodes: %w", err)
			}
			for _, ep := range page.Episodes {
				if dead[ep.OwnerNode] {
					add(ep.ID, stuckOrphan)
				}
			}
			scanned += len(page.Episodes)
			if page.Next == uuid.Nil {
				break
			}
			p.After = page.Next
		}
	}
	for _, b := range d.Backlog {
		if b.Claimable || b.Due+b.Scheduled == 0 {
			continue
		}
		d.UnclaimableActors++
		page, err := h.c.Episodes().List(ctx, episodes.ListParams{Statuses: []episodes.Status{episodes.StatusPending},
			ActorID: b.ActorID, Stack: b.Stack, Env: b.Env, Limit: 20})
		if err != nil {
			return nil, nil, fmt.Errorf("listing the pending episodes of actor %q: %w", b.ActorID, err)
		}
		n := 0
		for _, ep := range page.Episodes {
			// ListParams treats "" as any stack; the backlog means none.
			if ep.SourceStack != b.Stack || ep.SourceEnv != b.Env || n == unclaimableSample {
				continue
			}
			add(ep.ID, stuckUnclaimable)
			n++
		}
	}
	return ids, why, nil
}

type recoveryData struct {
	Result *recovery.Result
	Scope  string
}

// recoveryPage answers "what will recovery do?": the sweep's dry run.
func (h *Handler) recoveryPage(ctx context.Context, _ *http.Request, v *view) error {
	v.Title = "Recovery dry run"
	res, err := h.dryRun(ctx)
	if err != nil {
		return fmt.Errorf("running the recovery dry run: %w", err)
	}
	v.Data = &recoveryData{Result: res, Scope: h.scope()}
	return nil
}
