package episodes

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/revenant-go/revenant/internal/dbx"
	"github.com/revenant-go/revenant/internal/store"
)

// TransitionError explains a refused compare-and-set. It matches
// ErrIllegalTransition, or ErrLeaseLost when the caller's claim token is
// stale or the episode was canceled under it.
type TransitionError struct {
	ID      uuid.UUID
	Op      string   // e.g. "complete"
	From    []Status // statuses the move is allowed from
	Current Status
	// Token is the caller's claim token and CurrentToken the episode's, when
	// the move is fenced.
	Token, CurrentToken int64
	fenced              bool
}

func (e *TransitionError) leaseLost() bool {
	return e.fenced && (e.Token != e.CurrentToken || e.Current == StatusCanceled)
}

func (e *TransitionError) Error() string {
	if e.leaseLost() {
		return fmt.Sprintf("%s episode %s: %v (holder token %d, current token %d, status %s)",
			e.Op, e.ID, ErrLeaseLost, e.Token, e.CurrentToken, e.Current)
	}
	from := make([]string, len(e.From))
	for i, s := range e.From {
		from[i] = string(s)
	}
	return fmt.Sprintf("%s episode %s: %v: status is %s, allowed from %s",
		e.Op, e.ID, ErrIllegalTransition, e.Current, strings.Join(from, "|"))
}

// Is makes errors.Is match the right sentinel.
func (e *TransitionError) Is(target error) bool {
	if e.leaseLost() {
		return target == ErrLeaseLost
	}
	return target == ErrIllegalTransition
}

// move runs one compare-and-set statement. On zero rows it reads the
// episode's state once, only to say why the move was refused.
func (s *Store) move(ctx context.Context, ex dbx.Executor, op string, from []Status, p *store.TransitionParams) (*Episode, error) {
	if err := dbx.CheckExecutor(op+" episode", ex); err != nil {
		return nil, err
	}
	ep, err := s.st.EpisodeTransition(ctx, ex, p)
	if err == nil {
		return (*Episode)(ep), nil
	}
	if !errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("%s episode %s: %w", op, p.ID, dbx.Explain(err))
	}
	status, current, err := s.st.EpisodeState(ctx, ex, p.ID)
	if errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("%s episode %s: %w", op, p.ID, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("%s episode %s: reading state after refused update: %w", op, p.ID, err)
	}
	fenced := p.Move != store.TransitionClaim && p.Move != store.TransitionResume &&
		p.Move != store.TransitionCancel && p.Move != store.TransitionArchive
	return nil, &TransitionError{ID: p.ID, Op: op, From: from, Current: Status(status),
		Token: p.ClaimToken, CurrentToken: current, fenced: fenced}
}

// Claim moves a pending episode that is due (its RunAt has come, by the
// database clock) to running for node: it sets the owner,
// bumps the claim token (the fencing number every later write must present)
// and counts the attempt, all with the database clock. Runners normally claim
// in batches; Claim is the single-episode form.
func (s *Store) Claim(ctx context.Context, id uuid.UUID, node string) (*Episode, error) {
	return s.ClaimTx(ctx, s.db, id, node)
}

// ClaimTx is Claim inside the caller's transaction.
func (s *Store) ClaimTx(ctx context.Context, tx Executor, id uuid.UUID, node string) (*Episode, error) {
	if err := dbx.CheckName("Claim: node id", node, true); err != nil {
		return nil, err
	}
	return s.move(ctx, tx, "claim", []Status{StatusPending}, &store.TransitionParams{Move: store.TransitionClaim, ID: id, Node: node})
}

// Complete moves a running episode the caller holds to done with result.
func (s *Store) Complete(ctx context.Context, id uuid.UUID, token int64, result any) (*Episode, error) {
	return s.CompleteTx(ctx, s.db, id, token, result)
}

// CompleteTx is Complete inside the caller's transaction.
func (s *Store) CompleteTx(ctx context.Context, tx Executor, id uuid.UUID, token int64, result any) (*Episode, error) {
	res, err := dbx.EncodeJSON(result, s.config.MaxJSONBytes)
	if err != nil {
		return nil, fmt.Errorf("%w: complete episode %s: result: %w", ErrInvalidInput, id, err)
	}
	return s.move(ctx, tx, "complete", []Status{StatusRunning}, &store.TransitionParams{Move: store.TransitionComplete, ID: id, ClaimToken: token, Result: res})
}

// Fail moves a running episode the caller holds to failed, recording an
// error class (e.g. "panic", "orphaned") and a JSON detail.
func (s *Store) Fail(ctx context.Context, id uuid.UUID, token int64, errorClass string, detail any) (*Episode, error) {
	return s.FailTx(ctx, s.db, id, token, errorClass, detail)
}

// FailTx is Fail inside the caller's transaction.
func (s *Store) FailTx(ctx context.Context, tx Executor, id uuid.UUID, token int64, errorClass string, detail any) (*Episode, error) {
	if err := dbx.CheckName("Fail: error class", errorClass, true); err != nil {
		return nil, fmt.Errorf("fail episode %s: %w", id, err)
	}
	d, err := dbx.EncodeJSON(detail, s.config.MaxJSONBytes)
	if err != nil {
		return nil, fmt.Errorf("%w: fail episode %s: detail: %w", ErrInvalidInput, id, err)
	}
	return s.move(ctx, tx, "fail", []Status{StatusRunning}, &store.TransitionParams{Move: store.TransitionFail, ID: id, ClaimToken: token, ErrorClass: errorClass, ErrorDetail: d})
}

// Retry ends the caller's failed attempt of a running episode: it goes back
// to pending, due after delay by the database clock, recording the
// attempt's error class and detail (the next attempt sees them). The
// attempt stays counted. Runners call it when an actor's error may be
// retried; see RetryPolicy.
func (s *Store) Retry(ctx context.Context, id uuid.UUID, token int64, errorClass string, detail any, delay time.Duration) (*Episode, error) {
	return s.RetryTx(ctx, s.db, id, token, errorClass, detail, delay)
}

// RetryTx is Retry inside the caller's transaction.
func (s *Store) RetryTx(ctx context.Context, tx Executor, id uuid.UUID, token int64, errorClass string, detail any, delay time.Duration) (*Episode, error) {
	if err := dbx.CheckName("Retry: error class", errorClass, true); err != nil {
		return nil, fmt.Errorf("retry episode %s: %w", id, err)
	}
	if delay < 0 || delay > MaxScheduleDelay {
		return nil, fmt.Errorf("%w: retry episode %s: delay is %s; use 0 up to %s", ErrInvalidInput, id, delay, MaxScheduleDelay)
	}
	d, err := dbx.EncodeJSON(detail, s.config.MaxJSONBytes)
	if err != nil {
		return nil, fmt.Errorf("%w: retry episode %s: detail: %w", ErrInvalidInput, id, err)
	}
	return s.move(ctx, tx, "retry", []Status{StatusRunning}, &store.TransitionParams{Move: store.TransitionRetry, ID: id,
		ClaimToken: token, ErrorClass: errorClass, ErrorDetail: d, DelayMillis: delay.Milliseconds()})
}

// Block moves a running episode the caller holds to blocked (waiting for
// approval or an outside event), recording phase. Blocked episodes are never
// swept; Resume makes them pending again.
func (s *Store) Block(ctx context.Context, id uuid.UUID, token int64, phase string) (*Episode, error) {
	return s.BlockTx(ctx, s.db, id, token, phase)
}

// BlockTx is Block inside the caller's transaction.
func (s *Store) BlockTx(ctx context.Context, tx Executor, id uuid.UUID, token int64, phase string) (*Episode, error) {
	if err := dbx.CheckText("Block: phase", phase, dbx.MaxKeyBytes); err != nil {
		return nil, err
	}
	return s.move(ctx, tx, "block", []Status{StatusRunning}, &store.TransitionParams{Move: store.TransitionBlock, ID: id, ClaimToken: token, Phase: phase})
}

// Release hands a running episode the caller holds back to pending (graceful
// shutdown), returning the attempt it had counted.
func (s *Store) Release(ctx context.Context, id uuid.UUID, token int64) (*Episode, error) {
	return s.ReleaseTx(ctx, s.db, id, token)
}

// ReleaseTx is Release inside the caller's transaction.
func (s *Store) ReleaseTx(ctx context.Context, tx Executor, id uuid.UUID, token int64) (*Episode, error) {
	return s.move(ctx, tx, "release", []Status{StatusRunning}, &store.TransitionParams{Move: store.TransitionRelease, ID: id, ClaimToken: token})
}

// SetPhase records free-text progress on a running episode the caller holds.
func (s *Store) SetPhase(ctx context.Context, id uuid.UUID, token int64, phase string) (*Episode, error) {
	return s.SetPhaseTx(ctx, s.db, id, token, phase)
}

// SetPhaseTx is SetPhase inside the caller's transaction.
func (s *Store) SetPhaseTx(ctx context.Context, tx Executor, id uuid.UUID, token int64, phase string) (*Episode, error) {
	if err := dbx.CheckText("SetPhase: phase", phase, dbx.MaxKeyBytes); err != nil {
		return nil, err
	}
	return s.move(ctx, tx, "set phase of", []Status{StatusRunning}, &store.TransitionParams{Move: store.TransitionSetPhase, ID: id, ClaimToken: token, Phase: phase})
}

// Resume moves a blocked episode back to pending, for any runner to claim.
func (s *Store) Resume(ctx context.Context, id uuid.UUID) (*Episode, error) {
	return s.ResumeTx(ctx, s.db, id)
}

// ResumeTx is Resume inside the caller's transaction.
func (s *Store) ResumeTx(ctx context.Context, tx Executor, id uuid.UUID) (*Episode, error) {
	return s.move(ctx, tx, "resume", []Status{StatusBlocked}, &store.TransitionParams{Move: store.TransitionResume, ID: id})
}

// Cancel moves a pending, running or blocked episode to canceled, from any
// node. A worker still running it is fenced off: its next write fails with
// ErrLeaseLost.
func (s *Store) Cancel(ctx context.Context, id uuid.UUID, reason string) (*Episode, error) {
	return s.CancelTx(ctx, s.db, id, reason)
}

// CancelTx is Cancel inside the caller's transaction.
func (s *Store) CancelTx(ctx context.Context, tx Executor, id uuid.UUID, reason string) (*Episode, error) {
	if err := dbx.CheckText("Cancel: reason", reason, dbx.MaxKeyBytes); err != nil {
		return nil, err
	}
	var detail any
	if reason != "" {
		d, err := dbx.EncodeJSON(map[string]string{"reason": reason}, s.config.MaxJSONBytes)
		if err != nil {
			return nil, fmt.Errorf("%w: cancel episode %s: %w", ErrInvalidInput, id, err)
		}
		detail = d
	}
	return s.move(ctx, tx, "cancel", []Status{StatusPending, StatusRunning, StatusBlocked}, &store.TransitionParams{Move: store.TransitionCancel, ID: id, ErrorDetail: detail})
}

// Archive hides a terminal episode from recovery and frees its dedupe key.
func (s *Store) Archive(ctx context.Context, id uuid.UUID) (*Episode, error) {
	return s.ArchiveTx(ctx, s.db, id)
}

// ArchiveTx is Archive inside the caller's transaction.
func (s *Store) ArchiveTx(ctx context.Context, tx Executor, id uuid.UUID) (*Episode, error) {
	return s.move(ctx, tx, "archive", []Status{StatusDone, StatusFailed, StatusCanceled}, &store.TransitionParams{Move: store.TransitionArchive, ID: id})
}
