package workflow

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/internal/dbx"
)

// Errors.
var (
	// ErrUnknownWorkflow: no definition is registered under that id.
	ErrUnknownWorkflow = errors.New("revenant: unknown workflow")
	// ErrDuplicateInFlight: an instance for the same workflow and subject
	// is still running or blocked (on any node).
	ErrDuplicateInFlight = errors.New("revenant: workflow instance for this subject already in flight")
	// ErrInvalidDefinition: a definition failed validation; the message
	// names the offending step.
	ErrInvalidDefinition = errors.New("revenant: invalid workflow definition")
	// ErrNotFound and ErrIllegalTransition as in package revenant.
	ErrNotFound          = dbx.ErrNotFound
	ErrIllegalTransition = dbx.ErrIllegalTransition
	// ErrCorruptRow (as in package revenant): a stored instance or step
	// holds a value this version cannot read. It is skipped and reported,
	// never guessed at.
	ErrCorruptRow = dbx.ErrCorruptRow
	// ErrDefinitionChanged: an instance's steps no longer match its
	// registered definition (a step was renamed, removed or added between
	// deploys). The instance is blocked with the reason, never advanced by
	// guesswork; deploy the old definition and Resume it, or Cancel it.
	ErrDefinitionChanged = errors.New("revenant: workflow definition changed under an instance in flight")
)

// PolicyKind is what happens when a step's episode fails.
type PolicyKind int

const (
	// PolicyAbort fails the instance: other running steps are canceled and
	// completed steps' compensations run, in reverse order.
	PolicyAbort PolicyKind = iota
	// PolicyRetry runs the step again after a durable backoff, up to
	// MaxAttempts, unless the error class is in SkipRetryOn.
	PolicyRetry
	// PolicyPause blocks the instance until Resume.
	PolicyPause
)

// String is "abort", "retry" or "pause".
func (k PolicyKind) String() string {
	switch k {
	case PolicyAbort:
		return "abort"
	case PolicyRetry:
		return "retry"
	case PolicyPause:
		return "pause"
	}
	return fmt.Sprintf("PolicyKind(%d)", int(k))
}

// Retry defaults.
const (
	RetryMaxAttemptsDefault = 3
	RetryBackoffDefault     = time.Second
	RetryMaxBackoffDefault  = time.Minute
)

// FailurePolicy says what a step's failure does. The zero value aborts.
type FailurePolicy struct {
	Kind PolicyKind
	// MaxAttempts counts every run of the step, the first included.
	// Defaults to RetryMaxAttemptsDefault.
	MaxAttempts int
	// Backoff is the wait before the first retry; it doubles each time up
	// to MaxBackoff, with ±20% jitter (the episodes' backoff function).
	// Default to RetryBackoffDefault and RetryMaxBackoffDefault.
	Backoff, MaxBackoff time.Duration
	// SkipRetryOn lists error classes that are not retried (the step fails
	// and the instance aborts).
	SkipRetryOn []string
}

// Abort is the default policy.
func Abort() FailurePolicy { return FailurePolicy{Kind: PolicyAbort} }

// Retry retries up to maxAttempts runs in all, waiting backoff, then twice
// as long each time; error classes in skip are not retried.
func Retry(maxAttempts int, backoff time.Duration, skip ...string) FailurePolicy {
	return FailurePolicy{Kind: PolicyRetry, MaxAttempts: maxAttempts, Backoff: backoff, SkipRetryOn: skip}
}

// Pause blocks the instance on failure; Resume runs the step again.
func Pause() FailurePolicy { return FailurePolicy{Kind: PolicyPause} }

// delay is the wait after failed run number attempt: the same function as
// an episode's retry backoff (episodes.RetryPolicy), so that a step and an
// episode with the same settings wait alike, jitter included.
func (p FailurePolicy) delay(attempt int) time.Duration {
	b, maxB := p.Backoff, p.MaxBackoff
	if b == 0 {
		b = RetryBackoffDefault
	}
	if maxB == 0 {
		maxB = RetryMaxBackoffDefault
	}
	return (&episodes.RetryPolicy{MinBackoff: b, MaxBackoff: max(b, maxB)}).Delay(max(attempt, 1))
}

func (p FailurePolicy) maxAttempts() int {
	if p.MaxAttempts <= 0 {
		return RetryMaxAttemptsDefault
	}
	return p.MaxAttempts
}

// StepInput is what a step's Input function builds its episode input from.
type StepInput struct {
	Trigger json.RawMessage            `json:"trigger"`
	Results map[string]json.RawMessage `json:"results"`
}

// Step is one node of the DAG; it runs as one episode of Actor.
type Step struct {
	// ID is unique within the definition. Required.
	ID string
	// Actor runs the step's episode. Required.
	Actor string
	// Expectation is passed to the episode.
	Expectation string
	// DependsOn lists steps that must be done first.
	DependsOn []string
	// Input builds the episode's input. Defaults to the StepInput itself.
	Input func(in StepInput) (any, error)
	// OnFailure defaults to Abort().
	OnFailure FailurePolicy
	// Compensate, when set, names the actor whose episode undoes this
	// step if the instance aborts after the step completed. It receives
	// {"step": id, "result": …, "trigger": …}.
	Compensate string
	// MaxEpisodeAttempts bounds crash recoveries of each of the step's
	// episodes. Defaults to the episodes package default.
	MaxEpisodeAttempts int
}

// Definition is a workflow: a DAG of steps.
type Definition struct {
	ID    string
	Steps []Step
}

// Validate checks ids, dependencies and acyclicity; errors name the step.
func (d *Definition) Validate() error {
	if err := dbx.CheckName("Definition.ID", d.ID, true); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidDefinition, err)
	}
	if len(d.Steps) == 0 {
		return fmt.Errorf("%w: workflow %q has no steps", ErrInvalidDefinition, d.ID)
	}
	byID := map[string]*Step{}
	for i := range d.Steps {
		s := &d.Steps[i]
		switch {
		case s.ID == "":
			return fmt.Errorf("%w: workflow %q: step %d has no ID", ErrInvalidDefinition, d.ID, i)
		case strings.HasPrefix(s.ID, compensationPrefix):
			return fmt.Errorf("%w: workflow %q: step %q: ids starting with %q are reserved", ErrInvalidDefinition, d.ID, s.ID, compensationPrefix)
		case s.Actor == "":
			return fmt.Errorf("%w: workflow %q: step %q has no Actor", ErrInvalidDefinition, d.ID, s.ID)
		case byID[s.ID] != nil:
			return fmt.Errorf("%w: workflow %q: step id %q is used twice", ErrInvalidDefinition, d.ID, s.ID)
		case s.OnFailure.Kind < PolicyAbort || s.OnFailure.Kind > PolicyPause:
			return fmt.Errorf("%w: workflow %q: step %q has an unknown failure policy %d", ErrInvalidDefinition, d.ID, s.ID, s.OnFailure.Kind)
		case s.OnFailure.MaxAttempts < 0 || s.OnFailure.Backoff < 0 || s.OnFailure.MaxBackoff < 0:
			return fmt.Errorf("%w: workflow %q: step %q: negative retry settings", ErrInvalidDefinition, d.ID, s.ID)
		}
		for _, f := range []struct{ name, value string }{
			{"ID", s.ID}, {"Actor", s.Actor}, {"Expectation", s.Expectation}, {"Compensate", s.Compensate},
		} {
			// Leave room for the compensation prefix in stored step ids.
			if err := dbx.CheckText(fmt.Sprintf("workflow %q step %q: %s", d.ID, s.ID, f.name), f.value, dbx.MaxNameBytes-len(compensationPrefix)); err != nil {
				return fmt.Errorf("%w: %w", ErrInvalidDefinition, err)
			}
		}
		if s.MaxEpisodeAttempts < 0 || s.MaxEpisodeAttempts > dbx.MaxMaxAttempts || s.OnFailure.MaxAttempts > dbx.MaxMaxAttempts {
			return fmt.Errorf("%w: workflow %q: step %q: MaxEpisodeAttempts and OnFailure.MaxAttempts must be 0..%d", ErrInvalidDefinition, d.ID, s.ID, dbx.MaxMaxAttempts)
		}
		byID[s.ID] = s
	}
	for _, s := range d.Steps {
		for _, dep := range s.DependsOn {
			if byID[dep] == nil {
				return fmt.Errorf("%w: workflow %q: step %q depends on unknown step %q", ErrInvalidDefinition, d.ID, s.ID, dep)
			}
			if dep == s.ID {
				return fmt.Errorf("%w: workflow %q: step %q depends on itself", ErrInvalidDefinition, d.ID, s.ID)
			}
		}
	}
	// Depth-first search for a cycle; report a step on it.
	const (
		unvisited = iota
		visiting
		visited
	)
	state := map[string]int{}
	var visit func(id string) string
	visit = func(id string) string {
		state[id] = visiting
		deps := append([]string(nil), byID[id].DependsOn...)
		sort.Strings(deps)
		for _, dep := range deps {
			switch state[dep] {
			case visiting:
				return dep
			case unvisited:
				if c := visit(dep); c != "" {
					return c
				}
			}
		}
		state[id] = visited
		return ""
	}
	for _, s := range d.Steps {
		if state[s.ID] == unvisited {
			if c := visit(s.ID); c != "" {
				return fmt.Errorf("%w: workflow %q: dependency cycle through step %q", ErrInvalidDefinition, d.ID, c)
			}
		}
	}
	return nil
}

func (d *Definition) step(id string) *Step {
	for i := range d.Steps {
		if d.Steps[i].ID == id {
			return &d.Steps[i]
		}
	}
	return nil
}

const compensationPrefix = "compensate:"
