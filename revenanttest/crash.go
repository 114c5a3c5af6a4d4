package revenanttest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"

	"github.com/revenant-go/revenant/inspect"
	"github.com/revenant-go/revenant/runner"
)

// Point is where, around one step, a crash happens.
type Point int

const (
	// BeforeRecord crashes inside the step: its function returned (its
	// effect is done) but its journal entry is not written. A StepTx
	// step's transaction rolls back with the crash, effect included; a
	// Step's effect stays done, and the restarted run does the step again.
	BeforeRecord Point = iota + 1
	// AfterRecord crashes once the step's journal entry is committed, before
	// the run goes on: the restarted run replays the step from the journal.
	AfterRecord
)

// String names the point.
func (p Point) String() string {
	switch p {
	case BeforeRecord:
		return "BeforeRecord"
	case AfterRecord:
		return "AfterRecord"
	default:
		return fmt.Sprintf("Point(%d)", int(p))
	}
}

// Mode is how a crash is made.
type Mode int

const (
	// Simulated crashes inside the test process (see the package
	// documentation for what it does and what it cannot catch).
	Simulated Mode = iota
	// Process runs each crashed attempt in a child process (the test
	// binary run again, see Main) and SIGKILLs it at the boundary, so that
	// everything in its memory is really lost.
	Process
)

// Boundary is one place a crash happens: around step Step (the journal's
// sequence number; 0 is the first step) at Point.
type Boundary struct {
	Step  int
	Point Point
	// Name is the step's name in the uninterrupted run ("" when unknown).
	Name string
}

// String says where the crash is, as failure messages do.
func (b Boundary) String() string {
	name := ""
	if b.Name != "" {
		name = fmt.Sprintf(" (%q)", b.Name)
	}
	if b.Point == BeforeRecord {
		return fmt.Sprintf("crash inside step %d%s, after its effect and before its journal entry", b.Step, name)
	}
	return fmt.Sprintf("crash after step %d%s was recorded", b.Step, name)
}

// before orders boundaries as a run meets them.
func (b Boundary) before(o Boundary) bool {
	return b.Step < o.Step || b.Step == o.Step && b.Point < o.Point
}

// Defaults of CrashOptions.
const (
	// MaxCrashesDefault bounds the crashes of one randomized schedule.
	MaxCrashesDefault = 3
)

// CrashOptions configures CrashAtEveryStep. A nil *CrashOptions is valid.
type CrashOptions struct {
	// DB is the database to run on; create the tables your actor writes
	// in it first. Defaults to a fresh DB(t).
	DB *sqlx.DB
	// Points are the crash points tried at every step. Defaults to
	// BeforeRecord and AfterRecord.
	Points []Point
	// Effects counts the effects the actor has made so far, for example
	// with a SELECT count(*) over the table it writes, or by asking a fake
	// external service. The kit reads it before and after each run and
	// compares each crashed run's increase with the uninterrupted run's:
	// all runs share one database, so the count must only grow. Defaults
	// to none (effects are not checked).
	Effects func(ctx context.Context, db *sqlx.DB) (int, error)
	// Invariants are checked after every run, the uninterrupted one
	// included; an error is reported as a broken property, with the
	// crash that led to it. Defaults to none.
	Invariants []func(ctx context.Context, db *sqlx.DB, episodeID uuid.UUID) error
	// Schedules is how many randomized multi-crash schedules run after
	// the single crashes: each crashes one attempt at a boundary, the
	// restarted attempt at a later one, and so on, up to MaxCrashes
	// crashes. Defaults to 0 (none).
	Schedules int
	// Seed draws the schedules; the same seed gives the same schedules for
	// the same steps. Defaults to 0, which draws a seed from the clock
	// (logged, so that a failure can be run again).
	Seed uint64
	// MaxCrashes bounds one schedule's crashes. Defaults to
	// MaxCrashesDefault.
	MaxCrashes int
	// Mode is how crashes are made. Defaults to Simulated.
	Mode Mode
	// DSN opens DB again in the child processes of Process mode: the path
	// of a SQLite file, or a PostgreSQL DSN. Defaults to the one DB (the
	// function) recorded for its handle.
	DSN string
	// Equal compares a crashed run's result, and each step's output, with
	// the uninterrupted run's. Set it when they hold values that change
	// from run to run (timestamps, random ids), to compare what matters.
	// Defaults to JSON equality.
	Equal func(want, got json.RawMessage) bool
	// Timeout bounds each wait: a run to finish, a crash to be noticed, a
	// sweep to restart the episode. Defaults to TimeoutDefault.
	Timeout time.Duration
}

func (o *CrashOptions) withDefaults(t TB) *CrashOptions {
	out := CrashOptions{}
	if o != nil {
		out = *o
	}
	if out.DB == nil {
		out.DB = DB(t)
	}
	if len(out.Points) == 0 {
		out.Points = []Point{BeforeRecord, AfterRecord}
	}
	if out.MaxCrashes == 0 {
		out.MaxCrashes = MaxCrashesDefault
	}
	if out.Seed == 0 && out.Schedules > 0 {
		out.Seed = uint64(time.Now().UnixNano())
	}
	if out.Equal == nil {
		out.Equal = jsonEqual
	}
	if out.Timeout == 0 {
		out.Timeout = TimeoutDefault
	}
	return &out
}

func (o *CrashOptions) validate(actor *runner.Actor) error {
	if actor.ID == "" || actor.Run == nil {
		return errors.New("the actor needs an ID and a Run function")
	}
	for _, p := range o.Points {
		if p != BeforeRecord && p != AfterRecord {
			return fmt.Errorf("CrashOptions.Points holds %s; use BeforeRecord, AfterRecord or both", p)
		}
	}
	if o.Schedules < 0 || o.MaxCrashes < 1 {
		return fmt.Errorf("CrashOptions.Schedules is %d and MaxCrashes %d; use Schedules >= 0 and MaxCrashes >= 1 (0 means the default, %d)",
			o.Schedules, o.MaxCrashes, MaxCrashesDefault)
	}
	if o.Timeout < 0 {
		return fmt.Errorf("CrashOptions.Timeout is %s; use a positive duration or 0 for the default (%s)", o.Timeout, TimeoutDefault)
	}
	if o.Mode != Simulated && o.Mode != Process {
		return fmt.Errorf("CrashOptions.Mode is %d; use Simulated or Process", o.Mode)
	}
	return nil
}

// CrashReport is what CrashAtEveryStep found.
type CrashReport struct {
	// Reference is the uninterrupted run.
	Reference *RunResult
	// ReferenceEffects is how much the effect counter rose during it.
	ReferenceEffects int
	// Scenarios are the crashed runs, single crashes first.
	Scenarios []Scenario
	// Seed drew the randomized schedules (0 when none ran).
	Seed uint64
	// Problems found in the uninterrupted run itself (its invariants).
	Problems []string
}

// Failed reports whether any run broke a property.
func (r *CrashReport) Failed() bool {
	if len(r.Problems) > 0 {
		return true
	}
	for _, s := range r.Scenarios {
		if !s.Passed() {
			return true
		}
	}
	return false
}

// AllProblems lists every broken property, each with its crash.
func (r *CrashReport) AllProblems() []string {
	out := slices.Clone(r.Problems)
	for _, s := range r.Scenarios {
		out = append(out, s.Problems...)
	}
	return out
}

// Scenario is one crashed run and its outcome.
type Scenario struct {
	// Crashes are the planned crashes, one per attempt, in order.
	Crashes []Boundary
	// Crashed counts those that happened (a run that asks for other steps
	// than the uninterrupted one may never reach a planned boundary).
	Crashed int
	// EpisodeID is the run's episode.
	EpisodeID uuid.UUID
	// Outcome is how the episode ended, with its journal.
	Outcome *RunResult
	// Effects is how much the effect counter rose during the run.
	Effects int
	// Problems are the properties the run broke, in words; empty when it
	// passed.
	Problems []string
}

// Passed reports whether the run broke no property.
func (s *Scenario) Passed() bool { return len(s.Problems) == 0 }

// Name describes the scenario's crashes.
func (s *Scenario) Name() string {
	if len(s.Crashes) == 1 {
		return s.Crashes[0].String()
	}
	out := ""
	for i, b := range s.Crashes {
		if i > 0 {
			out += ", then "
		}
		out += b.String()
	}
	return out
}

// crasher runs one episode with a schedule of crashes.
type crasher interface {
	run(ctx context.Context, schedule []Boundary, input any) (*scenarioRun, error)
	close()
}

// scenarioRun is what a crasher saw of one episode.
type scenarioRun struct {
	id uuid.UUID
	// crashed counts the crashes that happened; atCrash[i] is the journal
	// as it was when crash i happened.
	crashed int
	atCrash [][]inspect.Step
	// mismatch is the ErrStepMismatch message the actor returned, if any.
	mismatch string
	outcome  *RunResult
	// problems are what went wrong with the crash and recovery themselves
	// (a sweep that failed the episode, a run that never finished).
	problems []string
}

// CrashAtEveryStep proves actor crash-safe, or shows where it is not. It
// runs the actor once on input without a crash to learn its steps, then,
// for every step and every point of opts.Points, runs a fresh episode with
// the same input that crashes there, is restarted by the real sweep,
// claimed again and finishes. Each crashed run must end as the
// uninterrupted one did:
//
//   - the same result (or the same failure);
//   - the same effects: opts.Effects rises by as much;
//   - the same steps, with the same names in the same order (a replay that
//     asks for another step fails with journal.ErrStepMismatch, reported
//     with both names) and the same outputs;
//   - no recorded output changed by the restart;
//   - opts.Invariants hold.
//
// Every broken property is reported with t.Errorf, naming the crash and
// what to change; the report lists every run. The actor is registered with
// Recovery: recovery.Restart whatever it states, and its episodes get
// exactly one attempt per planned crash plus one, with error retries off,
// so that an error ends the run at once and is compared as the outcome.
func CrashAtEveryStep(t TB, actor runner.Actor, input any, opts *CrashOptions) *CrashReport {
	t.Helper()
	o := opts.withDefaults(t)
	if err := o.validate(&actor); err != nil {
		t.Fatalf("revenanttest: CrashAtEveryStep: %v", err)
	}
	ctx := context.Background()
	var c crasher
	if o.Mode == Process {
		c = newProcessCrasher(t, o, actor)
	} else {
		c = newSimNode(t, o, actor)
	}
	defer c.close()
	rep := &CrashReport{}
	ref, refEffects, err := runMeasured(ctx, c, o, nil, input)
	if err != nil {
		t.Fatalf("revenanttest: CrashAtEveryStep: the uninterrupted run of %q: %v", actor.ID, err)
	}
	rep.Reference, rep.ReferenceEffects = ref.outcome, refEffects
	for _, p := range ref.problems {
		rep.Problems = append(rep.Problems, "the uninterrupted run: "+p)
	}
	rep.Problems = append(rep.Problems, checkInvariants(ctx, o, "the uninterrupted run", ref.id)...)
	for _, p := range rep.Problems {
		t.Errorf("%s", p)
	}
	bounds := boundaries(ref.outcome, o.Points)
	if len(bounds) == 0 {
		t.Logf("revenanttest: actor %q recorded no step in its uninterrupted run: there is no boundary to crash at", actor.ID)
		return rep
	}
	var schedules [][]Boundary
	for _, b := range bounds {
		schedules = append(schedules, []Boundary{b})
	}
	if o.Schedules > 0 {
		rep.Seed = o.Seed
		t.Logf("revenanttest: %d randomized schedules with CrashOptions.Seed %d", o.Schedules, o.Seed)
		schedules = append(schedules, randomSchedules(bounds, o.Seed, o.Schedules, o.MaxCrashes)...)
	}
	for _, sch := range schedules {
		sc := Scenario{Crashes: sch}
		run, effects, err := runMeasured(ctx, c, o, sch, input)
		if err != nil {
			t.Fatalf("revenanttest: CrashAtEveryStep: %s: %v", sc.Name(), err)
		}
		sc.EpisodeID, sc.Outcome, sc.Effects, sc.Crashed = run.id, run.outcome, effects, run.crashed
		sc.Problems = compareRun(o, rep, &sc, run)
		sc.Problems = append(sc.Problems, checkInvariants(ctx, o, sc.Name(), run.id)...)
		for _, p := range sc.Problems {
			t.Errorf("%s", p)
		}
		rep.Scenarios = append(rep.Scenarios, sc)
	}
	return rep
}

// runMeasured runs one episode and measures the effects it made.
func runMeasured(ctx context.Context, c crasher, o *CrashOptions, schedule []Boundary, input any) (*scenarioRun, int, error) {
	before, err := countEffects(ctx, o)
	if err != nil {
		return nil, 0, err
	}
	run, err := c.run(ctx, schedule, input)
	if err != nil {
		return nil, 0, err
	}
	after, err := countEffects(ctx, o)
	if err != nil {
		return nil, 0, err
	}
	return run, after - before, nil
}

func countEffects(ctx context.Context, o *CrashOptions) (int, error) {
	if o.Effects == nil {
		return 0, nil
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	n, err := o.Effects(ctx, o.DB)
	if err != nil {
		return 0, fmt.Errorf("CrashOptions.Effects failed: %w", err)
	}
	return n, nil
}

func checkInvariants(ctx context.Context, o *CrashOptions, what string, id uuid.UUID) []string {
	var out []string
	for i, inv := range o.Invariants {
		ictx, cancel := context.WithTimeout(ctx, o.Timeout)
		err := inv(ictx, o.DB, id)
		cancel()
		if err != nil {
			out = append(out, fmt.Sprintf("%s: invariant %d does not hold: %v", what, i, err))
		}
	}
	return out
}

// boundaries lists every place to crash, in the order a run meets them:
// each completed step of the uninterrupted run, at each point. A step that
// failed permanently is recorded without an effect to crash around.
func boundaries(ref *RunResult, points []Point) []Boundary {
	var out []Boundary
	for _, s := range ref.Steps {
		if s.Status != "done" {
			continue
		}
		for _, p := range []Point{BeforeRecord, AfterRecord} {
			if slices.Contains(points, p) {
				out = append(out, Boundary{Step: s.Seq, Point: p, Name: s.Name})
			}
		}
	}
	return out
}

// randomSchedules draws n schedules of 2..maxCrashes boundaries each, in
// the order a run meets them (each crash hits the attempt after the one
// before it).
func randomSchedules(bounds []Boundary, seed uint64, n, maxCrashes int) [][]Boundary {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)) //nolint:gosec // G404: a replayable test schedule, not a secret
	hi := min(maxCrashes, len(bounds))
	out := make([][]Boundary, 0, n)
	for range n {
		k := hi
		if hi > 2 {
			k = 2 + rng.IntN(hi-1)
		}
		picked := rng.Perm(len(bounds))[:k]
		slices.Sort(picked)
		sch := make([]Boundary, k)
		for i, p := range picked {
			sch[i] = bounds[p]
		}
		out = append(out, sch)
	}
	return out
}
