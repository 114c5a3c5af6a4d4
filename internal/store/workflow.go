package store

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// PendingChannel is the NOTIFY channel on which pending work is announced
// (payload: actor id). Package recovery re-exports it as NotifyChannel.
const PendingChannel = "revenant_pending"

// WorkflowInstance is one revenant_workflow_instances row.
type WorkflowInstance struct {
	ID           uuid.UUID
	WorkflowID   string
	Status       string
	Subject      string
	Trigger      json.RawMessage
	Error        json.RawMessage
	Compensating bool
	Version      int64
	CreatedAt    time.Time
	FinishedAt   *time.Time
	Stack, Env   string
}

// WorkflowStep is one revenant_workflow_steps row, with the outcome of its
// episode while the step is running.
type WorkflowStep struct {
	ID         string
	Kind       string
	Position   int
	Status     string
	Attempts   int
	EpisodeID  uuid.UUID
	Result     json.RawMessage
	ErrorClass string
	Error      json.RawMessage
	DueAt      *time.Time
	// Due: DueAt has passed, by the database clock.
	Due bool
	// The running step's episode: its status ("" when the step is not
	// running), result, error class and detail.
	EpisodeStatus      string
	EpisodeResult      json.RawMessage
	EpisodeErrorClass  string
	EpisodeErrorDetail json.RawMessage
}

// WorkflowLoaded is an instance with its steps (steps first, then
// compensations, each in position order).
type WorkflowLoaded struct {
	Instance WorkflowInstance
	Steps    []WorkflowStep
}

// WorkflowInsertParams is a new instance and its steps' ids, in order.
type WorkflowInsertParams struct {
	ID         uuid.UUID
	WorkflowID string
	Subject    string
	// Trigger is encoded JSON text or nil.
	Trigger    any
	Stack, Env string
	StepIDs    []string
}

// WorkflowStepUpdate is a step's new state. Result and Error are JSON or
// empty; DueInMS, when set, is the retry's delay from the database clock.
type WorkflowStepUpdate struct {
	StepID     string
	Status     string
	Attempts   int
	EpisodeID  uuid.UUID
	Result     json.RawMessage
	ErrorClass string
	Error      json.RawMessage
	DueInMS    *int64
}

// WorkflowNewEpisode is a step episode to create (deduplicated by key).
type WorkflowNewEpisode struct {
	ID          uuid.UUID
	ActorID     string
	Expectation string
	// Input is encoded JSON text or nil.
	Input       any
	MaxAttempts int
	DedupeKey   string
	StepID      string
}

// WorkflowFlushParams is one transition of an instance, written in the
// caller's transaction (which holds the instance): its changed steps, the
// instance row, new episodes with a wake-up for their actors, and Events
// for the outbox (nil when the bus is not the outbox).
type WorkflowFlushParams struct {
	InstanceID   uuid.UUID
	Steps        []WorkflowStepUpdate
	Status       string
	ErrorDetail  json.RawMessage
	Compensating bool
	NewEpisodes  []WorkflowNewEpisode
	Stack, Env   string
	Events       []Event
}

// WorkflowFlushCounts is what a flush wrote, for the caller to check.
type WorkflowFlushCounts struct {
	Steps, Instances, Episodes int
}

// WorkflowStepDedupeKey is the dedupe key of a workflow step's episode for
// one attempt of the step: a second creation of that attempt can never
// make a second episode.
func WorkflowStepDedupeKey(instance uuid.UUID, stepID string, attempt int) string {
	return fmt.Sprintf("wf:%s:%s:%d", instance, stepID, attempt)
}

// WorkflowStepAttempt reads the step attempt back from an episode's
// dedupe key; 0 when the key is not a workflow step's.
func WorkflowStepAttempt(instance uuid.UUID, stepID, dedupeKey string) int {
	prefix := fmt.Sprintf("wf:%s:%s:", instance, stepID)
	rest, ok := strings.CutPrefix(dedupeKey, prefix)
	if !ok || instance == uuid.Nil {
		return 0
	}
	n, err := strconv.Atoi(rest)
	if err != nil || n < 1 {
		return 0
	}
	return n
}
