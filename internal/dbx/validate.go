package dbx

import (
	"database/sql"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
)

// ErrInvalidInput is revenant.ErrInvalidInput (declared here so that this
// package's checks can wrap it).
var ErrInvalidInput = errors.New("revenant: invalid input")

// ErrNilDB is returned for a nil database handle. It matches
// ErrInvalidInput; packages migrations and recovery re-export it.
var ErrNilDB = fmt.Errorf("%w: db is nil; pass the *sqlx.DB your application opened (wrap a *sql.DB with revenant.WrapDB)", ErrInvalidInput)

// Limits on what revenant stores, the same on every backend. They are
// checked in Go before any statement runs, so both backends refuse the same
// values with the same error.
const (
	// MaxNameBytes bounds identifiers: actor ids, step names, workflow and
	// step ids, expectations, stacks, envs, node names, error classes,
	// phases.
	MaxNameBytes = 256
	// MaxKeyBytes bounds dedupe keys and workflow subjects (they are
	// indexed, with the actor and scope, in one btree entry).
	MaxKeyBytes = 1024
	// MaxJSONDepth bounds the nesting of JSON values (SQLite refuses more
	// than 1000 levels; Postgres runs out of stack well before 10k).
	MaxJSONDepth = 512
	// MaxMaxAttempts bounds MaxAttempts settings.
	MaxMaxAttempts = 1_000_000
)

// CheckText refuses text PostgreSQL cannot store or revenant will not
// index: invalid UTF-8, NUL bytes, or more than maxBytes bytes. Empty text
// passes; callers check required fields themselves. field names the
// setting in the message, e.g. "CreateParams.ActorID".
func CheckText(field, s string, maxBytes int) error {
	switch {
	case len(s) > maxBytes:
		return fmt.Errorf("%w: %s is %d bytes; at most %d are allowed", ErrInvalidInput, field, len(s), maxBytes)
	case !utf8.ValidString(s):
		return fmt.Errorf("%w: %s is not valid UTF-8", ErrInvalidInput, field)
	case strings.IndexByte(s, 0) >= 0:
		return fmt.Errorf("%w: %s contains a NUL byte (\\x00), which PostgreSQL cannot store", ErrInvalidInput, field)
	}
	return nil
}

// CheckName is CheckText with MaxNameBytes, also refusing empty names when
// required.
func CheckName(field, s string, required bool) error {
	if required && s == "" {
		return fmt.Errorf("%w: %s is required", ErrInvalidInput, field)
	}
	return CheckText(field, s, MaxNameBytes)
}

// CleanText makes text from outside revenant (an actor's error message, a
// panic value) storable: invalid UTF-8 and NUL bytes become U+FFFD, and
// text over maxBytes is cut at a rune boundary and marked. A finishing
// write must never fail on what the actor said.
func CleanText(s string, maxBytes int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.ReplaceAll(s, "\x00", "\uFFFD")
	if len(s) <= maxBytes {
		return s
	}
	const mark = "…(truncated)"
	cut := max(maxBytes-len(mark), 0)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}

// CheckDuration refuses a setting outside [lo, hi] (after defaults were
// applied), saying how to fix it. def is the default, for the message.
func CheckDuration(field string, d, lo, hi, def time.Duration) error {
	if d < lo || d > hi {
		return fmt.Errorf("%w: %s is %s; use a duration from %s to %s, or 0 for the default (%s)", ErrInvalidInput, field, d, lo, hi, def)
	}
	return nil
}

// MaxDBTimeout is the longest duration Postgres accepts for millisecond
// settings such as statement_timeout (a 32-bit integer): about 24.8 days.
const MaxDBTimeout = time.Duration(1<<31-1) * time.Millisecond

// IsNil reports whether v is nil or a nil pointer (or other nil-able kind)
// inside an interface, such as a (*sql.Tx)(nil) passed as an Executor.
func IsNil(v any) bool {
	if v == nil {
		return true
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Pointer, reflect.Interface, reflect.Map, reflect.Slice, reflect.Func, reflect.Chan:
		return rv.IsNil()
	}
	return false
}

// CheckExecutor refuses a nil transaction or handle passed to a …Tx
// method.
func CheckExecutor(method string, ex Executor) error {
	if IsNil(ex) {
		return fmt.Errorf("%w: %s: tx is nil; pass the *sql.Tx or *sqlx.Tx to write in (or use the method without Tx)", ErrInvalidInput, method)
	}
	return nil
}

// checkJSON refuses JSON both backends cannot store alike: invalid UTF-8,
// nesting deeper than MaxJSONDepth, and the \u0000 escape (Postgres's
// jsonb refuses it, SQLite stores it). b must already be valid JSON.
func checkJSON(b []byte) error {
	if !utf8.Valid(b) {
		return fmt.Errorf("%w: not valid UTF-8", ErrNotJSON)
	}
	depth := 0
	inString := false
	for i := 0; i < len(b); i++ {
		c := b[i]
		if inString {
			switch c {
			case '\\':
				if i+5 < len(b) && b[i+1] == 'u' && string(b[i+2:i+6]) == "0000" {
					return fmt.Errorf("%w: a string holds \\u0000, which PostgreSQL cannot store", ErrNotJSON)
				}
				i++ // skip the escaped byte
			case '"':
				inString = false
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case '{', '[':
			depth++
			if depth > MaxJSONDepth {
				return fmt.Errorf("%w: nested deeper than %d levels", ErrNotJSON, MaxJSONDepth)
			}
		case '}', ']':
			depth--
		}
	}
	return nil
}

// IsScanError reports an error database/sql raised converting a column
// value (the row holds something this version cannot read), as opposed to
// an error of the query or the connection.
func IsScanError(err error) bool {
	return err != nil && strings.Contains(err.Error(), "sql: Scan error on column")
}

// RowUUID reads the id (first column) of the current row again, when the row
// as a whole could not be scanned; uuid.Nil if the id is unreadable too.
func RowUUID(rows *sql.Rows) uuid.UUID {
	cols, err := rows.Columns()
	if err != nil || len(cols) == 0 {
		return uuid.Nil
	}
	dest := make([]any, len(cols))
	var raw any
	dest[0] = &raw
	for i := 1; i < len(dest); i++ {
		dest[i] = new(any)
	}
	if rows.Scan(dest...) != nil {
		return uuid.Nil
	}
	switch v := raw.(type) {
	case []byte:
		if len(v) == 16 {
			id, _ := uuid.FromBytes(v)
			return id
		}
		id, _ := uuid.ParseBytes(v)
		return id
	case string:
		id, _ := uuid.Parse(v)
		return id
	case [16]byte:
		return uuid.UUID(v)
	}
	return uuid.Nil
}

// ErrIllegalTransition means the episode's status does not allow the requested
// move (revenant re-exports it).
var ErrIllegalTransition = errors.New("revenant: illegal status transition")

// ErrLeaseLost means the caller's claim token is no longer the episode's
// current one (revenant re-exports it).
var ErrLeaseLost = errors.New("revenant: lease lost (stale claim token)")

// ErrUnknownActor means an episode names an actor that no live node in its
// scope has registered and that has no definition (revenant re-exports
// it).
var ErrUnknownActor = errors.New("revenant: unknown actor")
