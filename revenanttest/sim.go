package revenanttest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"

	"github.com/revenant-go/revenant"
	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/inspect"
	"github.com/revenant-go/revenant/internal/crashpoint"
	"github.com/revenant-go/revenant/internal/store"
	"github.com/revenant-go/revenant/internal/store/backend"
	"github.com/revenant-go/revenant/journal"
	"github.com/revenant-go/revenant/recovery"
	"github.com/revenant-go/revenant/runner"
)

// A simulated crash, step by step:
//
//  1. The journal fires the crash point's hook; the hook cancels the
//     actor's context and panics, so the run stops there (a StepTx
//     transaction rolls back as it unwinds, as the database would roll
//     back a dead process's) and nothing the actor still does reaches the
//     database.
//  2. The actor's wrapper recovers the panic and declares the node dead
//     in the database, as a sweep does when a node's TTL lapses.
//  3. The node's next heartbeat finds itself dead: it cancels its runs
//     and registers again under a new id. The wrapper waits for that
//     cancellation and returns; a run canceled that way writes nothing.
//  4. The kit runs the real sweep (Client.Sweep), which restarts the
//     orphan by the actor's Restart policy, bumping its claim token, and
//     the node, alive again under its new id, claims and runs it through
//     its normal claim path.

// errCrashed ends a crashed run; nothing sees it but the runner, which
// writes nothing for a run whose node lost its identity.
var errCrashed = errors.New("revenanttest: simulated crash")

// crashSignal is the panic that unwinds a run from its crash point.
type crashSignal struct{}

// simNode is the one node of a simulated CrashAtEveryStep.
type simNode struct {
	t      TB
	o      *CrashOptions
	db     *sqlx.DB
	client *revenant.Client
	st     store.Store
	in     *inspect.Inspector
	actor  runner.Actor
	user   runner.RunFunc

	mu    sync.Mutex
	plans map[uuid.UUID]*plan
}

// plan is what the wrapper does with one episode's attempts.
type plan struct {
	schedule []Boundary
	crashes  chan crashNote

	mu       sync.Mutex
	attempt  int // attempts run so far
	mismatch string
}

// crashNote tells the kit that a crash happened.
type crashNote struct {
	at    Boundary
	token int64
	err   error // the crash could not be simulated
}

func newSimNode(t TB, o *CrashOptions, actor runner.Actor) *simNode {
	t.Helper()
	n := &simNode{t: t, o: o, db: o.DB, st: backend.For(o.DB), user: actor.Run, plans: map[uuid.UUID]*plan{}}
	in, err := inspect.New(o.DB, nil)
	if err != nil {
		t.Fatalf("revenanttest: %v", err)
	}
	n.in = in
	actor.Recovery = recovery.Restart
	actor.ExpectationRecovery = nil
	actor.Run = n.runActor
	n.actor = actor
	n.client = Client(t, o.DB, &ClientOptions{Config: &revenant.Config{Name: "revenanttest", Env: kitEnv()}, Actors: []runner.Actor{actor}})
	return n
}

func (n *simNode) planOf(id uuid.UUID) *plan {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.plans[id]
}

// runActor wraps the actor: it arms the attempt's crash point, and turns the
// crash into a dead node.
func (n *simNode) runActor(ctx context.Context, ep *episodes.Episode, j *journal.Journal) (result any, err error) {
	p := n.planOf(ep.ID)
	if p == nil {
		return n.user(ctx, ep, j)
	}
	p.mu.Lock()
	attempt := p.attempt
	p.attempt++
	p.mu.Unlock()
	if attempt >= len(p.schedule) {
		return n.runUser(ctx, ep, j, p)
	}
	target := p.schedule[attempt]
	var (
		hitMu sync.Mutex
		hit   *Boundary
	)
	crashed := func() *Boundary {
		hitMu.Lock()
		defer hitMu.Unlock()
		return hit
	}
	// The actor runs on a context of its own, canceled at the crash: a
	// killed process does nothing more, so whatever the actor still does
	// (its deferred functions as the panic unwinds, or going on after
	// recovering the panic itself) must not reach the database: the
	// journal's writes, and the actor's own with ctx, fail.
	actx, kill := context.WithCancelCause(ctx)
	defer kill(nil)
	actx = crashpoint.With(actx, func(pt crashpoint.Point, seq int, name string) {
		if int(pt) != int(target.Point) || seq != target.Step {
			return
		}
		hitMu.Lock()
		if hit != nil {
			hitMu.Unlock()
			return
		}
		hit = &Boundary{Step: seq, Point: target.Point, Name: name}
		hitMu.Unlock()
		kill(errCrashed)
		panic(crashSignal{})
	})
	defer func() {
		at := crashed()
		if at == nil {
			return // not our crash: a panic of the actor's goes on to the runner
		}
		// The crash stands even if the actor recovered the panic itself
		// and returned: the attempt is over at the boundary.
		_ = recover()
		result, err = nil, n.crash(ctx, ep, p, *at)
	}()
	return n.runUser(actx, ep, j, p)
}

func (n *simNode) runUser(ctx context.Context, ep *episodes.Episode, j *journal.Journal, p *plan) (any, error) {
	res, err := n.user(ctx, ep, j)
	if err != nil && (errors.Is(err, journal.ErrStepMismatch) || strings.Contains(err.Error(), journal.ErrStepMismatch.Error())) {
		p.mu.Lock()
		p.mismatch = err.Error()
		p.mu.Unlock()
	}
	return res, err
}

// crash declares the node dead and waits until its heartbeat cancels the
// run.
func (n *simNode) crash(ctx context.Context, ep *episodes.Episode, p *plan, at Boundary) error {
	note := crashNote{at: at, token: ep.ClaimToken}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), n.o.Timeout)
	defer cancel()
	ok, err := n.st.NodeDeclareDead(wctx, n.db, ep.OwnerNode, recovery.ReasonOwnerExpired)
	switch {
	case err != nil:
		note.err = fmt.Errorf("declaring node %s dead: %w", ep.OwnerNode, err)
	case !ok:
		note.err = fmt.Errorf("node %s was already stopped when the crash came", ep.OwnerNode)
	}
	// The kit sweeps while this attempt, a zombie now, waits for its
	// node to notice: the sweep fences it off, as it would a paused
	// process, and the node claims the restarted episode as soon as it
	// has registered again.
	p.crashes <- note
	if note.err != nil {
		return note.err
	}
	select {
	case <-ctx.Done():
	case <-wctx.Done():
		n.t.Logf("revenanttest: the node did not notice within %s that it was declared dead", n.o.Timeout)
	}
	// The runner writes nothing for a run whose node lost its identity or
	// its lease, but it does record the outcome of one that ended by the
	// actor's Timeout (or returned before the node noticed): wait until
	// the sweep has fenced this attempt's token off, so that write is
	// refused as a dead process's would never be made.
	if c := context.Cause(ctx); !errors.Is(c, runner.ErrIdentityLost) && !errors.Is(c, runner.ErrLeaseLost) {
		n.awaitFenced(wctx, ep.ID, ep.ClaimToken)
	}
	return errCrashed
}

// awaitFenced waits until episode id no longer runs under token.
func (n *simNode) awaitFenced(ctx context.Context, id uuid.UUID, token int64) {
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for {
		status, current, err := n.st.EpisodeState(ctx, n.db, id)
		if err == nil && (status != string(episodes.StatusRunning) || current != token) {
			return
		}
		select {
		case <-ctx.Done():
			// The kit reports a sweep that never took the episode over;
			// no t.Logf here: the test may have ended.
			return
		case <-tick.C:
		}
	}
}

// run runs one episode through schedule's crashes, each followed by the
// real sweep and claim, to its end.
func (n *simNode) run(ctx context.Context, schedule []Boundary, input any) (*scenarioRun, error) {
	p := &plan{schedule: schedule, crashes: make(chan crashNote, len(schedule)+1)}
	id := uuid.Must(uuid.NewV7())
	n.mu.Lock()
	n.plans[id] = p
	n.mu.Unlock()
	defer func() {
		n.mu.Lock()
		delete(n.plans, id)
		n.mu.Unlock()
	}()
	ctx, cancel := context.WithTimeout(ctx, n.o.Timeout*time.Duration(len(schedule)+1))
	defer cancel()
	if _, err := n.client.Enqueue(ctx, episodes.CreateParams{ID: id, ActorID: n.actor.ID, Input: input,
		MaxAttempts: len(schedule) + 1, Retry: &episodes.RetryPolicy{Disabled: true}}); err != nil {
		return nil, fmt.Errorf("enqueuing: %w", err)
	}
	sr := &scenarioRun{id: id}
	st := n.client.Episodes()
	for range schedule {
		note, ended, prob := awaitCrash(ctx, st, id, p.crashes)
		if prob != "" {
			sr.problems = append(sr.problems, prob)
			return sr, n.finish(ctx, sr, p)
		}
		if ended {
			break // the run finished without reaching the boundary
		}
		sr.crashed++
		if note.err != nil {
			sr.problems = append(sr.problems, fmt.Sprintf("the crash could not be simulated: %v", note.err))
			return sr, n.finish(ctx, sr, p)
		}
		steps, err := journalOf(ctx, n.in, id)
		if err != nil {
			return nil, err
		}
		sr.atCrash = append(sr.atCrash, steps)
		if prob := n.sweepRestarts(ctx, st, id, note.token); prob != "" {
			sr.problems = append(sr.problems, prob)
			return sr, n.finish(ctx, sr, p)
		}
	}
	if _, err := waitTerminal(ctx, st, id); err != nil {
		sr.problems = append(sr.problems, fmt.Sprintf("the restarted run did not finish: %v", err))
	}
	return sr, n.finish(ctx, sr, p)
}

// close stops the node: a later call of the kit on the same database must
// not find it running.
func (n *simNode) close() { stopClient(n.t, n.client) }

// finish reads the run's outcome.
func (n *simNode) finish(ctx context.Context, sr *scenarioRun, p *plan) error {
	p.mu.Lock()
	sr.mismatch = p.mismatch
	p.mu.Unlock()
	ep, err := n.client.Episodes().Get(ctx, sr.id)
	if err != nil {
		return fmt.Errorf("reading episode %s: %w", sr.id, err)
	}
	out, err := outcomeOf(ctx, n.db, ep)
	if err != nil {
		return fmt.Errorf("reading episode %s: %w", sr.id, err)
	}
	sr.outcome = out
	return nil
}

// sweepRestarts runs the real sweep until it has taken the crashed
// attempt's episode over (the node's own Sweeper may get there first), and
// says what is wrong if the sweep did not restart it.
func (n *simNode) sweepRestarts(ctx context.Context, st *episodes.Store, id uuid.UUID, token int64) string {
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for {
		if _, err := n.client.Sweep(ctx, false); err != nil && ctx.Err() == nil {
			n.t.Logf("revenanttest: a sweep failed (tried again): %v", err)
		}
		ep, err := st.Get(ctx, id)
		if err == nil && (ep.ClaimToken != token || ep.Status != episodes.StatusRunning) {
			return restartProblem(ep)
		}
		select {
		case <-ctx.Done():
			return fmt.Sprintf("no sweep took the crashed episode %s over in time (it is still running under its dead node)", id)
		case <-tick.C:
		}
	}
}

// awaitCrash waits for the run's crash, or for the episode to end without
// one (ended). A non-empty problem says the wait itself went wrong.
func awaitCrash(ctx context.Context, st *episodes.Store, id uuid.UUID, crashes <-chan crashNote) (note crashNote, ended bool, problem string) {
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for {
		select {
		case note := <-crashes:
			return note, false, ""
		case <-ctx.Done():
			return crashNote{}, false, "the run neither reached the crash nor finished in time"
		case <-tick.C:
		}
		ep, err := st.Get(ctx, id)
		if err == nil && ep.Status.Terminal() {
			select {
			case note := <-crashes:
				return note, false, ""
			default:
				return crashNote{}, true, ""
			}
		}
	}
}

// restartProblem says what is wrong with an episode a sweep took over
// after a crash; "" when it was restarted.
func restartProblem(ep *episodes.Episode) string {
	if ep.Status == episodes.StatusFailed && (ep.ErrorClass == "orphaned" || ep.ErrorClass == "max_attempts_exceeded") {
		return fmt.Sprintf("the sweep failed the crashed episode (%s: %s) instead of restarting it", ep.ErrorClass, compact(ep.ErrorDetail))
	}
	return ""
}

// journalOf reads an episode's journal with outputs.
func journalOf(ctx context.Context, in *inspect.Inspector, id uuid.UUID) ([]inspect.Step, error) {
	d, err := in.Episode(ctx, id, inspect.EpisodeOptions{Data: true})
	if err != nil {
		return nil, fmt.Errorf("reading the journal of episode %s: %w", id, err)
	}
	return d.Steps, nil
}
