package metrics

import (
	"context"
	"testing"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant"
	"github.com/revenant-go/revenant/bus"
	"github.com/revenant-go/revenant/internal/testdb"
)

// An event delivered twice is counted once; the memory of ids is bounded.
func TestHandleDedupes(t *testing.T) {
	t.Parallel()
	s := testdb.New(t, &testdb.Options{Driver: testdb.SQLite})
	c, err := revenant.New(s.DB, &revenant.Config{SkipMigrate: true})
	require.NoError(t, err)
	m, err := New(c, &Config{DedupeSize: 4})
	require.NoError(t, err)
	t.Cleanup(m.Close)

	ctx := context.Background()
	first := bus.Event{ID: uuid.New(), Type: bus.EpisodeCompleted, ActorID: "a"}
	require.NoError(t, m.handle(ctx, first))
	require.NoError(t, m.handle(ctx, first))
	require.InDelta(t, 1, count(t, m.completions.WithLabelValues("a")), 0)

	for range 10 {
		require.NoError(t, m.handle(ctx, bus.Event{ID: uuid.New(), Type: bus.EpisodeFailed, ActorID: "a"}))
	}
	require.InDelta(t, 10, count(t, m.failures.WithLabelValues("a", unknownLabel)), 0, "an empty class reads unknown")
	require.Equal(t, 4, m.seen.len())
	require.NoError(t, m.handle(ctx, first)) // forgotten long ago: counted again
	require.InDelta(t, 2, count(t, m.completions.WithLabelValues("a")), 0)

	require.NoError(t, m.handle(ctx, bus.Event{ID: uuid.New(), Type: bus.BreakerHalfOpen, ActorID: "a"}))
	require.InDelta(t, 1, count(t, m.breakerChanges.WithLabelValues("a", "half_open")), 0, "the state from the type")
}

// A removed key stays removed when its old slot is reused, and re-adding
// it keeps it until its new slot is.
func TestRingSet(t *testing.T) {
	t.Parallel()
	r := newRingSet[string](2)
	require.True(t, r.add("a"))
	require.False(t, r.add("a"))
	r.remove("a")
	require.True(t, r.add("a")) // slot 1 now; slot 0 is stale
	require.True(t, r.add("b")) // reuses slot 0: "a" must survive
	require.False(t, r.add("a"))
	require.Equal(t, 2, r.len())
	require.True(t, r.add("c")) // evicts "a" (slot 1)
	require.True(t, r.add("a"))
	require.False(t, r.add("c"))
}

func count(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	require.NoError(t, c.Write(&m))
	return m.GetCounter().GetValue()
}
