package dbx_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

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
