package bus_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant/bus"
	"github.com/revenant-go/revenant/internal/testdb"
	"github.com/revenant-go/revenant/internal/testhook"
)

func TestMain(m *testing.M) { testdb.Main(m) }

type collector struct {
	mu  sync.Mutex
	evs []bus.Event
}

func (c *collector) handle(_ context.Context, ev bus.Event) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.evs = append(c.evs, ev)
	return nil
}

func (c *collector) ids() map[uuid.UUID]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[uuid.UUID]int{}
	for _, ev := range c.evs {
		out[ev.ID]++
	}
	return out
}

func TestInProcess(t *testing.T) {
	t.Parallel()
	b := bus.NewInProcess(nil)
	var all, failed collector
	b.Subscribe("", all.handle)
	unsub := b.Subscribe(bus.EpisodeFailed, failed.handle)
	require.NoError(t, b.Publish(context.Background(), bus.Event{Type: bus.EpisodeFailed}, bus.Event{Type: bus.EpisodeCompleted}))
	require.Eventually(t, func() bool { return len(all.ids()) == 2 && len(failed.ids()) == 1 }, 2*time.Second, 5*time.Millisecond)
	unsub()
	require.NoError(t, b.Publish(context.Background(), bus.Event{Type: bus.EpisodeFailed}))
	require.Eventually(t, func() bool { return len(all.ids()) == 3 }, 2*time.Second, 5*time.Millisecond)
	require.Len(t, failed.ids(), 1)
}

func TestOutboxDeliversToEveryNodeOnCommitOnly(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		s := testdb.New(t, &testdb.Options{Driver: driver})
		ctx := context.Background()
		var nodes []*collector
		var buses []*bus.Outbox
		for i := range 3 {
			cfg := &bus.OutboxConfig{ListenDSN: s.DSN, PollInterval: 5 * time.Second}
			if i == 2 || s.IsSQLite() {
				cfg.ListenDSN = "" // polling only
				cfg.PollInterval = 50 * time.Millisecond
			}
			b, err := bus.NewOutbox(s.DB, cfg)
			require.NoError(t, err)
			c := &collector{}
			b.Subscribe("", c.handle)
			require.NoError(t, b.Start(ctx))
			t.Cleanup(func() { _ = b.Stop(context.Background()) })
			nodes, buses = append(nodes, c), append(buses, b)
		}

		// A rolled-back transaction publishes nothing.
		tx, err := s.DB.BeginTxx(ctx, nil)
		require.NoError(t, err)
		require.NoError(t, buses[0].PublishTx(ctx, tx, bus.Event{Type: bus.EpisodeStarted}))
		require.NoError(t, tx.Rollback())

		big := json.RawMessage(`{"blob":"` + strings.Repeat("x", 20_000) + `"}`) // over NOTIFY's 8000 bytes
		ev := bus.Event{Type: bus.EpisodeCompleted, EpisodeID: uuid.New(), ActorID: "a", WorkflowInstanceID: uuid.New(),
			WorkflowStepID: "s1", Status: "done", Payload: big}
		require.NoError(t, buses[1].Publish(ctx, ev, bus.Event{Type: bus.EpisodeFailed, ErrorClass: "boom"}))
		for i, c := range nodes {
			require.Eventually(t, func() bool { return len(c.ids()) == 2 }, 5*time.Second, 10*time.Millisecond, "node %d", i)
		}
		got := nodes[2].evs[0]
		require.Equal(t, bus.EpisodeCompleted, got.Type)
		require.Equal(t, ev.EpisodeID, got.EpisodeID)
		require.Equal(t, ev.WorkflowInstanceID, got.WorkflowInstanceID)
		require.Equal(t, "s1", got.WorkflowStepID)
		require.JSONEq(t, string(big), string(got.Payload))
		require.Equal(t, "boom", nodes[0].evs[1].ErrorClass)

		// Reading again delivers nothing twice.
		require.NoError(t, buses[0].CatchUp(ctx))
		for _, n := range nodes[0].ids() {
			require.Equal(t, 1, n)
		}
	})
}

// The poll catches up what notifications miss. (A connected listener does
// not lose notifications, and a reconnect catches up at once, so while
// listening the poll runs every ListeningPollInterval: short here.)
func TestPostgresCatchesUpAfterDroppedNotifications(t *testing.T) {
	t.Parallel()
	s := testdb.New(t, nil)
	ctx := context.Background()
	b, err := bus.NewOutbox(s.DB, &bus.OutboxConfig{ListenDSN: s.DSN, PollInterval: 100 * time.Millisecond,
		ListeningPollInterval: 100 * time.Millisecond})
	require.NoError(t, err)
	testhook.DropOutboxNotifications(b, func() bool { return true })
	c := &collector{}
	b.Subscribe("", c.handle)
	require.NoError(t, b.Start(ctx))
	defer func() { _ = b.Stop(context.Background()) }()
	for range 20 {
		require.NoError(t, b.Publish(ctx, bus.Event{Type: bus.EpisodeStarted}))
	}
	require.Eventually(t, func() bool { return len(c.ids()) == 20 }, 5*time.Second, 10*time.Millisecond)
}

func TestBadInput(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		_, err := bus.NewOutbox(nil, nil)
		require.Error(t, err)
		s := testdb.New(t, &testdb.Options{Driver: driver})
		if s.IsSQLite() {
			_, err = bus.NewOutbox(s.DB, &bus.OutboxConfig{ListenDSN: "x"})
			require.ErrorContains(t, err, "no LISTEN/NOTIFY")
		}
		_, err = bus.NewOutbox(s.DB, &bus.OutboxConfig{PollInterval: -1})
		require.Error(t, err)
		b, err := bus.NewOutbox(s.DB, nil)
		require.NoError(t, err)
		require.Error(t, b.Publish(context.Background(), bus.Event{}), "an event needs a type")
		require.Error(t, b.Publish(context.Background(), bus.Event{Type: "x", Payload: json.RawMessage(`{bad`)}))
	})
}

// A transaction that takes a sequence number and commits later than one
// after it: its event is still delivered (the gap is re-checked by number),
// and the other event is not delivered twice.
func TestPostgresDeliversEventsThatCommitOutOfOrder(t *testing.T) {
	t.Parallel()
	s := testdb.New(t, nil)
	ctx := context.Background()
	b, err := bus.NewOutbox(s.DB, &bus.OutboxConfig{PollInterval: 50 * time.Millisecond})
	require.NoError(t, err)
	c := &collector{}
	b.Subscribe("", c.handle)
	require.NoError(t, b.Start(ctx))
	defer func() { _ = b.Stop(context.Background()) }()

	slow, err := s.DB.BeginTxx(ctx, nil)
	require.NoError(t, err)
	late := bus.Event{ID: uuid.New(), Type: bus.EpisodeStarted}
	require.NoError(t, b.PublishTx(ctx, slow, late)) // takes the lower seq
	early := bus.Event{ID: uuid.New(), Type: bus.EpisodeCompleted}
	require.NoError(t, b.Publish(ctx, early))
	require.Eventually(t, func() bool { return c.ids()[early.ID] == 1 }, 5*time.Second, 10*time.Millisecond)
	require.Zero(t, c.ids()[late.ID])

	require.NoError(t, slow.Commit())
	require.Eventually(t, func() bool { return c.ids()[late.ID] == 1 }, 5*time.Second, 10*time.Millisecond)
	for range 3 { // more reads, gap re-checks included
		require.NoError(t, b.CatchUp(ctx))
	}
	require.Equal(t, map[uuid.UUID]int{early.ID: 1, late.ID: 1}, c.ids())
}
