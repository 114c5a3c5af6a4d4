package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/revenant-go/revenant/internal/dbx"
)

// The helpers below run statements whose text a backend supplies, where
// the Go around them is the same on every backend.

// RunInsert runs an episode insert whose parameters are, in order: id,
// actor, expectation, input, max attempts, dedupe key, stack, env,
// workflow instance, workflow step, metadata, run at (runAt: the
// backend's form of p.RunAt, nil when zero), delay in milliseconds, retry
// policy; and which returns EpisodeColumns, or no row on a dedupe conflict
// (then (nil, nil)).
func RunInsert(ctx context.Context, q Querier, query string, p *EpisodeInsertParams, runAt any) (*Episode, error) {
	ep, err := ScanEpisode(q.QueryRowContext(ctx, query, p.ID, p.ActorID, NullString(p.Expectation),
		p.Input, p.MaxAttempts, NullString(p.DedupeKey), NullString(p.SourceStack), NullString(p.SourceEnv),
		NullUUID(p.WorkflowInstanceID), NullString(p.WorkflowStepID), p.Metadata, runAt, p.DelayMillis, p.Retry))
	if errors.Is(err, dbx.ErrNotFound) {
		return nil, nil
	}
	return ep, err
}

// EpisodeState runs a (status, claim_token) read of one episode.
func EpisodeState(ctx context.Context, q Querier, query string, id uuid.UUID) (string, int64, error) {
	var status string
	var token int64
	err := q.QueryRowContext(ctx, query, id).Scan(&status, &token)
	if errors.Is(err, sql.ErrNoRows) {
		return "", 0, dbx.ErrNotFound
	}
	return status, token, err
}

// RunTransition runs the statement for p.Move from byMove. Parameters:
// $1 id, then the token for fenced moves ($2) and the move's values.
func RunTransition(ctx context.Context, q Querier, byMove map[Transition]string, p *TransitionParams) (*Episode, error) {
	query, ok := byMove[p.Move]
	if !ok {
		return nil, errors.New("store: unknown transition")
	}
	return ScanEpisode(q.QueryRowContext(ctx, query, TransitionArgs(p)...))
}

// TransitionArgs are the parameters of p.Move's statement, in order.
func TransitionArgs(p *TransitionParams) []any {
	switch p.Move {
	case TransitionClaim:
		return []any{p.ID, p.Node}
	case TransitionComplete:
		return []any{p.ID, p.ClaimToken, p.Result}
	case TransitionFail:
		return []any{p.ID, p.ClaimToken, p.ErrorClass, p.ErrorDetail}
	case TransitionBlock, TransitionSetPhase:
		return []any{p.ID, p.ClaimToken, NullString(p.Phase)}
	case TransitionRelease:
		return []any{p.ID, p.ClaimToken}
	case TransitionCancel:
		return []any{p.ID, p.ErrorDetail}
	case TransitionRetry:
		return []any{p.ID, p.ClaimToken, p.ErrorClass, p.ErrorDetail, p.DelayMillis}
	default: // resume, archive
		return []any{p.ID}
	}
}

// RunList runs a List page: prefix is "SELECT EpisodeColumns FROM
// revenant_episodes WHERE " in the backend's dialect; the filters are
// portable.
// timeArg is the backend's form of a time parameter.
func RunList(ctx context.Context, q Querier, prefix string, timeArg func(time.Time) any, p *EpisodeListParams) ([]EpisodeListRow, error) {
	var (
		where []string
		args  []any
	)
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if len(p.Statuses) > 0 {
		ph := make([]string, len(p.Statuses))
		for i, st := range p.Statuses {
			ph[i] = arg(string(st))
		}
		where = append(where, "status IN ("+strings.Join(ph, ", ")+")")
	}
	if p.ActorID != "" {
		where = append(where, "actor_id = "+arg(p.ActorID))
	}
	if p.Stack != "" {
		where = append(where, "source_stack = "+arg(p.Stack))
	}
	if p.Env != "" {
		where = append(where, "source_env = "+arg(p.Env))
	}
	if p.WorkflowInstanceID != uuid.Nil {
		where = append(where, "workflow_instance_id = "+arg(p.WorkflowInstanceID))
	}
	if p.ErrorClass != "" {
		where = append(where, "error_class = "+arg(p.ErrorClass))
	}
	if p.NoWorkflowSteps {
		where = append(where, "workflow_instance_id IS NULL")
	}
	if !p.FinishedAfter.IsZero() {
		where = append(where, "finished_at >= "+arg(timeArg(p.FinishedAfter)))
	}
	if !p.FinishedBefore.IsZero() {
		where = append(where, "finished_at < "+arg(timeArg(p.FinishedBefore)))
	}
	if !p.IncludeArchived {
		where = append(where, "archived_at IS NULL")
	}
	if p.After != uuid.Nil {
		where = append(where, "id > "+arg(p.After))
	}
	if len(where) == 0 {
		where = append(where, "true")
	}
	query := prefix + strings.Join(where, " AND ") + " ORDER BY id LIMIT " + arg(p.Limit)
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer func() { _ = rows.Close() }()
	var out []EpisodeListRow
	for rows.Next() {
		ep, err := ScanEpisode(rows)
		if errors.Is(err, dbx.ErrCorruptRow) {
			out = append(out, EpisodeListRow{ID: dbx.RowUUID(rows), Err: err})
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, EpisodeListRow{ID: ep.ID, Episode: ep})
	}
	return out, rows.Err()
}

// NullString stores "" as NULL.
func NullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// NullUUID stores uuid.Nil as NULL.
func NullUUID(id uuid.UUID) any {
	if id == uuid.Nil {
		return nil
	}
	return id
}

// RunStepLoad runs a journal load whose rows are (episode status, claim
// token, attempts, max attempts, error class, error detail, seq, name,
// step status, output, error), with NULL step columns
// on the one row of an episode without steps.
func RunStepLoad(ctx context.Context, q Querier, query string, episodeID uuid.UUID) (*StepJournal, error) {
	rows, err := q.QueryContext(ctx, query, episodeID)
	if err != nil {
		return nil, err
	}
	defer func() { _ = rows.Close() }()
	var j *StepJournal
	for rows.Next() {
		var (
			status, name, stepStatus, errClass sql.NullString
			token                              int64
			attempts, maxAttempts              int
			seq                                sql.NullInt64
			output, errJSON, errDetail         []byte
		)
		if err := rows.Scan(&status, &token, &attempts, &maxAttempts, &errClass, &errDetail, &seq, &name, &stepStatus, &output, &errJSON); err != nil {
			return nil, err
		}
		if j == nil {
			j = &StepJournal{Status: status.String, ClaimToken: token, Attempts: attempts, MaxAttempts: maxAttempts,
				ErrorClass: errClass.String, ErrorDetail: errDetail}
		}
		if !seq.Valid {
			continue // the episode has no steps yet
		}
		j.Steps = append(j.Steps, StepRow{Seq: int(seq.Int64), Name: name.String, Status: stepStatus.String, Output: output, Error: errJSON})
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if j == nil {
		return nil, dbx.ErrNotFound
	}
	return j, nil
}

// RunClaimMany runs a claim statement whose parameters are $1 node, $2
// actor, $3 limit, $4 and $5 the breaker's stack and env, then the
// scope's, and which returns EpisodeColumns followed by the episode's
// steps as a JSON array of [seq, name, status, output, error] arrays.
// Every row is read, whatever one of them holds: each is claimed already.
// extra arguments follow the scope's.
func RunClaimMany(ctx context.Context, q Querier, query string, p *ClaimManyParams, extra ...any) ([]ClaimedRow, error) {
	args := append(append([]any{p.Node, p.ActorID, p.Limit, p.Scope.Stack, p.Scope.Env}, p.scopeArgs()...), extra...)
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer func() { _ = rows.Close() }()
	var out []ClaimedRow
	for rows.Next() {
		var steps []byte
		ep, err := ScanEpisode(rows, &steps)
		if err != nil {
			id, token := claimedIDAndToken(rows)
			out = append(out, ClaimedRow{ID: id, Token: token, Err: err})
			continue
		}
		out = append(out, ClaimedRow{Episode: ep, Journal: claimedJournal(ep, steps), ID: ep.ID, Token: ep.ClaimToken})
	}
	return out, rows.Err()
}

// claimedJournal is the journal of an episode just claimed, from its row
// and its steps' JSON; nil when that cannot be decoded (journal.Open then
// reads the journal itself, and reports what it finds).
func claimedJournal(ep *Episode, steps []byte) *StepJournal {
	if steps == nil {
		return nil // the claim could not vouch for it
	}
	var raw [][]json.RawMessage
	if err := json.Unmarshal(steps, &raw); err != nil {
		return nil
	}
	j := &StepJournal{Status: string(StatusRunning), ClaimToken: ep.ClaimToken, Attempts: ep.Attempts, MaxAttempts: ep.MaxAttempts,
		ErrorClass: ep.ErrorClass, ErrorDetail: ep.ErrorDetail, Steps: make([]StepRow, 0, len(raw))}
	for _, r := range raw {
		var row StepRow
		if len(r) != 5 || json.Unmarshal(r[0], &row.Seq) != nil || json.Unmarshal(r[1], &row.Name) != nil ||
			json.Unmarshal(r[2], &row.Status) != nil {
			return nil
		}
		row.Output, row.Error = nullJSON(r[3]), nullJSON(r[4])
		j.Steps = append(j.Steps, row)
	}
	slices.SortFunc(j.Steps, func(a, b StepRow) int { return a.Seq - b.Seq })
	return j
}

// nullJSON is nil for JSON null, as the column's SQL NULL reads.
func nullJSON(v json.RawMessage) []byte {
	if len(v) == 0 || string(v) == "null" {
		return nil
	}
	return v
}

// ClaimScope is the scope condition of a claim statement, numbered from
// $4 (after node, actor and limit).
func (p *ClaimManyParams) ClaimScope() string {
	where, _ := p.Scope.Where("", 6)
	return where
}

// ArgCount is how many parameters a claim statement takes before any of
// its own: node, actor, limit, the breaker's stack and env, the scope's.
func (p *ClaimManyParams) ArgCount() int { return 5 + len(p.scopeArgs()) }

func (p *ClaimManyParams) scopeArgs() []any {
	_, args := p.Scope.Where("", 6)
	return args
}

// claimedIDAndToken reads the id and claim token of a claimed row that
// could not be scanned whole (they come first and thirteenth in
// EpisodeColumns).
func claimedIDAndToken(rows *sql.Rows) (uuid.UUID, int64) {
	id := dbx.RowUUID(rows)
	cols, err := rows.Columns()
	if err != nil || len(cols) < 13 {
		return id, 0
	}
	dest := make([]any, len(cols))
	for i := range dest {
		dest[i] = new(any)
	}
	var token sql.NullInt64
	dest[12] = &token
	_ = rows.Scan(dest...)
	return id, token.Int64
}

// Affected returns whether an Exec changed exactly one row.
func Affected(res sql.Result, err error) (bool, error) {
	n, err := Count(res, err)
	return n == 1, err
}

// Count returns how many rows an Exec changed.
func Count(res sql.Result, err error) (int64, error) {
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// FindID runs a query returning at most one id; dbx.ErrNotFound when it
// returns none.
func FindID(ctx context.Context, q Querier, query string, args ...any) (uuid.UUID, error) {
	var id uuid.UUID
	err := q.QueryRowContext(ctx, query, args...).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return uuid.Nil, dbx.ErrNotFound
	}
	return id, err
}

// ScanOrphans reads rows of EpisodeColumns followed by the orphan reason.
func ScanOrphans(rows *sql.Rows, err error) ([]Orphan, error) {
	if err != nil {
		return nil, err
	}
	defer func() { _ = rows.Close() }()
	var out []Orphan
	for rows.Next() {
		var o Orphan
		if o.Episode, err = ScanEpisode(rows, &o.Reason); err != nil {
			return nil, err
		}
		out = append(out, o)
	}
	return out, rows.Err()
}

// ScanRefs reads (id, actor_id) rows.
func ScanRefs(rows *sql.Rows, err error) ([]EpisodeRef, error) {
	if err != nil {
		return nil, err
	}
	defer func() { _ = rows.Close() }()
	var out []EpisodeRef
	for rows.Next() {
		var r EpisodeRef
		if err := rows.Scan(&r.ID, &r.ActorID); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// ScanBacklog reads (actor_id, count) rows.
func ScanBacklog(rows *sql.Rows, err error) ([]ActorBacklog, error) {
	if err != nil {
		return nil, err
	}
	defer func() { _ = rows.Close() }()
	var out []ActorBacklog
	for rows.Next() {
		var b ActorBacklog
		if err := rows.Scan(&b.ActorID, &b.Pending); err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, rows.Err()
}

// ScanDeadNodes reads (node_id, reason) rows.
func ScanDeadNodes(rows *sql.Rows, err error) ([]DeadNode, error) {
	if err != nil {
		return nil, err
	}
	defer func() { _ = rows.Close() }()
	var out []DeadNode
	for rows.Next() {
		var d DeadNode
		if err := rows.Scan(&d.ID, &d.Reason); err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// ActorDefinitionColumns is the column list ScanActorDefinitions reads.
const ActorDefinitionColumns = `actor_id, recovery_policy, expectation_policies, enabled, updated_at`

// ScanActorDefinitions reads ActorDefinitionColumns rows.
func ScanActorDefinitions(rows *sql.Rows, err error) ([]ActorDefinition, error) {
	if err != nil {
		return nil, err
	}
	defer func() { _ = rows.Close() }()
	var out []ActorDefinition
	for rows.Next() {
		var d ActorDefinition
		if err := rows.Scan(&d.ActorID, &d.RecoveryPolicy, &d.ExpectationPolicies, &d.Enabled, &d.UpdatedAt); err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// EventColumns is the column list ScanEvents reads.
const EventColumns = `seq, id, type, episode_id, coalesce(actor_id, '') AS actor_id, workflow_instance_id,
	coalesce(workflow_step_id, '') AS workflow_step_id, coalesce(status, '') AS status,
	coalesce(error_class, '') AS error_class, payload, created_at`

// ScanEvents reads rows of EventColumns.
func ScanEvents(rows *sql.Rows, err error) ([]EventRecord, error) {
	if err != nil {
		return nil, err
	}
	defer func() { _ = rows.Close() }()
	var out []EventRecord
	for rows.Next() {
		var (
			r       EventRecord
			ep, wf  uuid.NullUUID
			payload []byte
		)
		ev := &r.Event
		if err := rows.Scan(&r.Seq, &ev.ID, &ev.Type, &ep, &ev.ActorID, &wf, &ev.WorkflowStepID, &ev.Status, &ev.ErrorClass, &payload, &ev.CreatedAt); err != nil {
			return nil, err
		}
		ev.EpisodeID, ev.WorkflowInstanceID = ep.UUID, wf.UUID
		if payload != nil {
			ev.Payload = append([]byte(nil), payload...)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// NullJSON stores an empty JSON value as NULL, and any other as text.
func NullJSON(b []byte) *string {
	if len(b) == 0 {
		return nil
	}
	s := string(b)
	return &s
}

// WorkflowColumns is the column list ScanWorkflow reads: the instance's
// version from the statement's snapshot, the instance, one step, and the
// running step's episode outcome.
const WorkflowColumns = `i2.version, i.id, i.workflow_id, i.status, coalesce(i.subject, ''), i.trigger, i.error, i.compensating, i.version,
	i.created_at, i.finished_at, coalesce(i.source_stack, ''), coalesce(i.source_env, ''),
	s.step_id, s.kind, s.position, s.status, s.attempts, s.episode_id, s.result, coalesce(s.error_class, ''), s.error, s.due_at`

// ScanWorkflow reads rows of WorkflowColumns followed by (due, episode
// status, result, error class, error detail). stale reports that the
// joined rows came from a snapshot older than the instance row (a
// statement that waited for the instance's lock). dbx.ErrNotFound when
// there are no rows.
func ScanWorkflow(rows *sql.Rows, err error) (loaded *WorkflowLoaded, stale bool, _ error) {
	if err != nil {
		return nil, false, err
	}
	defer func() { _ = rows.Close() }()
	for rows.Next() {
		var (
			in          WorkflowInstance
			s           WorkflowStep
			snapVersion int64
			finished    sql.NullTime
			ep          uuid.NullUUID
			due         sql.NullTime
			// json.RawMessage cannot take a NULL; []byte can.
			trig, instErr, result, stepErr, epResult, epDetail []byte
		)
		if err := rows.Scan(&snapVersion, &in.ID, &in.WorkflowID, &in.Status, &in.Subject, &trig, &instErr, &in.Compensating, &in.Version,
			&in.CreatedAt, &finished, &in.Stack, &in.Env,
			&s.ID, &s.Kind, &s.Position, &s.Status, &s.Attempts, &ep, &result, &s.ErrorClass, &stepErr, &due, &s.Due,
			&s.EpisodeStatus, &epResult, &s.EpisodeErrorClass, &epDetail); err != nil {
			return nil, false, err
		}
		in.Trigger, in.Error, s.Result, s.Error, s.EpisodeResult, s.EpisodeErrorDetail = trig, instErr, result, stepErr, epResult, epDetail
		stale = stale || snapVersion != in.Version
		if finished.Valid {
			in.FinishedAt = &finished.Time
		}
		s.EpisodeID = ep.UUID
		if due.Valid {
			s.DueAt = &due.Time
		}
		if loaded == nil {
			loaded = &WorkflowLoaded{Instance: in}
		}
		loaded.Steps = append(loaded.Steps, s)
	}
	if err := rows.Err(); err != nil {
		return nil, false, err
	}
	if loaded == nil {
		return nil, false, dbx.ErrNotFound
	}
	return loaded, stale, nil
}

// ScanIDs reads rows of one uuid column.
func ScanIDs(rows *sql.Rows, err error) ([]uuid.UUID, error) {
	if err != nil {
		return nil, err
	}
	defer func() { _ = rows.Close() }()
	var out []uuid.UUID
	for rows.Next() {
		var id uuid.UUID
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		out = append(out, id)
	}
	return out, rows.Err()
}

// ScanNodePolicies reads (node_id, actor_policies) rows.
func ScanNodePolicies(rows *sql.Rows, err error) (map[string][]byte, error) {
	if err != nil {
		return nil, err
	}
	defer func() { _ = rows.Close() }()
	out := map[string][]byte{}
	for rows.Next() {
		var id string
		var raw []byte
		if err := rows.Scan(&id, &raw); err != nil {
			return nil, err
		}
		out[id] = raw
	}
	return out, rows.Err()
}
