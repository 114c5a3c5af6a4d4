package store

import (
	"context"
	"time"

	"github.com/google/uuid"
)

// StepJournal is an episode's fencing state and its recorded steps.
type StepJournal struct {
	Status     string
	ClaimToken int64
	// Attempts and MaxAttempts are the episode's; ErrorClass and
	// ErrorDetail its last failed attempt's, when it retried.
	Attempts, MaxAttempts int
	ErrorClass            string
	ErrorDetail           []byte
	Steps                 []StepRow
}

// StepRow is one revenant_steps row as replay needs it.
type StepRow struct {
	Seq    int
	Name   string
	Status string
	Output []byte
	Error  []byte
}

// StepRecordParams is one step to record. Output and Error are encoded
// JSON text or nil.
type StepRecordParams struct {
	EpisodeID  uuid.UUID
	ClaimToken int64
	Seq        int
	Name       string
	Status     string
	Output     any
	Error      any
	Took       time.Duration
}

// StepOutcome is what StepRecord did.
type StepOutcome int

const (
	// StepFenced means the episode is not running under the token; nothing was
	// written.
	StepFenced StepOutcome = iota
	// StepRecorded means the step was written.
	StepRecorded
	// StepSeqTaken means the token holds, but the sequence number is already
	// recorded (another goroutine of the same holder wrote it).
	StepSeqTaken
)

type claimedJournalKey struct{}

// WithClaimedJournal returns ctx carrying the journal a claim read with
// its episode, for the journal.Open that follows: a restart's run starts
// without a read of its own (one statement claims a batch and loads its
// journals).
func WithClaimedJournal(ctx context.Context, id uuid.UUID, j *StepJournal) context.Context {
	if j == nil {
		return ctx
	}
	return context.WithValue(ctx, claimedJournalKey{}, claimed{id: id, j: j})
}

// ClaimedJournal is the journal ctx carries for episode id under
// claimToken, or nil.
func ClaimedJournal(ctx context.Context, id uuid.UUID, claimToken int64) *StepJournal {
	c, ok := ctx.Value(claimedJournalKey{}).(claimed)
	if !ok || c.id != id || c.j.ClaimToken != claimToken {
		return nil
	}
	return c.j
}

type claimed struct {
	id uuid.UUID
	j  *StepJournal
}
