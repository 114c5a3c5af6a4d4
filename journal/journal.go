package journal

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"

	"github.com/revenant-go/revenant/internal/crashpoint"
	"github.com/revenant-go/revenant/internal/dbx"
	"github.com/revenant-go/revenant/internal/store"
	"github.com/revenant-go/revenant/internal/store/backend"
)

// MaxOutputBytesDefault caps one step's JSON output (1 MiB).
const MaxOutputBytesDefault = 1 << 20

// maxErrorBytes caps the message recorded for a permanently failed step.
const maxErrorBytes = 8 << 10

var (
	// ErrLeaseLost means the journal's claim token is stale, or the episode
	// is no longer running. Nothing was written; the run must stop.
	ErrLeaseLost = dbx.ErrLeaseLost
	// ErrInvalidInput means a bad argument; the message says which.
	ErrInvalidInput = dbx.ErrInvalidInput
	// ErrStepMismatch means a restarted run asked for steps in a different
	// order (or with different names) than the journal recorded. The run is
	// not deterministic; it never receives another step's output.
	ErrStepMismatch = errors.New("revenant: step does not match the journal")
	// ErrNotJSON means a step's output cannot be encoded as JSON.
	ErrNotJSON = dbx.ErrNotJSON
	// ErrTooLarge means a step's output is over MaxOutputBytes.
	ErrTooLarge = dbx.ErrTooLarge
)

// Config configures a Journal. The zero value is valid.
type Config struct {
	// MaxOutputBytes caps a step's encoded JSON output. Defaults to
	// MaxOutputBytesDefault (1 MiB).
	MaxOutputBytes int
	// TxIdleTimeout, when positive, sets idle_in_transaction_session_timeout
	// on StepTx transactions. A process paused inside a transactional step
	// (SIGSTOP, a long GC, a stuck disk) holds the locks its effect took
	// (and, after its journal write, its episode's row), which would block
	// the episode's next holder; with this timeout the server ends that
	// session and its locks with it. It costs one statement per StepTx.
	// Left 0 in the runner's Config.Journal, the runner sets it to its
	// NodeTTL, and leaves it out when the database already gives new
	// sessions an idle_in_transaction_session_timeout no longer than that
	// (set on the role, the database or in the connection string, e.g.
	// options=-c idle_in_transaction_session_timeout=5s; read when the
	// node registers): StepTx then takes 3 round trips beyond the step's
	// own statements instead of 4. A value you set is always applied.
	// Defaults to 0 (off).
	TxIdleTimeout time.Duration
	// Logger receives debug lines for replayed steps. Defaults to discarding.
	Logger *slog.Logger
}

func (c *Config) withDefaults() *Config {
	out := Config{}
	if c != nil {
		out = *c
	}
	if out.MaxOutputBytes == 0 {
		out.MaxOutputBytes = MaxOutputBytesDefault
	}
	if out.Logger == nil {
		out.Logger = dbx.DiscardLogger()
	}
	return &out
}

func (c *Config) validate() error {
	// Postgres takes the timeout in whole milliseconds, as a 32-bit
	// integer: under 1 ms would switch it off, over ~24.8 days fails.
	if c.TxIdleTimeout != 0 {
		if err := dbx.CheckDuration("journal Config.TxIdleTimeout", c.TxIdleTimeout, time.Millisecond, dbx.MaxDBTimeout, 0); err != nil {
			return err
		}
	}
	if c.MaxOutputBytes < 0 {
		return fmt.Errorf("%w: journal Config.MaxOutputBytes is %d; use a positive number or 0 for the default (%d)",
			ErrInvalidInput, c.MaxOutputBytes, MaxOutputBytesDefault)
	}
	return nil
}

type entry struct {
	seq    int
	name   string
	status string // "done" or "failed"
	output json.RawMessage
	errMsg string
}

// Journal records the steps of one claimed episode run. Steps are numbered
// in the order the run asks for them, so a run must ask for the same steps in
// the same order every time. A Journal serialises its steps; it is meant for
// one goroutine's run.
type Journal struct {
	db        *sqlx.DB
	episodeID uuid.UUID
	token     int64
	config    *Config
	st        store.Store

	mu       sync.Mutex
	attempt  Attempt
	recorded []entry // loaded at Open, appended as steps complete
	next     int     // sequence number of the next step
}

// Open loads the journal of episode id for the holder of claimToken. It
// fails with ErrLeaseLost if the episode is not running under that token.
func Open(ctx context.Context, db *sqlx.DB, id uuid.UUID, claimToken int64, config *Config) (*Journal, error) {
	if db == nil {
		return nil, fmt.Errorf("%w: journal.Open: db is nil; pass the *sqlx.DB your application opened (wrap a *sql.DB with revenant.WrapDB)", ErrInvalidInput)
	}
	if id == uuid.Nil {
		return nil, fmt.Errorf("%w: journal.Open: episode id is uuid.Nil", ErrInvalidInput)
	}
	cfg := config.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	j := &Journal{db: db, episodeID: id, token: claimToken, config: cfg, st: backend.For(db)}
	// The runner's claim read the journal with the episode; anyone else
	// reads it here.
	loaded := store.ClaimedJournal(ctx, id, claimToken)
	var err error
	if loaded == nil {
		loaded, err = j.st.StepLoad(ctx, db, id)
	}
	if errors.Is(err, dbx.ErrNotFound) {
		return nil, fmt.Errorf("opening journal of episode %s: %w", id, dbx.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("opening journal of episode %s: %w", id, dbx.Explain(err))
	}
	if loaded.Status != "running" || loaded.ClaimToken != claimToken {
		return nil, fmt.Errorf("opening journal of episode %s: %w (status %s, token %d, holder token %d)",
			id, ErrLeaseLost, loaded.Status, loaded.ClaimToken, claimToken)
	}
	j.attempt = Attempt{Attempt: loaded.Attempts, MaxAttempts: loaded.MaxAttempts}
	if loaded.ErrorClass != "" {
		j.attempt.PreviousError = &PreviousError{Class: loaded.ErrorClass, Message: decodeErrMessage(loaded.ErrorDetail)}
	}
	j.recorded = make([]entry, 0, len(loaded.Steps))
	for _, row := range loaded.Steps {
		e := entry{seq: row.Seq, name: row.Name, status: row.Status, output: row.Output}
		if e.seq != len(j.recorded) {
			return nil, fmt.Errorf("opening journal of episode %s: step %d missing before step %d", id, len(j.recorded), e.seq)
		}
		if e.status == "failed" {
			e.errMsg = decodeErrMessage(row.Error)
		}
		j.recorded = append(j.recorded, e)
	}
	return j, nil
}

// Attempt is what a run knows about its attempt. Read it with
// Journal.Attempt, or inside a step from Info(ctx).
type Attempt struct {
	// Attempt is this run's attempt number: 1 for the first, and one more
	// for each retry or crash restart (the episode's Attempts).
	Attempt int
	// MaxAttempts is the episode's bound; the run is the last attempt when
	// Attempt equals it.
	MaxAttempts int
	// PreviousError is the last error recorded on the episode by an
	// earlier attempt: the one retried, or the failure before a requeue.
	// nil on a first attempt, or when no attempt recorded one.
	PreviousError *PreviousError
}

// PreviousError is a failed attempt's error as recorded.
type PreviousError struct {
	// Class is the error class ("error", "timeout", "panic", or the
	// ErrorClass() of the actor's error).
	Class string
	// Message is the error's text.
	Message string
}

// Attempt returns what the run knows about its attempt. A nil journal
// returns the zero Attempt.
func (j *Journal) Attempt() Attempt {
	if j == nil {
		return Attempt{}
	}
	return j.attempt
}

// EpisodeID is the episode this journal records.
func (j *Journal) EpisodeID() uuid.UUID {
	if j == nil {
		return uuid.Nil
	}
	return j.episodeID
}

// ClaimToken is the fencing token this journal writes with.
func (j *Journal) ClaimToken() int64 {
	if j == nil {
		return 0
	}
	return j.token
}

// Recorded is the number of steps the journal held when it was opened plus
// those recorded since.
func (j *Journal) Recorded() int {
	if j == nil {
		return 0
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	return len(j.recorded)
}

// StepInfo describes the step being run; fn gets it with Info(ctx).
type StepInfo struct {
	EpisodeID uuid.UUID
	Seq       int
	Name      string
	// IdempotencyKey is stable across restarts of the episode: pass it to
	// external APIs (payment providers, mailers) so a step that ran but was
	// not recorded before a crash does not act twice.
	IdempotencyKey string
	// Attempt is the run's attempt (the same as Journal.Attempt).
	Attempt Attempt
}

type infoKey struct{}

// Info returns the running step's StepInfo from the context fn receives.
func Info(ctx context.Context) (StepInfo, bool) {
	si, ok := ctx.Value(infoKey{}).(StepInfo)
	return si, ok
}

// IdempotencyKey is the stable key of step seq named name of episode id.
func IdempotencyKey(id uuid.UUID, seq int, name string) string {
	return fmt.Sprintf("revenant:%s:%d:%s", id, seq, name)
}

// PermanentError marks a step error as final: it is recorded, and a
// restarted run gets the same error back instead of running the step again.
// Other errors are not recorded, so a restart retries the step.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent wraps err as a PermanentError.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &PermanentError{Err: err}
}

// RecordedError is what a replayed permanently failed step returns.
type RecordedError struct {
	Step    string
	Message string
}

func (e *RecordedError) Error() string {
	return fmt.Sprintf("step %q failed permanently in an earlier run: %s", e.Step, e.Message)
}

func decodeErrMessage(b []byte) string {
	var v struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(b, &v) != nil {
		return string(b)
	}
	return v.Message
}

// begin reserves the next sequence number for name and returns the
// recorded entry if the step already completed in an earlier run.
func (j *Journal) begin(name string) (int, *entry, error) {
	// Checked before the step runs: a name the journal cannot record would
	// let the effect happen and then fail on every restart.
	if err := dbx.CheckName("step name", name, true); err != nil {
		return 0, nil, err
	}
	seq := j.next
	if seq < len(j.recorded) {
		e := &j.recorded[seq]
		if e.name != name {
			return 0, nil, fmt.Errorf("%w: episode %s step %d is recorded as %q but the run asked for %q",
				ErrStepMismatch, j.episodeID, seq, e.name, name)
		}
		j.next++
		return seq, e, nil
	}
	return seq, nil, nil
}

func (j *Journal) info(seq int, name string) StepInfo {
	return StepInfo{EpisodeID: j.episodeID, Seq: seq, Name: name, IdempotencyKey: IdempotencyKey(j.episodeID, seq, name), Attempt: j.attempt}
}

// replay turns a recorded entry into the step's result.
func replay[T any](e *entry) (T, error) {
	var out T
	if e.status == "failed" {
		return out, &RecordedError{Step: e.name, Message: e.errMsg}
	}
	if len(e.output) > 0 {
		if err := json.Unmarshal(e.output, &out); err != nil {
			return out, fmt.Errorf("step %q: decoding recorded output into %T: %w", e.name, out, err)
		}
	}
	return out, nil
}

// encodeOutput checks the output can be recorded before anything is written.
func (j *Journal) encodeOutput(name string, v any) (any, error) {
	enc, err := dbx.EncodeJSON(v, j.config.MaxOutputBytes)
	if err != nil {
		return nil, fmt.Errorf("step %q output: %w", name, err)
	}
	return enc, nil
}

// Step runs fn as the step called name, unless an earlier run of this
// episode already completed it, in which case the recorded output is decoded
// into T and fn is not called. fn's output is recorded as JSON together with
// a bump of the episode's last-activity time (at most once a second), in one
// statement fenced by the claim token. Side effects outside the database are at-least-once: use
// StepInfo.IdempotencyKey with external APIs, or StepTx for same-database
// effects.
func Step[T any](ctx context.Context, j *Journal, name string, fn func(ctx context.Context) (T, error)) (T, error) {
	return step(ctx, j, name, fn == nil, func(sctx context.Context, seq int, start time.Time) (T, any, error) {
		var zero T
		out, err := fn(sctx)
		if err != nil {
			return zero, nil, j.recordFailure(ctx, seq, name, start, err)
		}
		enc, err := j.encodeOutput(name, out)
		if err != nil {
			return zero, nil, err
		}
		if err := j.insert(ctx, j.db, seq, name, enc, time.Since(start)); err != nil {
			return zero, nil, err
		}
		return out, enc, nil
	})
}

// StepTx runs fn inside a transaction that also records the step, so a
// same-database side effect and its journal entry commit or roll back
// together: such effects happen exactly once. The claim token is checked
// by the journal write after fn, in the same transaction: a holder whose
// lease was lost meanwhile (a zombie) gets ErrLeaseLost and its effect is
// rolled back. fn must not commit or roll back tx.
func StepTx[T any](ctx context.Context, j *Journal, name string, fn func(ctx context.Context, tx *sqlx.Tx) (T, error)) (T, error) {
	return step(ctx, j, name, fn == nil, func(sctx context.Context, seq int, start time.Time) (T, any, error) {
		var zero T
		tx, err := j.db.BeginTxx(ctx, nil)
		if err != nil {
			return zero, nil, fmt.Errorf("step %q: beginning transaction: %w", name, err)
		}
		defer func() { _ = tx.Rollback() }()
		// No fence before fn: the journal write after it is fenced (under
		// the episode's row lock, just before COMMIT), so a zombie's effect
		// rolls back with its refused entry. The idle timeout comes first:
		// a holder paused inside fn (SIGSTOP) must not keep the locks its
		// effect took, which would block the episode's next holder.
		if err := j.st.StepTxPrepare(ctx, tx, j.config.TxIdleTimeout.Milliseconds()); err != nil {
			return zero, nil, fmt.Errorf("step %q: %w", name, err)
		}
		out, err := fn(sctx, tx)
		if err != nil {
			_ = tx.Rollback()
			return zero, nil, j.recordFailure(ctx, seq, name, start, err)
		}
		enc, err := j.encodeOutput(name, out)
		if err != nil {
			return zero, nil, err
		}
		if err := j.insert(ctx, tx, seq, name, enc, time.Since(start)); err != nil {
			return zero, nil, err
		}
		if err := tx.Commit(); err != nil {
			return zero, nil, fmt.Errorf("step %q: commit (effect and record are both unknown; the episode will replay from the journal): %w", name, err)
		}
		return out, enc, nil
	})
}

// step holds what Step and StepTx share: argument checks, serialisation,
// replay of a recorded step, and bookkeeping once run records the step.
// run returns the step's output and its encoded JSON.
func step[T any](ctx context.Context, j *Journal, name string, fnNil bool,
	run func(sctx context.Context, seq int, start time.Time) (T, any, error)) (T, error) {
	var zero T
	if j == nil {
		return zero, fmt.Errorf("%w: step %q: the *Journal is nil; use the one the runner hands the actor (or journal.Open)", ErrInvalidInput, name)
	}
	if fnNil {
		return zero, fmt.Errorf("%w: step %q: fn is nil", ErrInvalidInput, name)
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	seq, rec, err := j.begin(name)
	if err != nil {
		return zero, err
	}
	if rec != nil {
		return replay[T](rec)
	}
	out, enc, err := run(context.WithValue(ctx, infoKey{}, j.info(seq, name)), seq, time.Now())
	if err != nil {
		return zero, err
	}
	j.recorded = append(j.recorded, entry{seq: seq, name: name, status: "done", output: rawOf(enc)})
	j.next++
	crashpoint.Fire(ctx, crashpoint.AfterRecord, seq, name)
	return out, nil
}

func rawOf(enc any) json.RawMessage {
	if s, ok := enc.(string); ok {
		return json.RawMessage(s)
	}
	return nil
}

// recordFailure records a PermanentError as a failed step; other errors are
// returned as they are and leave no trace, so a restart runs the step again.
func (j *Journal) recordFailure(ctx context.Context, seq int, name string, start time.Time, stepErr error) error {
	var perm *PermanentError
	if !errors.As(stepErr, &perm) {
		return stepErr
	}
	// The actor's message is stored as it can be: a NUL or invalid UTF-8
	// in it must not make the failure unrecordable.
	text := dbx.CleanText(stepErr.Error(), maxErrorBytes)
	msg, _ := json.Marshal(map[string]string{"message": text})
	if err := j.insertRow(ctx, j.db, seq, name, "failed", nil, string(msg), time.Since(start)); err != nil {
		return errors.Join(stepErr, err)
	}
	j.recorded = append(j.recorded, entry{seq: seq, name: name, status: "failed", errMsg: text})
	j.next++
	return stepErr
}

func (j *Journal) insert(ctx context.Context, ex dbx.Executor, seq int, name string, output any, took time.Duration) error {
	// A test's crash point: the effect is done, its entry not yet written.
	crashpoint.Fire(ctx, crashpoint.BeforeRecord, seq, name)
	return j.insertRow(ctx, ex, seq, name, "done", output, nil, took)
}

func (j *Journal) insertRow(ctx context.Context, ex dbx.Executor, seq int, name, status string, output, errJSON any, took time.Duration) error {
	return j.record(ctx, ex, &store.StepRecordParams{EpisodeID: j.episodeID, ClaimToken: j.token,
		Seq: seq, Name: name, Status: status, Output: output, Error: errJSON, Took: took})
}

func (j *Journal) record(ctx context.Context, ex dbx.Executor, p *store.StepRecordParams) error {
	name, seq := p.Name, p.Seq
	outcome, err := j.st.StepRecord(ctx, ex, p)
	if err != nil {
		return fmt.Errorf("step %q: recording in journal of episode %s: %w", name, j.episodeID, dbx.Explain(err))
	}
	switch outcome {
	case store.StepRecorded:
		return nil
	case store.StepFenced:
		return j.leaseLost(ctx, ex, name)
	default:
		// Same token, same slot: another goroutine of this holder wrote it.
		return fmt.Errorf("step %q of episode %s: %w: sequence %d is already recorded", name, j.episodeID, ErrStepMismatch, seq)
	}
}

func (j *Journal) leaseLost(ctx context.Context, ex dbx.Executor, name string) error {
	status, token, err := j.st.EpisodeState(ctx, ex, j.episodeID)
	if errors.Is(err, dbx.ErrNotFound) {
		return fmt.Errorf("step %q of episode %s: %w (the episode no longer exists)", name, j.episodeID, ErrLeaseLost)
	}
	if err != nil {
		return fmt.Errorf("step %q of episode %s: the write was fenced off but reading why failed: %w", name, j.episodeID, dbx.Explain(err))
	}
	return fmt.Errorf("step %q of episode %s: %w (status %s, token %d, holder token %d)",
		name, j.episodeID, ErrLeaseLost, status, token, j.token)
}
