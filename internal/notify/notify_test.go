package notify

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant/internal/dbx"
	"github.com/revenant-go/revenant/internal/testdb"
)

func TestCheckDSN(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{
		"postgres://u:p%25w@127.0.0.1:5432/db?sslmode=disable",
		"host=127.0.0.1 user=u password=secret dbname=db",
	} {
		require.NoError(t, CheckDSN("f", ok), ok)
	}
	for _, bad := range []string{"postgres://u:pa%ss@h/db", "host=h password"} {
		err := CheckDSN("f", bad)
		require.True(t, errors.Is(err, dbx.ErrInvalidInput), bad)
		require.NotContains(t, err.Error(), "pa%ss")
		require.NotContains(t, err.Error(), bad)
	}
}

func TestScrubRemovesDSNAndPassword(t *testing.T) {
	t.Parallel()
	l := &Listener{secrets: secretsOf("postgres://u:p%40ss@h/db")}
	require.Equal(t, "auth failed for xxxxx and xxxxx", l.scrub("auth failed for p@ss and p%40ss"))
	l = &Listener{secrets: secretsOf("host=h password=hunter2 user=u")}
	require.NotContains(t, l.scrub("pq: password hunter2 rejected"), "hunter2")
}

// Start returns once the first attempt fails; Close returns at once; one
// warning per outage.
func TestStartAndCloseNeverBlock(t *testing.T) {
	t.Parallel()
	down := testdb.NewRefuser(t)
	logs, logger := testdb.NewLogs()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	began := time.Now()
	l := Start(ctx, Config{DSN: "postgres://u:pw@" + down.Addr + "/db", Channels: []string{"c"}, Owner: "test", Logger: logger})
	require.Less(t, time.Since(began), 2*time.Second)
	require.False(t, l.Listening())
	require.Eventually(t, func() bool { return down.Attempts() >= 3 }, 20*time.Second, 10*time.Millisecond)
	began = time.Now()
	l.Close()
	l.Close()
	require.Less(t, time.Since(began), 100*time.Millisecond)
	require.Equal(t, 1, strings.Count(logs.String(), "LISTEN connection unavailable"))
}
