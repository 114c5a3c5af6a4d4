package revenanttest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"

	"github.com/revenant-go/revenant"
	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/recovery"
	"github.com/revenant-go/revenant/runner"
	"github.com/revenant-go/revenant/workflow"
)

// TransitionOptions configures CrashAtEveryTransition. A nil
// *TransitionOptions is valid.
type TransitionOptions struct {
	// DB is the database to run on. Defaults to a fresh DB(t).
	DB *sqlx.DB
	// Effects counts the effects the steps have made so far; each crashed
	// run's increase must equal the uninterrupted run's (see
	// CrashOptions.Effects). Defaults to none.
	Effects func(ctx context.Context, db *sqlx.DB) (int, error)
	// Invariants are checked after every run, with the instance's id.
	// Defaults to none.
	Invariants []func(ctx context.Context, db *sqlx.DB, instanceID uuid.UUID) error
	// Equal compares step results with the uninterrupted run's. Defaults
	// to JSON equality.
	Equal func(want, got json.RawMessage) bool
	// Timeout bounds each wait. Defaults to TimeoutDefault.
	Timeout time.Duration
}

func (o *TransitionOptions) withDefaults(t TB) *TransitionOptions {
	out := TransitionOptions{}
	if o != nil {
		out = *o
	}
	if out.DB == nil {
		out.DB = DB(t)
	}
	if out.Equal == nil {
		out.Equal = jsonEqual
	}
	if out.Timeout <= 0 {
		out.Timeout = TimeoutDefault
	}
	return &out
}

// TransitionReport is what CrashAtEveryTransition found.
type TransitionReport struct {
	// Reference is the uninterrupted run's instance, with its steps.
	Reference *workflow.Instance
	// ReferenceEffects is how much the effect counter rose during it.
	ReferenceEffects int
	// Transitions are the step outcomes the engine applied in the
	// uninterrupted run, in order ("step charge completed").
	Transitions []string
	// Scenarios are the crashed runs.
	Scenarios []TransitionScenario
	// Problems found in the uninterrupted run itself (its invariants).
	Problems []string
}

// Failed reports whether any run broke a property.
func (r *TransitionReport) Failed() bool {
	if len(r.Problems) > 0 {
		return true
	}
	for _, s := range r.Scenarios {
		if len(s.Problems) > 0 {
			return true
		}
	}
	return false
}

// TransitionScenario is one run whose engine crashed.
type TransitionScenario struct {
	// After is how many step outcomes the engine applied before the crash
	// (0: right after the instance started).
	After int
	// Name says where the crash was.
	Name string
	// InstanceID is the run's instance; Outcome how it ended.
	InstanceID uuid.UUID
	Outcome    *workflow.Instance
	// Effects is how much the effect counter rose during the run.
	Effects int
	// Problems are the properties the run broke; empty when it passed.
	Problems []string
}

// CrashAtEveryTransition proves a workflow's instances survive a crash of
// the node that advances them. It runs an instance of def with trigger
// once without a crash, counting the step outcomes the engine applies (its
// transitions). Then, for every transition k (and right after the start),
// it runs a fresh instance on a node that crashes once k transitions are
// applied: its engine hears nothing more, its node is declared dead, the
// real sweep restarts the episodes it ran, and the node is gone. A new
// node (a revenant.Client, as in production) starts on the same database:
// its startup sweep and workflow reconciliation must pick the instance up
// and finish it. Each crashed instance must end as the uninterrupted one:
// the same status, every step in the same state with the same result, the
// same number of episodes per step (each step's episode created once), the
// same effects (opts.Effects) and opts.Invariants holding.
//
// actors are the step (and compensation) actors, registered with Recovery:
// recovery.Restart.
func CrashAtEveryTransition(t TB, def workflow.Definition, actors []runner.Actor, trigger any, opts *TransitionOptions) *TransitionReport {
	t.Helper()
	o := opts.withDefaults(t)
	if err := def.Validate(); err != nil {
		t.Fatalf("revenanttest: CrashAtEveryTransition: %v", err)
	}
	restart := make([]runner.Actor, len(actors))
	for i, a := range actors {
		a.Recovery, a.ExpectationRecovery = recovery.Restart, nil
		restart[i] = a
	}
	w := &wfKit{t: t, o: o, def: def, actors: restart, env: kitEnv()}
	ctx := context.Background()
	rep := &TransitionReport{}
	ref, err := w.run(ctx, -1, trigger)
	if err != nil {
		t.Fatalf("revenanttest: CrashAtEveryTransition: the uninterrupted run of %q: %v", def.ID, err)
	}
	rep.Reference, rep.ReferenceEffects, rep.Transitions = ref.outcome, ref.effects, ref.transitions
	rep.Problems = append(rep.Problems, ref.problems...)
	rep.Problems = append(rep.Problems, w.invariants(ctx, "the uninterrupted run", ref.id)...)
	for _, p := range rep.Problems {
		t.Errorf("%s", p)
	}
	for k := range len(ref.transitions) {
		name := "crash right after the instance started"
		if k > 0 {
			name = fmt.Sprintf("crash after transition %d (%s)", k, ref.transitions[k-1])
		}
		run, err := w.run(ctx, k, trigger)
		if err != nil {
			t.Fatalf("revenanttest: CrashAtEveryTransition: %s: %v", name, err)
		}
		sc := TransitionScenario{After: k, Name: name, InstanceID: run.id, Outcome: run.outcome, Effects: run.effects}
		for _, p := range run.problems {
			sc.Problems = append(sc.Problems, name+": "+p)
		}
		if !run.crashed {
			sc.Problems = append(sc.Problems, name+": the engine never applied that many transitions: the instance took another path than the uninterrupted one")
		}
		sc.Problems = append(sc.Problems, compareInstances(o, name, ref, run)...)
		sc.Problems = append(sc.Problems, w.invariants(ctx, name, run.id)...)
		for _, p := range sc.Problems {
			t.Errorf("%s", p)
		}
		rep.Scenarios = append(rep.Scenarios, sc)
	}
	return rep
}

// wfKit runs instances for CrashAtEveryTransition.
type wfKit struct {
	t      TB
	o      *TransitionOptions
	def    workflow.Definition
	actors []runner.Actor
	env    string
}

// wfRun is one instance's run.
type wfRun struct {
	id          uuid.UUID
	transitions []string
	crashed     bool
	outcome     *workflow.Instance
	episodes    map[string]int // per step (and compensation) id
	effects     int
	problems    []string
}

// run runs one instance on a crashing node (crashAfter transitions; -1
// never), then, after a crash, finishes it on a new node.
func (w *wfKit) run(ctx context.Context, crashAfter int, trigger any) (*wfRun, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*w.o.Timeout)
	defer cancel()
	before, err := w.effects(ctx)
	if err != nil {
		return nil, err
	}
	a, err := startWFNode(ctx, w, crashAfter)
	if err != nil {
		return nil, err
	}
	id, err := a.engine.StartInstance(ctx, w.def.ID, trigger, nil)
	if err != nil {
		a.stop()
		return nil, fmt.Errorf("starting an instance: %w", err)
	}
	a.setInstance(id)
	r := &wfRun{id: id}
	if crashAfter == 0 {
		a.die()
	}
	crashed, prob := a.awaitCrashOrEnd(ctx, id)
	if prob != "" {
		r.problems = append(r.problems, prob)
	}
	if !crashed {
		a.stop() // waits for the bus's deliveries: the last transition is counted
		r.transitions = a.applied()
	} else {
		r.transitions = a.applied()
		r.crashed = true
		if prob := a.crash(ctx); prob != "" {
			r.problems = append(r.problems, prob)
		}
		b := Client(w.t, w.o.DB, &ClientOptions{Config: &revenant.Config{Name: "revenanttest-after-crash", Env: w.env},
			Actors: w.actors, Workflows: []workflow.Definition{w.def}})
		prob := awaitInstanceEnd(ctx, b.Workflows(), id)
		stopClient(w.t, b)
		if prob != "" {
			r.problems = append(r.problems, prob)
		}
	}
	if r.outcome, err = a.engine.Get(ctx, id); err != nil {
		return nil, fmt.Errorf("reading instance %s: %w", id, err)
	}
	if r.episodes, err = episodesPerStep(ctx, w.o.DB, id); err != nil {
		return nil, err
	}
	after, err := w.effects(ctx)
	if err != nil {
		return nil, err
	}
	r.effects = after - before
	return r, nil
}

func (w *wfKit) effects(ctx context.Context) (int, error) {
	if w.o.Effects == nil {
		return 0, nil
	}
	n, err := w.o.Effects(ctx, w.o.DB)
	if err != nil {
		return 0, fmt.Errorf("TransitionOptions.Effects failed: %w", err)
	}
	return n, nil
}

func (w *wfKit) invariants(ctx context.Context, what string, id uuid.UUID) []string {
	var out []string
	for i, inv := range w.o.Invariants {
		if err := inv(ctx, w.o.DB, id); err != nil {
			out = append(out, fmt.Sprintf("%s: invariant %d does not hold: %v", what, i, err))
		}
	}
	return out
}

// awaitInstanceEnd waits until the instance is no longer running.
func awaitInstanceEnd(ctx context.Context, eng *workflow.Engine, id uuid.UUID) string {
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for {
		in, err := eng.Get(ctx, id)
		if err == nil && in.Status != workflow.StatusRunning {
			return ""
		}
		select {
		case <-ctx.Done():
			if in != nil {
				return fmt.Sprintf("the instance did not finish in time: it is %s, its steps %s", in.Status, describeSteps(in))
			}
			return fmt.Sprintf("the instance did not finish in time: %v", err)
		case <-tick.C:
		}
	}
}

func describeSteps(in *workflow.Instance) string {
	parts := make([]string, len(in.Steps))
	for i, s := range in.Steps {
		parts[i] = s.ID + " " + s.Status
	}
	return strings.Join(parts, ", ")
}

// episodesPerStep counts the episodes created for each step of an instance.
func episodesPerStep(ctx context.Context, db *sqlx.DB, id uuid.UUID) (map[string]int, error) {
	eps, err := listEpisodes(ctx, db, episodes.ListParams{WorkflowInstanceID: id})
	if err != nil {
		return nil, fmt.Errorf("listing the episodes of instance %s: %w", id, err)
	}
	out := map[string]int{}
	for _, ep := range eps {
		out[ep.WorkflowStepID]++
	}
	return out, nil
}

// compareInstances lists how a crashed run's instance differs from the
// uninterrupted run's.
func compareInstances(o *TransitionOptions, name string, ref, got *wfRun) []string {
	var out []string
	add := func(format string, args ...any) { out = append(out, name+": "+fmt.Sprintf(format, args...)) }
	if o.Effects != nil && got.effects != ref.effects {
		add("the effect counter rose by %d, the uninterrupted run's by %d: a step's effect ran again when its episode was restarted, "+
			"or a step ran twice; make each step's actor crash-safe (check it with CrashAtEveryStep)", got.effects, ref.effects)
	}
	r, g := ref.outcome, got.outcome
	if r.Status != g.Status {
		add("the instance ended %s, the uninterrupted run's %s (steps: %s; uninterrupted: %s)", g.Status, r.Status, describeSteps(g), describeSteps(r))
		return out
	}
	for _, rs := range r.Steps {
		gs := g.Step(rs.ID)
		if gs == nil {
			add("step %q is missing", rs.ID)
			continue
		}
		switch {
		case gs.Status != rs.Status:
			add("step %q is %s, in the uninterrupted run %s", rs.ID, gs.Status, rs.Status)
		case gs.Attempts != rs.Attempts:
			add("step %q ran %d times, in the uninterrupted run %d", rs.ID, gs.Attempts, rs.Attempts)
		case rs.Status == workflow.StepDone && !o.Equal(rs.Result, gs.Result):
			add("step %q's result is %s, in the uninterrupted run %s: its actor's result depends on something a crash loses; "+
				"check it with CrashAtEveryStep", rs.ID, compact(gs.Result), compact(rs.Result))
		}
	}
	ids := make([]string, 0, len(ref.episodes))
	for id := range ref.episodes {
		ids = append(ids, id)
	}
	for id := range got.episodes {
		if _, ok := ref.episodes[id]; !ok {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	for _, id := range ids {
		if got.episodes[id] != ref.episodes[id] {
			add("step %q has %d episodes, the uninterrupted run %d: each step's episode must be created once", id, got.episodes[id], ref.episodes[id])
		}
	}
	return out
}

var errNotStarted = errors.New("the crashing node did not start")
