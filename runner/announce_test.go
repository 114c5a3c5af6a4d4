package runner_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant/bus"
	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/internal/testdb"
	"github.com/revenant-go/revenant/journal"
	"github.com/revenant-go/revenant/runner"
)

// A claim and a completion write their events in their own statements and
// announce them right after: another node's reader, which would otherwise
// poll only hourly, gets them at once.
func TestClaimAndCompletionEventsAreAnnounced(t *testing.T) {
	testdb.Require(t)
	s := testdb.New(t, &testdb.Options{Driver: "postgres", MaxOpenConns: 12})
	ctx := context.Background()
	hourly := &bus.OutboxConfig{ListenDSN: s.DSN, PollInterval: time.Hour, ListeningPollInterval: time.Hour}
	reader, err := bus.NewOutbox(s.DB, hourly)
	require.NoError(t, err)
	var mu sync.Mutex
	seen := map[uuid.UUID][]string{}
	reader.Subscribe("", func(_ context.Context, ev bus.Event) error {
		mu.Lock()
		defer mu.Unlock()
		seen[ev.EpisodeID] = append(seen[ev.EpisodeID], ev.Type)
		return nil
	})
	require.NoError(t, reader.Start(ctx))
	t.Cleanup(func() { _ = reader.Stop(context.Background()) })

	pub, err := bus.NewOutbox(s.DB, hourly)
	require.NoError(t, err)
	// Once the reader has heard a NOTIFY, it listens: from then on only
	// announcements wake it.
	ping := uuid.New()
	require.NoError(t, pub.Publish(ctx, bus.Event{Type: "test.ping", EpisodeID: ping}))
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen[ping]) == 1
	}, 10*time.Second, 10*time.Millisecond, "the reader never heard the ping")
	cfg := fastConfig(s, "announcer")
	cfg.Bus = pub
	r := start(t, s, cfg, runner.Actor{ID: "quick", Run: func(ctx context.Context, ep *episodes.Episode, j *journal.Journal) (any, error) {
		return "ok", nil
	}})
	res, err := r.Enqueue(ctx, episodes.CreateParams{ActorID: "quick"})
	require.NoError(t, err)
	id := res.Episode.ID
	waitStatus(t, r, id, episodes.StatusDone)
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		types := seen[id]
		return len(types) == 2 && types[0] == bus.EpisodeStarted && types[1] == bus.EpisodeCompleted
	}, 10*time.Second, 10*time.Millisecond, "the other reader got %v", func() []string { mu.Lock(); defer mu.Unlock(); return seen[id] }())
}
