package ops_test

import (
	"context"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant"
	"github.com/revenant-go/revenant/internal/testdb"
	"github.com/revenant-go/revenant/ops"
)

// /readyz follows a real loss of the database: a started node whose pool
// goes through a proxy is ready, goes unready (503, with the reason) when
// the proxy cuts every connection, and ready again once it is restored;
// /healthz answers 200 throughout.
func TestReadyzFollowsTheDatabase(t *testing.T) {
	t.Parallel()
	s := testdb.New(t, nil)
	proxy := testdb.NewProxy(t)
	db, err := sqlx.Open("postgres", proxy.DSN(s.DSN))
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	c, err := revenant.New(db, &revenant.Config{Name: "probed", SkipMigrate: true,
		HeartbeatInterval: 200 * time.Millisecond, NodeTTL: 3 * time.Second, PollInterval: 200 * time.Millisecond})
	require.NoError(t, err)
	require.NoError(t, c.Start(context.Background()))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = c.StopAndCancel(ctx)
	})
	srv, cl := server(t, newHandler(t, c, &ops.Config{ReadyTimeout: time.Second}), "")
	probe := func(path string) (int, string) {
		resp, err := cl.Get(srv.URL + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return resp.StatusCode, string(b)
	}
	waitFor := func(want int) string {
		t.Helper()
		var mu sync.Mutex // the condition runs on goroutines of its own
		var last string
		ok := assert.Eventually(t, func() bool {
			status, body := probe("/readyz")
			mu.Lock()
			defer mu.Unlock()
			last = body
			return status == want
		}, 30*time.Second, 50*time.Millisecond)
		mu.Lock()
		defer mu.Unlock()
		if !ok {
			t.Fatalf("readyz never answered %d; last: %s", want, last)
		}
		return last
	}

	require.Equal(t, "ready\n", waitFor(http.StatusOK))
	proxy.Cut()
	body := waitFor(http.StatusServiceUnavailable)
	t.Logf("while cut: %s", body)
	require.Contains(t, body, "not ready")
	require.Contains(t, body, "database unreachable")
	require.NotContains(t, body, "postgres://", "no DSN")
	require.NotContains(t, body, s.Name, "no DSN")
	status, _ := probe("/healthz")
	require.Equal(t, http.StatusOK, status, "liveness does not depend on the database")
	for _, p := range []string{"/", "/recovery", "/episodes", "/dead-letters", "/workflows"} {
		status, body := get(t, cl, srv.URL+p)
		require.GreaterOrEqual(t, status, 500, "%s without a database", p)
		require.Contains(t, body, `class="errorbox"`, "%s says why on the page", p)
		require.NotContains(t, body, "postgres://", "no DSN")
	}
	proxy.Restore()
	require.Equal(t, "ready\n", waitFor(http.StatusOK))
}
