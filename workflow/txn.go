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
	"github.com/lib/pq"

	"github.com/revenant-go/revenant/bus"
	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/recovery"
)

func pqArray(v []string) any { return pq.Array(v) }

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

	instDirty bool
	errDetail any
	events    []bus.Event
	mutations int
}

func (t *txn) changed() bool { return t.mutations > 0 }

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
	ep, err := t.e.store.GetTx(t.ctx, t.tx, episodeID)
	if err != nil {
		return false, err
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
	pol := t.def.step(s.ID).OnFailure
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
		if s.Kind == kindStep && s.Status == StepDone && t.def.step(s.ID).Compensate != "" {
			done = append(done, s)
		}
	}
	sort.Slice(done, func(i, j int) bool { return done[i].position > done[j].position })
	for i, s := range done {
		c := &StepState{ID: compensationPrefix + s.ID, Kind: kindCompensation, Status: StepPending, position: i}
		if _, err := t.tx.ExecContext(t.ctx, insertCompensationSQL, t.inst.ID, c.ID, i); err != nil {
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
			if st == nil || st.Compensate == "" {
				return fmt.Errorf("%w: compensation %q has no compensating actor in the definition", ErrCorruptRow, c.ID)
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

// createEpisode creates the step's episode for its next attempt. The dedupe
// key (instance, step, attempt) makes a second creation return the first.
func (t *txn) createEpisode(s *StepState, actor, expectation string, input any, maxAttempts int) error {
	attempt := s.Attempts + 1
	res, err := t.e.store.CreateTx(t.ctx, t.tx, episodes.CreateParams{
		ActorID: actor, Expectation: expectation, Input: input, MaxAttempts: maxAttempts,
		DedupeKey:          fmt.Sprintf("wf:%s:%s:%d", t.inst.ID, s.ID, attempt),
		WorkflowInstanceID: t.inst.ID, WorkflowStepID: s.ID,
	})
	if err != nil {
		return fmt.Errorf("creating episode of step %q: %w", s.ID, err)
	}
	if _, err := t.tx.ExecContext(t.ctx, notifyPendingSQL, recovery.NotifyChannel, actor); err != nil {
		return err
	}
	s.Status, s.Attempts, s.EpisodeID, s.dueInMS = StepRunning, attempt, res.Episode.ID, nil
	t.touch(s)
	t.publish(bus.Event{Type: bus.WorkflowStepStarted, WorkflowStepID: s.ID, EpisodeID: res.Episode.ID, ActorID: actor, Status: StepRunning})
	return nil
}

// flush writes the changed steps and instance, and publishes the events,
// in the instance's transaction.
func (t *txn) flush() error {
	if t.mutations == 0 {
		return nil
	}
	for _, id := range t.order {
		s := t.steps[id]
		if !s.dirty {
			continue
		}
		var ep any
		if s.EpisodeID != uuid.Nil {
			ep = s.EpisodeID
		}
		if _, err := t.tx.ExecContext(t.ctx, updateStepSQL, t.inst.ID, s.ID, s.Status, s.Attempts, ep,
			jsonArg(s.Result), s.ErrorClass, jsonArg(s.Error), s.dueInMS); err != nil {
			return fmt.Errorf("writing step %q: %w", s.ID, err)
		}
		s.dirty = false
	}
	var errDetail any
	if t.errDetail != nil {
		errDetail = string(mustJSON(t.errDetail))
	}
	if _, err := t.tx.ExecContext(t.ctx, updateInstanceSQL, t.inst.ID, t.inst.Status, errDetail, t.inst.Compensating); err != nil {
		return fmt.Errorf("writing instance %s: %w", t.inst.ID, err)
	}
	if t.e.config.Bus != nil && len(t.events) > 0 {
		if err := t.e.config.Bus.PublishTx(t.ctx, t.tx, t.events...); err != nil {
			return err
		}
	}
	return nil
}

func jsonArg(b json.RawMessage) any {
	if len(b) == 0 {
		return nil
	}
	return string(b)
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only called with maps of strings and raw JSON
	}
	return b
}
