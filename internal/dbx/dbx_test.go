package dbx_test

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/lib/pq"
	"github.com/lib/pq/pqerror"
	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant/internal/dbx"
)

func TestIsRetryable(t *testing.T) {
	t.Parallel()
	cases := map[string]bool{
		"08006": true, "08001": true, "57P01": true, "57P02": true, "57P03": true,
		"40001": true, "40P01": true, "23505": false, "42P01": false, "22P02": false,
	}
	for code, want := range cases {
		libpq := fmt.Errorf("wrapped: %w", &pq.Error{Code: pqerror.Code(code)})
		require.Equal(t, want, dbx.IsRetryable(libpq), "lib/pq %s", code)
		pgx := fmt.Errorf("wrapped: %w", &pgconn.PgError{Code: code})
		require.Equal(t, want, dbx.IsRetryable(pgx), "pgx %s", code)
	}
	require.False(t, dbx.IsRetryable(nil))
	require.False(t, dbx.IsRetryable(context.Canceled))
	require.False(t, dbx.IsRetryable(fmt.Errorf("x: %w", context.DeadlineExceeded)))
	require.True(t, dbx.IsUniqueViolation(&pq.Error{Code: "23505"}))
}

func TestEncodeJSON(t *testing.T) {
	t.Parallel()
	v, err := dbx.EncodeJSON(nil, 0)
	require.NoError(t, err)
	require.Nil(t, v)
	v, err = dbx.EncodeJSON(json.RawMessage(nil), 0)
	require.NoError(t, err)
	require.Nil(t, v)
	v, err = dbx.EncodeJSON(map[string]int{"a": 1}, 0)
	require.NoError(t, err)
	require.Equal(t, `{"a":1}`, v)
	v, err = dbx.EncodeJSON([]byte(`[1,2]`), 0)
	require.NoError(t, err)
	require.Equal(t, `[1,2]`, v)
	_, err = dbx.EncodeJSON([]byte(`[1,`), 0)
	require.ErrorIs(t, err, dbx.ErrNotJSON)
	_, err = dbx.EncodeJSON(func() {}, 0)
	require.ErrorIs(t, err, dbx.ErrNotJSON)
	_, err = dbx.EncodeJSON("abcdef", 4)
	require.ErrorIs(t, err, dbx.ErrTooLarge)
}

// What drivers return when Postgres goes away is retryable (the runner
// hands such episodes back instead of failing them).
func TestIsRetryableConnectionLoss(t *testing.T) {
	t.Parallel()
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: &os.SyscallError{Syscall: "connect", Err: syscall.ECONNREFUSED}}
	for name, err := range map[string]error{
		"driver.ErrBadConn":   driver.ErrBadConn,
		"io.EOF":              fmt.Errorf("read: %w", io.EOF),
		"unexpected EOF":      io.ErrUnexpectedEOF,
		"connection refused":  refused,
		"connection reset":    syscall.ECONNRESET,
		"sql.ErrConnDone":     sql.ErrConnDone,
		"pgconn conn closed":  fmt.Errorf("x: %w", safeToRetry{}),
		"too many clients":    &pgconn.PgError{Code: "53300"},
		"admin shutdown (pq)": &pq.Error{Code: "57P01"},
	} {
		require.True(t, dbx.IsRetryable(err), name)
	}
	for name, err := range map[string]error{
		"canceled":            context.Canceled,
		"server answered":     &pgconn.PgError{Code: "23505"},
		"statement timeout":   &pgconn.PgError{Code: "57014"},
		"plain error":         errors.New("boom"),
		"not safe (pgconn)":   notSafe{},
		"deadline on the way": fmt.Errorf("%w: %w", context.DeadlineExceeded, io.EOF),
	} {
		require.False(t, dbx.IsRetryable(err), name)
	}
}

type safeToRetry struct{}

func (safeToRetry) Error() string     { return "conn closed" }
func (safeToRetry) SafeToRetry() bool { return true }

type notSafe struct{}

func (notSafe) Error() string     { return "query failed" }
func (notSafe) SafeToRetry() bool { return false }

func TestCheckTextAndCleanText(t *testing.T) {
	t.Parallel()
	require.NoError(t, dbx.CheckText("f", "héllo", 10))
	require.ErrorIs(t, dbx.CheckText("f", "a\x00", 10), dbx.ErrInvalidInput)
	require.ErrorIs(t, dbx.CheckText("f", "\xff", 10), dbx.ErrInvalidInput)
	require.ErrorIs(t, dbx.CheckText("f", "abcdefghijk", 10), dbx.ErrInvalidInput)
	require.Equal(t, "a\uFFFDb\uFFFD", dbx.CleanText("a\x00b\xff", 100))
	cut := dbx.CleanText(strings.Repeat("é", 100), 50)
	require.LessOrEqual(t, len(cut), 50)
	require.True(t, utf8.ValidString(cut))
	require.True(t, strings.HasSuffix(cut, "(truncated)"))
}

func TestEncodeJSONRefusesWhatABackendCannotStore(t *testing.T) {
	t.Parallel()
	for name, v := range map[string]any{
		"NUL escape":   map[string]string{"k": "a\x00"},
		"raw NUL":      json.RawMessage(`"a\u0000"`),
		"invalid utf8": json.RawMessage("\"\xff\""),
		"too deep":     json.RawMessage(strings.Repeat("[", dbx.MaxJSONDepth+1) + strings.Repeat("]", dbx.MaxJSONDepth+1)),
	} {
		_, err := dbx.EncodeJSON(v, 0)
		require.ErrorIs(t, err, dbx.ErrNotJSON, name)
	}
	for name, v := range map[string]any{
		"escaped backslash": json.RawMessage(`"a\\u0000"`),
		"deep enough":       json.RawMessage(strings.Repeat("[", dbx.MaxJSONDepth) + strings.Repeat("]", dbx.MaxJSONDepth)),
		"brackets in text":  map[string]string{"k": strings.Repeat("[", 2000)},
	} {
		_, err := dbx.EncodeJSON(v, 0)
		require.NoError(t, err, name)
	}
	_, err := dbx.EncodeJSON(json.RawMessage(`{"secret":"hunter2"`), 0)
	require.NotContains(t, err.Error(), "hunter2", "errors never quote payloads")
}
