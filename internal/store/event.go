package store

import (
	"encoding/json"
	"time"

	"github.com/google/uuid"
)

// OutboxChannel is the NOTIFY channel announcing new outbox rows (payload:
// the highest seq written, or empty when a runner announces what its
// claims and completions wrote). Package bus re-exports it as bus.Channel.
const OutboxChannel = "revenant_events"

// Event is one revenant_events row. It has exactly the fields of the
// public bus.Event, so each converts to the other at no cost. Payload must
// already be valid JSON (or nil); ID must be set.
type Event struct {
	ID                 uuid.UUID
	Type               string
	EpisodeID          uuid.UUID
	ActorID            string
	WorkflowInstanceID uuid.UUID
	WorkflowStepID     string
	Status             string
	ErrorClass         string
	Payload            json.RawMessage
	CreatedAt          time.Time
}

// EventRecord is an event read back with its sequence number.
type EventRecord struct {
	Seq   int64
	Event Event
}

// SeqRange is an inclusive range of sequence numbers.
type SeqRange struct{ From, To int64 }
