package workflow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"

	"github.com/revenant-go/revenant/bus"
	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/internal/dbx"
	"github.com/revenant-go/revenant/internal/store"
)

// txn is one locked instance being advanced inside a transaction. Changes
// are collected and written by flush.
type txn struct {
	e     *Engine
	ctx   context.Context
	tx    *sqlx.Tx
	inst  *Instance
	def   *Definition
	steps map[string]*StepState
	order []string

	// drift says how the instance's steps differ from the registered
	// definition (a step renamed or removed between deploys); nil when they
	// match. Only checkDefinition acts on it.
	drift error

	instDirty   bool
	errDetail   any
	newEpisodes []newEpisode
	afterCommit []bus.Event // for buses that cannot write in the transaction
	events      []bus.Event
	mutations   int
}

func (t *txn) changed() bool { return t.mutations > 0 }

// definitionDrift compares the instance's step rows with the registered
// definition and says, in words an operator can act on, how they differ.
func (t *txn) definitionDrift() error {
	var diffs []string
	for _, id := range t.order {
		s := t.steps[id]
		switch s.Kind {
		case kindStep:
			if t.def.step(s.ID) == nil {
				diffs = append(diffs, fmt.Sprintf("step %q is not in the registered definition", s.ID))
			}
		case kindCompensation:
			orig := strings.TrimPrefix(s.ID, compensationPrefix)
			if st := t.def.step(orig); (st == nil || st.Compensate == "") && s.Status == StepPending {
				diffs = append(diffs, fmt.Sprintf("step %q has no compensating actor in the registered definition", orig))
			}
		}
	}
	for _, st := range t.def.Steps {
		if t.steps[st.ID] == nil {
			diffs = append(diffs, fmt.Sprintf("step %q of the registered definition was not in it when the instance started", st.ID))
		}
	}
	if len(diffs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: workflow %q instance %s: %s; deploy the definition it started with to resume it (Engine.Resume), or cancel it",
		ErrDefinitionChanged, t.inst.WorkflowID, t.inst.ID, strings.Join(diffs, "; "))
}

// checkDefinition stops an instance whose steps no longer match the
// registered definition before anything advances it: a running one is
// blocked with the reason, which is committed, and the drift is returned
// (as a keptError) for the caller to report.
func (t *txn) checkDefinition() error {
	if t.drift == nil {
		return nil
	}
	if t.inst.Status == StatusRunning {
		t.setInstance(StatusBlocked, map[string]string{"reason": "definition_changed", "message": t.drift.Error()})
		t.publish(bus.Event{Type: bus.WorkflowBlocked, Status: StatusBlocked, ErrorClass: "definition_changed"})
	}
	return &keptError{t.drift}
}

// keptError is returned by a transition whose writes must commit although
// it reports an error.
type keptError struct{ err error }

func (k *keptError) Error() string { return k.err.Error() }
func (k *keptError) Unwrap() error { return k.err }

func (t *txn) publish(ev bus.Event) {
	if ev.WorkflowInstanceID == uuid.Nil {
		ev.WorkflowInstanceID = t.inst.ID
	}
	t.events = append(t.events, ev)
}

func (t *txn) setInstance(status string, errDetail any) {
	t.inst.Status = status
	if errDetail != nil {
		t.errDetail = errDetail
	}
	t.instDirty = true
	t.mutations++
}

func (t *txn) touch(s *StepState) {
	s.dirty = true
	t.mutations++
}

// applyTerminal records the outcome of a running step's episode. It
// returns false (changing nothing) for a duplicate or stale event: the step
// is not running that episode any more, or the episode is not terminal.
func (t *txn) applyTerminal(stepID string, episodeID uuid.UUID) (bool, error) {
	s := t.steps[stepID]
	if s == nil || s.Status != StepRunning || s.EpisodeID != episodeID {
		return false, nil
	}
	// The episode's outcome was read with the instance, under its lock.
	ep := s.outcome
	if ep == nil {
		return false, fmt.Errorf("%w: step %q runs episode %s, which does not exist", ErrCorruptRow, s.ID, s.EpisodeID)
	}
	if !ep.Status.Terminal() {
		return false, nil
	}
	t.touch(s)
	if ep.Status == episodes.StatusDone {
		s.Status, s.Result, s.ErrorClass, s.Error = StepDone, ep.Result, "", nil
		if s.Kind == kindStep {
			t.publish(bus.Event{Type: bus.WorkflowStepCompleted, WorkflowStepID: s.ID, EpisodeID: ep.ID, Status: StepDone})
		}
		return true, nil
	}
	s.ErrorClass, s.Error = ep.ErrorClass, ep.ErrorDetail
	if s.Kind != kindStep || t.inst.Status != StatusRunning {
		s.Status = StepFailed
		return true, nil
	}
	st := t.def.step(s.ID)
	if st == nil { // checkDefinition runs first; never guess a policy
		return false, fmt.Errorf("%w: step %q is not in the registered definition", ErrDefinitionChanged, s.ID)
	}
	pol := st.OnFailure
	switch {
	case pol.Kind == PolicyRetry && ep.Status != episodes.StatusCanceled && s.Attempts < pol.maxAttempts() &&
		!slices.Contains(pol.SkipRetryOn, ep.ErrorClass):
		s.Status = StepRetrying
		ms := pol.delay(s.Attempts).Milliseconds()
		s.dueInMS = &ms
		t.publish(bus.Event{Type: bus.WorkflowStepFailed, WorkflowStepID: s.ID, EpisodeID: ep.ID, Status: StepRetrying, ErrorClass: ep.ErrorClass})
	case pol.Kind == PolicyPause:
		s.Status = StepPaused
		t.setInstance(StatusBlocked, nil)
		t.publish(bus.Event{Type: bus.WorkflowStepFailed, WorkflowStepID: s.ID, EpisodeID: ep.ID, Status: StepPaused, ErrorClass: ep.ErrorClass})
		t.publish(bus.Event{Type: bus.WorkflowBlocked, WorkflowStepID: s.ID, Status: StatusBlocked})
	default:
		s.Status = StepFailed
		t.publish(bus.Event{Type: bus.WorkflowStepFailed, WorkflowStepID: s.ID, EpisodeID: ep.ID, Status: StepFailed, ErrorClass: ep.ErrorClass})
		if err := t.abort(s); err != nil {
			return true, err
		}
	}
	return true, nil
}

const (
	kindStep         = "step"
	kindCompensation = "compensation"
)

// abort stops the instance's other steps and queues the compensations of
// completed steps, newest first; without any, the instance fails at once.
func (t *txn) abort(failed *StepState) error {
	detail := map[string]string{"step": failed.ID, "error_class": failed.ErrorClass}
	if err := t.stopSteps("workflow aborted: step " + failed.ID + " failed"); err != nil {
		return err
	}
	var done []*StepState
	for _, id := range t.order {
		s := t.steps[id]
		if s.Kind != kindStep || s.Status != StepDone {
			continue
		}
		if st := t.def.step(s.ID); st != nil && st.Compensate != "" {
			done = append(done, s)
		}
	}
	sort.Slice(done, func(i, j int) bool { return done[i].position > done[j].position })
	for i, s := range done {
		c := &StepState{ID: compensationPrefix + s.ID, Kind: kindCompensation, Status: StepPending, position: i}
		if err := t.e.st.WorkflowInsertCompensation(t.ctx, t.tx, t.inst.ID, c.ID, i); err != nil {
			return fmt.Errorf("queuing compensation of %q: %w", s.ID, err)
		}
		t.steps[c.ID] = c
		t.order = append(t.order, c.ID)
		t.mutations++
	}
	if len(done) > 0 {
		t.inst.Compensating = true
		t.errDetail = detail
		t.instDirty = true
		return nil
	}
	t.setInstance(StatusFailed, detail)
	t.publish(bus.Event{Type: bus.WorkflowFailed, WorkflowStepID: failed.ID, Status: StatusFailed, ErrorClass: failed.ErrorClass})
	return nil
}

// stopSteps cancels running steps' episodes and marks unfinished steps
// canceled.
func (t *txn) stopSteps(reason string) error {
	for _, id := range t.order {
		s := t.steps[id]
		if s.Kind != kindStep {
			continue
		}
		switch s.Status {
		case StepRunning:
			if _, err := t.e.store.CancelTx(t.ctx, t.tx, s.EpisodeID, reason); err != nil &&
				!isAlreadyFinished(err) {
				return fmt.Errorf("canceling episode of step %q: %w", s.ID, err)
			}
			s.Status = StepCanceled
			t.touch(s)
		case StepPending, StepRetrying, StepPaused:
			s.Status = StepCanceled
			t.touch(s)
		}
	}
	return nil
}

func isAlreadyFinished(err error) bool {
	return errors.Is(err, episodes.ErrIllegalTransition) || errors.Is(err, episodes.ErrNotFound)
}

// advance starts what can start: pending steps whose dependencies are done
// and retries that are due; runs compensations one at a time; and finishes
// the instance when nothing is left.
func (t *txn) advance() error {
	if t.inst.Status != StatusRunning {
		return nil
	}
	if t.inst.Compensating {
		return t.advanceCompensation()
	}
	results := t.results()
	allDone := true
	for _, st := range t.def.Steps {
		s := t.steps[st.ID]
		if s == nil {
			return fmt.Errorf("%w: instance %s has no row for step %q", ErrCorruptRow, t.inst.ID, st.ID)
		}
		if s.Status != StepDone {
			allDone = false
		}
		ready := false
		switch s.Status {
		case StepPending:
			ready = true
			for _, dep := range st.DependsOn {
				if t.steps[dep] == nil || t.steps[dep].Status != StepDone {
					ready = false
					break
				}
			}
		case StepRetrying:
			ready = s.due
		}
		if ready {
			if err := t.startStep(s, &st, results); err != nil {
				return err
			}
		}
	}
	if allDone {
		t.setInstance(StatusDone, nil)
		t.publish(bus.Event{Type: bus.WorkflowCompleted, Status: StatusDone})
	}
	return nil
}

func (t *txn) advanceCompensation() error {
	var comps []*StepState
	for _, id := range t.order {
		if s := t.steps[id]; s.Kind == kindCompensation {
			comps = append(comps, s)
		}
	}
	sort.Slice(comps, func(i, j int) bool { return comps[i].position < comps[j].position })
	for _, c := range comps {
		switch c.Status {
		case StepRunning:
			return nil // one at a time, in order
		case StepPending:
			orig := strings.TrimPrefix(c.ID, compensationPrefix)
			st := t.def.step(orig)
			if st == nil || st.Compensate == "" || t.steps[orig] == nil {
				return fmt.Errorf("%w: compensation %q has no compensating actor in the registered definition", ErrDefinitionChanged, c.ID)
			}
			input := map[string]json.RawMessage{"step": mustJSON(orig), "result": t.steps[orig].Result, "trigger": t.inst.Trigger}
			return t.createEpisode(c, st.Compensate, "", input, st.MaxEpisodeAttempts)
		}
	}
	t.inst.Compensating = false
	t.setInstance(StatusFailed, nil)
	t.publish(bus.Event{Type: bus.WorkflowFailed, Status: StatusFailed})
	return nil
}

func (t *txn) results() map[string]json.RawMessage {
	out := map[string]json.RawMessage{}
	for id, s := range t.steps {
		if s.Kind == kindStep && s.Status == StepDone {
			out[id] = s.Result
		}
	}
	return out
}

func (t *txn) startStep(s *StepState, st *Step, results map[string]json.RawMessage) error {
	in := StepInput{Trigger: t.inst.Trigger, Results: map[string]json.RawMessage{}}
	for _, dep := range st.DependsOn {
		in.Results[dep] = results[dep]
	}
	var input any = in
	if st.Input != nil {
		v, err := st.Input(in)
		if err != nil {
			// A step whose input cannot be built fails like any other.
			s.Status, s.ErrorClass, s.Error = StepFailed, "input", mustJSON(map[string]string{"message": err.Error()})
			t.touch(s)
			t.publish(bus.Event{Type: bus.WorkflowStepFailed, WorkflowStepID: s.ID, Status: StepFailed, ErrorClass: "input"})
			return t.abort(s)
		}
		input = v
	}
	return t.createEpisode(s, st.Actor, st.Expectation, input, st.MaxEpisodeAttempts)
}

// createEpisode queues the step's episode for its next attempt; flush
// inserts it. The dedupe key (instance, step, attempt) means a second
// creation can never make a second episode.
func (t *txn) createEpisode(s *StepState, actor, expectation string, input any, maxAttempts int) error {
	attempt := s.Attempts + 1
	enc, err := dbx.EncodeJSON(input, episodes.MaxJSONBytesDefault)
	if err != nil {
		return fmt.Errorf("%w: input of step %q: %w", dbx.ErrInvalidInput, s.ID, err)
	}
	id, err := uuid.NewV7()
	if err != nil {
		return err
	}
	if maxAttempts <= 0 {
		maxAttempts = episodes.MaxAttemptsDefault
	}
	t.newEpisodes = append(t.newEpisodes, newEpisode{id: id, actor: actor, expectation: expectation, input: enc,
		maxAttempts: maxAttempts, dedupeKey: store.WorkflowStepDedupeKey(t.inst.ID, s.ID, attempt), stepID: s.ID})
	s.Status, s.Attempts, s.EpisodeID, s.dueInMS, s.outcome = StepRunning, attempt, id, nil, nil
	t.touch(s)
	t.publish(bus.Event{Type: bus.WorkflowStepStarted, WorkflowStepID: s.ID, EpisodeID: id, ActorID: actor, Status: StepRunning})
	return nil
}

type newEpisode struct {
	id                            uuid.UUID
	actor, expectation, dedupeKey string
	stepID                        string
	input                         any
	maxAttempts                   int
}

// outboxWriter is implemented by buses whose PublishTx writes to the
// outbox table (bus.Outbox), so the engine can fold publication into its
// one flush statement.
type outboxWriter interface{ InTransaction() bool }

// flush writes the transition — changed steps, the instance, new episodes
// and their wake-ups, and (with the Postgres bus) its events — in one
// statement, in the instance's transaction.
func (t *txn) flush() error {
	if t.mutations == 0 {
		return nil
	}
	var steps []store.WorkflowStepUpdate
	for _, id := range t.order {
		s := t.steps[id]
		if !s.dirty {
			continue
		}
		steps = append(steps, store.WorkflowStepUpdate{StepID: s.ID, Status: s.Status, Attempts: s.Attempts, EpisodeID: s.EpisodeID,
			Result: s.Result, ErrorClass: s.ErrorClass, Error: s.Error, DueInMS: s.dueInMS})
		s.dirty = false
	}
	p := &store.WorkflowFlushParams{InstanceID: t.inst.ID, Steps: steps, Status: t.inst.Status, Compensating: t.inst.Compensating,
		Stack: t.e.config.Stack, Env: t.e.config.Env}
	if t.errDetail != nil {
		p.ErrorDetail = mustJSON(t.errDetail)
	}
	for _, ne := range t.newEpisodes {
		p.NewEpisodes = append(p.NewEpisodes, store.WorkflowNewEpisode{ID: ne.id, ActorID: ne.actor, Expectation: ne.expectation,
			Input: ne.input, MaxAttempts: ne.maxAttempts, DedupeKey: ne.dedupeKey, StepID: ne.stepID})
	}
	// With the outbox bus, the events are written in the same statement
	// (Postgres) or transaction (SQLite); other buses publish after commit.
	_, inOutbox := t.e.config.Bus.(outboxWriter)
	if inOutbox {
		for _, ev := range t.events {
			if ev.ID == uuid.Nil {
				ev.ID = uuid.Must(uuid.NewV7())
			}
			p.Events = append(p.Events, store.Event(ev))
		}
	}
	c, err := t.e.st.WorkflowFlush(t.ctx, t.tx, p)
	if err != nil {
		return fmt.Errorf("writing instance %s: %w", t.inst.ID, dbx.Explain(err))
	}
	if c.Steps != len(steps) || c.Instances != 1 || c.Episodes != len(t.newEpisodes) {
		return fmt.Errorf("%w: instance %s: wrote %d of %d steps, %d of 1 instance, %d of %d episodes (an episode for that attempt already exists)",
			ErrCorruptRow, t.inst.ID, c.Steps, len(steps), c.Instances, c.Episodes, len(t.newEpisodes))
	}
	t.newEpisodes = nil
	if !inOutbox {
		t.afterCommit = append(t.afterCommit, t.events...) // see Engine.withInstance
	}
	return nil
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only called with maps of strings and raw JSON
	}
	return b
}
