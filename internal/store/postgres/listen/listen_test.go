package listen

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lib/pq"
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
	// A quoted password with spaces is found whole (and the letters it
	// shares with the message survive).
	l = &Listener{secrets: secretsOf(`host=h password='correct horse' user=u`)}
	require.Equal(t, "pq: xxxxx rejected", l.scrub("pq: correct horse rejected"))
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

// silentServer accepts connections and never answers, like a firewall or a
// service that is not Postgres: without a connect timeout lib/pq waits on
// it forever.
type silentServer struct {
	addr           string
	accepted, gone atomic.Int64
}

func newSilentServer(t *testing.T) *silentServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := &silentServer{addr: ln.Addr().String()}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.accepted.Add(1)
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			go func() {
				_, _ = io.Copy(io.Discard, c) // until the client hangs up
				s.gone.Add(1)
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return s
}

// A server that accepts and never answers neither holds Start (even with a
// ctx that never ends) nor keeps the attempt open forever: it fails after
// ConnectTimeout, with one warning, and is retried.
func TestSilentServerNeitherBlocksStartNorHangsForever(t *testing.T) {
	t.Parallel()
	srv := newSilentServer(t)
	logs, logger := testdb.NewLogs()
	const password = "s1lentPW"
	returned := make(chan *Listener, 1)
	go func() {
		returned <- Start(context.Background(), Config{DSN: "postgres://u:" + password + "@" + srv.addr + "/db?sslmode=disable",
			Channels: []string{"c"}, Owner: "test", Logger: logger, ConnectTimeout: time.Second})
	}()
	var l *Listener
	select {
	case l = <-returned:
	case <-time.After(5 * time.Second):
		t.Fatal("Start is still waiting on a server that never answers")
	}
	require.False(t, l.Listening())
	// The attempt is abandoned and retried rather than held forever.
	require.Eventually(t, func() bool { return srv.gone.Load() >= 1 && srv.accepted.Load() >= 2 }, 10*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool { return logs.Count("LISTEN connection unavailable") == 1 }, 5*time.Second, 10*time.Millisecond)
	began := time.Now()
	l.Close()
	require.Less(t, time.Since(began), 100*time.Millisecond)
	// Closing mid-attempt still lets lib/pq's goroutine end: the attempt
	// under way is hung up within ConnectTimeout.
	require.Eventually(t, func() bool { return srv.gone.Load() == srv.accepted.Load() }, 5*time.Second, 10*time.Millisecond)
	require.NotContains(t, logs.String(), password)
}

// When LISTEN comes up after a failed start (Postgres down at boot, then
// back), the caller is told to catch up and the outage's end is logged;
// every later outage is reported once and ends the same way.
func TestListenEstablishedLaterTellsTheCallerToCatchUp(t *testing.T) {
	t.Parallel()
	s := testdb.New(t, nil)
	proxy := testdb.NewProxy(t)
	proxy.Cut()
	logs, logger := testdb.NewLogs()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	l := Start(ctx, Config{DSN: proxy.DSN(s.DSN), Channels: []string{"rv_notify_test"}, Owner: "test", Logger: logger})
	defer l.Close()
	require.False(t, l.Listening())
	var mu sync.Mutex
	var wakes, notes int
	go func() {
		for n := range l.Notifications() {
			mu.Lock()
			if n == nil {
				wakes++
			} else if n.Payload == "hello" {
				notes++
			}
			mu.Unlock()
		}
	}()
	count := func() (int, int) { mu.Lock(); defer mu.Unlock(); return wakes, notes }

	proxy.Restore()
	require.Eventually(t, l.Listening, 15*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool { w, _ := count(); return w == 1 }, 5*time.Second, 10*time.Millisecond,
		"a catch-up wake-up once LISTEN is first established")
	_, err := s.DB.Exec(`SELECT pg_notify('rv_notify_test', 'hello')`)
	require.NoError(t, err)
	require.Eventually(t, func() bool { _, n := count(); return n == 1 }, 5*time.Second, 10*time.Millisecond)

	proxy.Drop() // a blip: lib/pq reconnects and sends its own wake-up
	require.Eventually(t, func() bool { w, _ := count(); return w == 2 && l.Listening() }, 15*time.Second, 10*time.Millisecond)
	require.Equal(t, 2, logs.Count("LISTEN connection unavailable"), logs.String())
	require.Equal(t, 2, logs.Count("LISTEN connection established"), logs.String())
}

func TestWithConnectTimeout(t *testing.T) {
	t.Parallel()
	for dsn, want := range map[string]time.Duration{
		"postgres://u:p%25w@h:5432/db?sslmode=disable":       5 * time.Second,
		"postgres://u@h/db?connect_timeout=30":               30 * time.Second,
		"host=h user=u dbname=db":                            5 * time.Second,
		"host=h connect_timeout=2":                           2 * time.Second,
		"host=h password=":                                   5 * time.Second,
		"host=h password='a b' dbname=db":                    5 * time.Second,
		"postgresql://u:pw@[::1]:5432/db?application_name=x": 5 * time.Second,
	} {
		before, err := pq.NewConfig(dsn)
		require.NoError(t, err, dsn)
		got := withConnectTimeout(dsn, 4500*time.Millisecond)
		after, err := pq.NewConfig(got)
		require.NoError(t, err, dsn)
		require.Equal(t, want, after.ConnectTimeout, dsn)
		pick := func(c pq.Config) []any {
			return []any{c.Host, c.Port, c.Database, c.User, c.Password, c.SSLMode, c.ApplicationName}
		}
		require.Equal(t, pick(before), pick(after), "nothing else changes: %s", dsn)
	}
}
