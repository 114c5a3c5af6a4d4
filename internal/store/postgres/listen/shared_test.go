package listen

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant/internal/store"
	"github.com/revenant-go/revenant/internal/testdb"
)

// A node's runner and bus share one LISTEN connection; each receives only
// its own channels; the connection closes when the last one leaves.
func TestJoinSharesOneConnectionPerDSN(t *testing.T) {
	t.Parallel()
	s := testdb.New(t, nil)
	app := "rv_shared_" + uuid.NewString()[:8]
	dsn := s.DSN + "&application_name=" + app
	ctx := context.Background()
	chA, chB := app+"_a", app+"_b"
	a := Join(ctx, Config{DSN: dsn, Channels: []string{chA}, Owner: "runner"})
	b := Join(ctx, Config{DSN: dsn, Channels: []string{chB}, Owner: "bus"})
	conns := func() int {
		var n int
		require.NoError(t, s.DB.Get(&n, `SELECT count(*) FROM pg_stat_activity WHERE application_name = $1`, app))
		return n
	}
	require.Eventually(t, func() bool { return a.Listening() && b.Listening() }, 15*time.Second, 10*time.Millisecond)

	// LISTEN for b's channel may still be under way: notify until it lands.
	got := func(l store.Listener, channel, payload string) {
		t.Helper()
		deadline := time.After(15 * time.Second)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			_, err := s.DB.Exec(`SELECT pg_notify($1, $2)`, channel, payload)
			require.NoError(t, err)
			select {
			case n := <-l.Notifications():
				if n != nil {
					require.Equal(t, channel, n.Channel, "a member gets only its own channels")
					require.Equal(t, payload, n.Payload)
					return
				}
			case <-tick.C:
			case <-deadline:
				t.Fatalf("no notification on %s", channel)
			}
		}
	}
	got(a, chA, "for-a")
	got(b, chB, "for-b")
	require.Equal(t, 1, conns(), "one connection for both")

	// Drain what the retries above sent, then check nothing crosses over.
	for _, l := range []store.Listener{a, b} {
	drain:
		for {
			select {
			case <-l.Notifications():
			case <-time.After(200 * time.Millisecond):
				break drain
			}
		}
	}
	_, err := s.DB.Exec(`SELECT pg_notify($1, 'only-a')`, chA)
	require.NoError(t, err)
	require.Equal(t, "only-a", (<-a.Notifications()).Payload)
	select {
	case n := <-b.Notifications():
		t.Fatalf("b received %v", n)
	case <-time.After(200 * time.Millisecond):
	}

	a.Close()
	got(b, chB, "still-b")
	require.Equal(t, 1, conns())
	b.Close()
	require.Eventually(t, func() bool { return conns() == 0 }, 15*time.Second, 20*time.Millisecond, "the last member closes it")
	_, open := <-b.Notifications()
	require.False(t, open, "Notifications is closed after Close")
	hubs.Lock()
	_, left := hubs.m[dsn]
	hubs.Unlock()
	require.False(t, left, fmt.Sprintf("hub for %s removed", app))
}
