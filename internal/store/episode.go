package store

import (
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/revenant-go/revenant/internal/dbx"
)

// Status is an episode's lifecycle state. The public episodes package
// names it episodes.Status and documents the values.
type Status string

// The statuses. done, failed and canceled are terminal.
const (
	StatusPending  Status = "pending"
	StatusRunning  Status = "running"
	StatusBlocked  Status = "blocked"
	StatusDone     Status = "done"
	StatusFailed   Status = "failed"
	StatusCanceled Status = "canceled"
)

// Valid reports whether s is one of the known statuses.
func (s Status) Valid() bool {
	switch s {
	case StatusPending, StatusRunning, StatusBlocked, StatusDone, StatusFailed, StatusCanceled:
		return true
	}
	return false
}

// Terminal reports whether s is done, failed or canceled.
func (s Status) Terminal() bool {
	return s == StatusDone || s == StatusFailed || s == StatusCanceled
}

// Episode is one revenant_episodes row. It has exactly the fields of the
// public episodes.Episode, in the same order and of the same types, so
// that each converts to the other at no cost; the compiler checks that
// they stay twins.
type Episode struct {
	ID                 uuid.UUID
	ActorID            string
	Expectation        string
	Status             Status
	Phase              string
	Input              json.RawMessage
	Result             json.RawMessage
	ErrorClass         string
	ErrorDetail        json.RawMessage
	Attempts           int
	MaxAttempts        int
	OwnerNode          string
	ClaimToken         int64
	CancelRequestedAt  *time.Time
	CreatedAt          time.Time
	StartedAt          *time.Time
	LastActivityAt     *time.Time
	FinishedAt         *time.Time
	ArchivedAt         *time.Time
	DedupeKey          string
	SourceStack        string
	SourceEnv          string
	WorkflowInstanceID uuid.UUID
	WorkflowStepID     string
	Metadata           json.RawMessage
	RunAt              time.Time
	Retry              *RetryPolicy
	Requeues           []Requeue
}

// EpisodeColumns is the column list ScanEpisode reads, in order. Both
// backends select exactly these.
const EpisodeColumns = `id, actor_id, expectation, status, phase, input, result, error_class, error_detail,
	attempts, max_attempts, owner_node, claim_token, cancel_requested_at, created_at, started_at,
	last_activity_at, finished_at, archived_at, dedupe_key, source_stack, source_env,
	workflow_instance_id, workflow_step_id, metadata, run_at, retry_policy, requeue_history`

// RowScanner is a *sql.Row or *sql.Rows.
type RowScanner interface{ Scan(dest ...any) error }

// ScanEpisode reads one row selected with EpisodeColumns (extra, when
// given, receives the columns that follow them). sql.ErrNoRows becomes
// dbx.ErrNotFound; unreadable values become an error wrapping
// dbx.ErrCorruptRow.
func ScanEpisode(row RowScanner, extra ...any) (*Episode, error) {
	var (
		ep                                                      Episode
		status                                                  string
		expectation, phase, errClass, owner, dedupe, stack, env sql.NullString
		stepID                                                  sql.NullString
		wfID                                                    uuid.NullUUID
		input, result, errDetail, meta, retry, requeues         []byte
		cancelAt, startedAt, lastAt, finishedAt, archivedAt     sql.NullTime
		runAt                                                   sql.NullTime
	)
	dest := append([]any{&ep.ID, &ep.ActorID, &expectation, &status, &phase, &input, &result, &errClass, &errDetail,
		&ep.Attempts, &ep.MaxAttempts, &owner, &ep.ClaimToken, &cancelAt, &ep.CreatedAt, &startedAt,
		&lastAt, &finishedAt, &archivedAt, &dedupe, &stack, &env, &wfID, &stepID, &meta, &runAt, &retry, &requeues}, extra...)
	err := row.Scan(dest...)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, dbx.ErrNotFound
	}
	if dbx.IsScanError(err) {
		return nil, fmt.Errorf("%w: %w", dbx.ErrCorruptRow, err)
	}
	if err != nil {
		return nil, err
	}
	ep.Status = Status(status)
	if !ep.Status.Valid() {
		return nil, fmt.Errorf("%w: episode %s has unknown status %q", dbx.ErrCorruptRow, ep.ID, status)
	}
	ep.Expectation, ep.Phase, ep.ErrorClass = expectation.String, phase.String, errClass.String
	ep.OwnerNode, ep.DedupeKey, ep.SourceStack, ep.SourceEnv = owner.String, dedupe.String, stack.String, env.String
	ep.WorkflowStepID = stepID.String
	if wfID.Valid {
		ep.WorkflowInstanceID = wfID.UUID
	}
	ep.Input, ep.Result, ep.ErrorDetail, ep.Metadata = rawJSON(input), rawJSON(result), rawJSON(errDetail), rawJSON(meta)
	ep.CancelRequestedAt, ep.StartedAt, ep.LastActivityAt = timePtr(cancelAt), timePtr(startedAt), timePtr(lastAt)
	ep.FinishedAt, ep.ArchivedAt = timePtr(finishedAt), timePtr(archivedAt)
	ep.RunAt = runAt.Time
	if ep.Retry, err = decodeRetryPolicy(retry); err != nil {
		return nil, fmt.Errorf("%w: episode %s has an unreadable retry_policy: %w", dbx.ErrCorruptRow, ep.ID, err)
	}
	if ep.Requeues, err = decodeRequeues(requeues); err != nil {
		return nil, fmt.Errorf("%w: episode %s has an unreadable requeue_history: %w", dbx.ErrCorruptRow, ep.ID, err)
	}
	return &ep, nil
}

func rawJSON(b []byte) json.RawMessage {
	if b == nil {
		return nil
	}
	return json.RawMessage(append([]byte(nil), b...))
}

func timePtr(t sql.NullTime) *time.Time {
	if !t.Valid {
		return nil
	}
	v := t.Time
	return &v
}

// EpisodeInsertParams is a validated, encoded new episode. JSON values are
// encoded text (or nil); empty strings are stored as NULL.
type EpisodeInsertParams struct {
	ID                 uuid.UUID
	ActorID            string
	Expectation        string
	Input              any
	MaxAttempts        int
	DedupeKey          string
	SourceStack        string
	SourceEnv          string
	WorkflowInstanceID uuid.UUID
	WorkflowStepID     string
	// Metadata defaults to {} when nil.
	Metadata any
	// RunAt, when not zero, is when the episode falls due; otherwise it
	// falls due DelayMillis after now (database clock).
	RunAt       time.Time
	DelayMillis int64
	// Retry is encoded JSON text (EncodeRetryPolicy) or nil.
	Retry any
}

// Transition names one compare-and-set move of an episode.
type Transition uint8

// The moves. Fenced ones (the holder's writes) check the claim token.
const (
	TransitionClaim    Transition = iota + 1 // pending → running, for Node
	TransitionComplete                       // running → done (fenced), with Result
	TransitionFail                           // running → failed (fenced), with ErrorClass and ErrorDetail
	TransitionBlock                          // running → blocked (fenced), with Phase
	TransitionRelease                        // running → pending (fenced), attempt given back
	TransitionSetPhase                       // running → running (fenced), with Phase
	TransitionResume                         // blocked → pending
	TransitionCancel                         // pending|running|blocked → canceled, with ErrorDetail
	TransitionArchive                        // done|failed|canceled → archived
	TransitionRetry                          // running → pending (fenced), due DelayMillis from now, with ErrorClass and ErrorDetail
)

// TransitionParams is one move and what it writes. Fields a move does not
// use are ignored.
type TransitionParams struct {
	Move       Transition
	ID         uuid.UUID
	ClaimToken int64
	Node       string
	Result     any
	ErrorClass string
	// ErrorDetail is encoded JSON text or nil.
	ErrorDetail any
	Phase       string
	// DelayMillis is how long a retried episode waits.
	DelayMillis int64
	// Events, when given, are written to the outbox by the same
	// statement, only if the move matched (only where
	// Capabilities().StatementEvents; other backends refuse them), without
	// a NOTIFY: announce them after the commit (EventAnnounce).
	Events []Event
}

// EpisodeListParams filters one List page. Empty fields do not filter.
type EpisodeListParams struct {
	Statuses           []Status
	ActorID            string
	Stack              string
	Env                string
	WorkflowInstanceID uuid.UUID
	IncludeArchived    bool
	// ErrorClass filters by error class; FinishedAfter and FinishedBefore
	// (zero: unbounded) by finish time.
	ErrorClass                    string
	FinishedAfter, FinishedBefore time.Time
	// NoWorkflowSteps leaves workflow steps' episodes out.
	NoWorkflowSteps bool
	After           uuid.UUID
	// Limit is the number of rows to return (the caller asks for one more
	// than a page to learn whether another follows).
	Limit int
}

// EpisodeListRow is one listed row: Episode, or Err (wrapping
// dbx.ErrCorruptRow) with the row's ID when it could be read.
type EpisodeListRow struct {
	ID      uuid.UUID
	Episode *Episode
	Err     error
}

// QualifiedEpisodeColumns is EpisodeColumns with each column prefixed by
// alias and a dot, for queries that join revenant_episodes under an alias.
func QualifiedEpisodeColumns(alias string) string {
	parts := strings.Split(EpisodeColumns, ",")
	for i, p := range parts {
		parts[i] = alias + "." + strings.TrimSpace(p)
	}
	return strings.Join(parts, ", ")
}

// InsertedEpisode is the row EpisodeInsertMany inserted for p: the values
// p gave, the defaults of a new pending episode, and the database's
// created_at and run_at (read back, so that a batch returns three columns
// rather than every one).
func InsertedEpisode(p *EpisodeInsertParams, createdAt, runAt time.Time) (*Episode, error) {
	ep := &Episode{ID: p.ID, ActorID: p.ActorID, Expectation: p.Expectation, Status: StatusPending,
		MaxAttempts: p.MaxAttempts, CreatedAt: createdAt, DedupeKey: p.DedupeKey, SourceStack: p.SourceStack,
		SourceEnv: p.SourceEnv, WorkflowInstanceID: p.WorkflowInstanceID, WorkflowStepID: p.WorkflowStepID,
		RunAt: runAt, Input: rawJSONOf(p.Input), Metadata: rawJSONOf(p.Metadata)}
	if ep.Metadata == nil {
		ep.Metadata = json.RawMessage(`{}`)
	}
	if s, ok := p.Retry.(string); ok {
		r, err := decodeRetryPolicy([]byte(s))
		if err != nil {
			return nil, fmt.Errorf("%w: episode %s: retry policy: %w", dbx.ErrCorruptRow, p.ID, err)
		}
		ep.Retry = r
	}
	return ep, nil
}

// rawJSONOf is an encoded JSON value (a string, as EncodeJSON returns it)
// as raw JSON; nil for none.
func rawJSONOf(v any) json.RawMessage {
	if s, ok := v.(string); ok {
		return json.RawMessage(s)
	}
	return nil
}

// ScanInserted reads rows of (id, created_at, run_at) returned by a batch
// insert of rows, and builds each inserted episode from its params.
func ScanInserted(rows *sql.Rows, err error, params []*EpisodeInsertParams) ([]*Episode, error) {
	if err != nil {
		return nil, err
	}
	defer func() { _ = rows.Close() }()
	byID := make(map[uuid.UUID]*EpisodeInsertParams, len(params))
	for _, p := range params {
		byID[p.ID] = p
	}
	var out []*Episode
	for rows.Next() {
		var (
			id             uuid.UUID
			created, runAt dbTime
		)
		if err := rows.Scan(&id, &created, &runAt); err != nil {
			return nil, fmt.Errorf("%w: %w", dbx.ErrCorruptRow, err)
		}
		p, ok := byID[id]
		if !ok {
			return nil, fmt.Errorf("batch insert returned episode %s, which it was not given", id)
		}
		ep, err := InsertedEpisode(p, time.Time(created), time.Time(runAt))
		if err != nil {
			return nil, err
		}
		out = append(out, ep)
	}
	return out, rows.Err()
}
