package bus_test

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant"
	"github.com/revenant-go/revenant/bus"
	"github.com/revenant-go/revenant/internal/testdb"
	"github.com/revenant-go/revenant/migrations"
)

// Closing in-process buses ends their goroutines; Publish after Close is
// an error.
func TestInProcessCloseStopsItsGoroutine(t *testing.T) {
	// Not parallel: it counts the process's goroutines.
	before := runtime.NumGoroutine()
	for range 50 {
		b := bus.NewInProcess(nil)
		got := make(chan struct{}, 1)
		b.Subscribe("", func(context.Context, bus.Event) error { got <- struct{}{}; return nil })
		require.NoError(t, b.Publish(context.Background(), bus.Event{Type: bus.EpisodeStarted}))
		<-got
		b.Close()
		b.Close()
		require.ErrorIs(t, b.Publish(context.Background(), bus.Event{Type: bus.EpisodeStarted}), revenant.ErrInvalidInput)
	}
	require.Eventually(t, func() bool { return runtime.NumGoroutine() <= before+2 }, 5*time.Second, 10*time.Millisecond,
		"goroutines: %d before, %d after", before, runtime.NumGoroutine())
}

// A failed Start (database not ready) holds nothing, Stop returns at once,
// and Start works once the database is ready.
func TestOutboxStartFailureHoldsNothing(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		s := testdb.New(t, &testdb.Options{Driver: driver, NoMigrate: true})
		ctx := context.Background()
		b, err := bus.NewOutbox(s.DB, &bus.OutboxConfig{PollInterval: 20 * time.Millisecond})
		require.NoError(t, err)
		c := &collector{}
		b.Subscribe("", c.handle)
		err = b.Start(ctx)
		require.ErrorIs(t, err, revenant.ErrNotMigrated)
		require.Contains(t, err.Error(), "migrations.Migrate")
		_, err = migrations.Migrate(ctx, s.DB)
		require.NoError(t, err)
		require.NoError(t, b.Start(ctx))
		defer func() { _ = b.Stop(context.Background()) }()
		ev := bus.Event{ID: uuid.New(), Type: bus.EpisodeStarted}
		require.NoError(t, b.Publish(ctx, ev))
		require.Eventually(t, func() bool { return c.ids()[ev.ID] == 1 }, 5*time.Second, 10*time.Millisecond)

		never, err := bus.NewOutbox(s.DB, nil)
		require.NoError(t, err)
		began := time.Now()
		_ = never.Stop(context.Background())
		require.Less(t, time.Since(began), time.Second, "Stop without Start returns at once")
	})
}

// Postgres down at boot: Start fails with a retryable error, and succeeds
// once it is back.
func TestOutboxStartWithPostgresDown(t *testing.T) {
	t.Parallel()
	s := testdb.New(t, nil)
	proxy := testdb.NewProxy(t)
	db, err := sqlx.Open("postgres", proxy.DSN(s.DSN))
	require.NoError(t, err)
	defer db.Close()
	proxy.Cut()
	b, err := bus.NewOutbox(db, &bus.OutboxConfig{PollInterval: 20 * time.Millisecond})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = b.Start(ctx)
	require.True(t, revenant.IsRetryable(err), "%v", err)
	_ = b.Stop(context.Background())
	proxy.Restore()
	b, err = bus.NewOutbox(db, &bus.OutboxConfig{PollInterval: 20 * time.Millisecond})
	require.NoError(t, err)
	require.NoError(t, b.Start(ctx))
	_ = b.Stop(context.Background())
}

// An unreachable ListenDSN neither blocks Start nor stops delivery: the bus
// polls, logs one warning however many reconnects fail, and never logs the
// password.
func TestUnreachableListenDSNFallsBackToPolling(t *testing.T) {
	t.Parallel()
	s := testdb.New(t, nil)
	down := testdb.NewRefuser(t)
	logs, logger := testdb.NewLogs()
	const password = "s3cretPW"
	b, err := bus.NewOutbox(s.DB, &bus.OutboxConfig{ListenDSN: fmt.Sprintf("postgres://rv:%s@%s/test?sslmode=disable", password, down.Addr),
		PollInterval: 20 * time.Millisecond, Logger: logger})
	require.NoError(t, err)
	c := &collector{}
	b.Subscribe("", c.handle)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	began := time.Now()
	require.NoError(t, b.Start(ctx))
	require.Less(t, time.Since(began), 2*time.Second)
	ev := bus.Event{ID: uuid.New(), Type: bus.EpisodeStarted}
	require.NoError(t, b.Publish(ctx, ev))
	require.Eventually(t, func() bool { return c.ids()[ev.ID] == 1 }, 5*time.Second, 10*time.Millisecond, "delivered by polling")
	require.Eventually(t, func() bool { return down.Attempts() >= 4 }, 20*time.Second, 10*time.Millisecond)
	began = time.Now()
	_ = b.Stop(context.Background())
	require.Less(t, time.Since(began), 2*time.Second)
	require.Equal(t, 1, logs.Count("LISTEN connection unavailable"), "one warning per outage:\n%s", logs.String())
	require.NotContains(t, logs.String(), password)
}

// A ListenDSN that does not parse is refused by NewOutbox, saying how to
// fix it and without quoting the password, in the error or in a log line.
func TestMalformedListenDSNIsRefusedWithoutThePassword(t *testing.T) {
	t.Parallel()
	s := testdb.New(t, nil)
	logs, logger := testdb.NewLogs()
	_, err := bus.NewOutbox(s.DB, &bus.OutboxConfig{ListenDSN: "postgres://rv:pa%ss@127.0.0.1:5432/test", Logger: logger})
	require.ErrorIs(t, err, revenant.ErrInvalidInput)
	require.Contains(t, err.Error(), "%25")
	for _, text := range []string{err.Error(), logs.String()} {
		require.NotContains(t, text, "pa%ss")
		require.NotContains(t, text, "%ss")
		require.NotContains(t, text, "rv:")
	}
}

// A ListenDSN whose server accepts connections and never answers (a
// firewall, a port that is not Postgres) does not hold Start, even with a
// ctx that never ends: the bus polls, warns once, and Stop returns at once.
func TestSilentListenDSNDoesNotHoldStart(t *testing.T) {
	t.Parallel()
	s := testdb.New(t, nil)
	silent := newSilentServer(t)
	logs, logger := testdb.NewLogs()
	const password = "s1lentPW"
	b, err := bus.NewOutbox(s.DB, &bus.OutboxConfig{ListenDSN: fmt.Sprintf("postgres://rv:%s@%s/test?sslmode=disable", password, silent),
		PollInterval: 20 * time.Millisecond, Logger: logger})
	require.NoError(t, err)
	c := &collector{}
	b.Subscribe("", c.handle)
	started := make(chan error, 1)
	go func() { started <- b.Start(context.Background()) }()
	select {
	case err := <-started:
		require.NoError(t, err)
	case <-time.After(15 * time.Second):
		t.Fatal("Start is still waiting on a LISTEN server that never answers")
	}
	ev := bus.Event{ID: uuid.New(), Type: bus.EpisodeStarted}
	require.NoError(t, b.Publish(context.Background(), ev))
	require.Eventually(t, func() bool { return c.ids()[ev.ID] == 1 }, 5*time.Second, 10*time.Millisecond, "delivered by polling")
	require.Eventually(t, func() bool { return logs.Count("LISTEN connection unavailable") == 1 }, 15*time.Second, 10*time.Millisecond)
	began := time.Now()
	_ = b.Stop(context.Background())
	require.Less(t, time.Since(began), time.Second)
	require.NotContains(t, logs.String(), password)
}

// newSilentServer accepts connections and never answers; it returns its
// address.
func newSilentServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
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
	return ln.Addr().String()
}

// A nil transaction is an error, not a panic.
func TestOutboxPublishTxNil(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		s := testdb.New(t, &testdb.Options{Driver: driver})
		b, err := bus.NewOutbox(s.DB, nil)
		require.NoError(t, err)
		var tx *sqlx.Tx
		require.NotPanics(t, func() {
			err = b.PublishTx(context.Background(), tx, bus.Event{Type: bus.EpisodeStarted})
		})
		require.ErrorIs(t, err, revenant.ErrInvalidInput)
	})
}
