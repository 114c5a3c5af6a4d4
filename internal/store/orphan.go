package store

import (
	"time"

	"github.com/google/uuid"
)

// Why an episode is orphaned (recovery re-exports these).
const (
	ReasonOwnerStopped  = "owner_stopped"
	ReasonOwnerLockGone = "owner_lock_released"
	ReasonOwnerExpired  = "owner_ttl_expired"
	ReasonNoActivity    = "no_activity"
)

// What recovery does with an orphan (recovery re-exports these).
const (
	ActionRestart    = "restart"
	ActionFail       = "fail"
	ActionDeadLetter = "dead_letter"
)

// OrphanQuery selects orphans: running episodes in Scope whose owner is
// dead (stopped, lock gone, TTL lapsed) or, for owners that are not known
// nodes, that show no activity for StaleAfter. Episodes whose counters
// cannot be bumped are left out (see OrphanExhausted).
type OrphanQuery struct {
	StaleAfter time.Duration
	Scope      Scope
	// Episode, when set, narrows the query to that one episode.
	Episode uuid.UUID
}

// OrphanGroup is one owner and (actor, expectation) pair with orphans (or,
// on backends that cannot tell cheaply, with running episodes that may be
// orphans: their recovery re-checks each). Backends that recover by owner
// also fill Reason; OrphanRecover takes the groups back to batch by them.
type OrphanGroup struct {
	ActorID, Expectation string
	Owner, Reason        string
}

// PairPolicy is the policy resolved for the orphans of one owner and
// (actor, expectation) pair, and where it came from. Owner is the group's
// Owner: the policy may differ per owner (each node publishes its own).
type PairPolicy struct {
	Owner, ActorID, Expectation, Policy, Source string
}

// OrphanRecoverParams recovers orphans of the resolved pairs, at most Limit
// per call. Call OrphanRecover until Done: Cursor is the backend's
// progress through Groups (start at the zero value).
type OrphanRecoverParams struct {
	Query    OrphanQuery
	Groups   []OrphanGroup
	Policies []PairPolicy
	Limit    int
	Cursor   int
	Done     bool

	// Summarize (backends with Capabilities().StatementEvents; others
	// ignore it) makes each batch's statement do the batch's side effects
	// itself: it wakes the runners of the restarted actors (NOTIFY on
	// PendingChannel) and, with Events, writes and announces each
	// recovered episode's outbox event. OrphanRecover then returns only
	// the episodes it did not restart, and counts the others in Restarted.
	Summarize bool
	// Events are the event types a summarized batch writes to the outbox;
	// nil writes none.
	Events *RecoveryEventTypes
	// Restarted is set by each summarized OrphanRecover call: how many
	// episodes it restarted (not among the rows it returned).
	Restarted int
}

// RecoveryEventTypes are the types of the events a recovery writes, per
// action.
type RecoveryEventTypes struct {
	Recovered, Failed, DeadLettered string
}

// Recovered is one orphan a recovery changed. Action is ActionRestart,
// ActionFail or ActionDeadLetter.
type Recovered struct {
	ID                 uuid.UUID
	ActorID            string
	Action             string
	Reason             string
	PreviousOwner      string
	WorkflowInstanceID uuid.UUID
	WorkflowStepID     string
	Attempts           int
}

// Orphan is a listed orphan and why it is one.
type Orphan struct {
	Episode *Episode
	Reason  string
}

// Decision is a policy decided for one locked orphan (a ResolvePolicy
// callback's answer).
type Decision struct {
	ID         uuid.UUID
	ClaimToken int64
	Policy     string
	Source     string
	Reason     string
}

// EpisodeRef names an episode and its actor.
type EpisodeRef struct {
	ID      uuid.UUID
	ActorID string
}

// DeadNode is a node a sweep marked stopped, and why it was dead.
type DeadNode struct {
	ID, Reason string
}

// ActorBacklog counts pending episodes of one actor.
type ActorBacklog struct {
	ActorID string
	Pending int
}
