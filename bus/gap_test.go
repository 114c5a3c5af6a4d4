package bus

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant/internal/dbx"
	"github.com/revenant-go/revenant/internal/testdb"
)

// A jump of millions in the sequence (a setval, one odd row) costs one
// tracked range, not one entry per missing number; the range is re-read
// with one query and passed in one step once it has waited GapWait.
func TestSequenceJumpKeepsMemoryBounded(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		s := testdb.New(t, &testdb.Options{Driver: driver})
		ctx := context.Background()
		b, err := NewOutbox(s.DB, &OutboxConfig{GapWait: time.Hour})
		require.NoError(t, err)
		var got []uuid.UUID
		b.Subscribe("", func(_ context.Context, ev Event) error { got = append(got, ev.ID); return nil })
		require.NoError(t, b.Start(ctx))
		defer b.Stop()
		b.Stop() // the test drives catchUp itself

		first := Event{ID: uuid.New(), Type: EpisodeStarted}
		require.NoError(t, b.Publish(ctx, first))
		const jump = 4_000_000
		if s.IsSQLite() {
			_, err = s.DB.Exec(`UPDATE sqlite_sequence SET seq = seq + $1 WHERE name = 'revenant_events'`, jump)
		} else {
			_, err = s.DB.Exec(`SELECT setval(pg_get_serial_sequence('revenant_events', 'seq'), (SELECT max(seq) FROM revenant_events) + $1)`, jump)
		}
		require.NoError(t, err)
		second := Event{ID: uuid.New(), Type: EpisodeCompleted}
		require.NoError(t, b.Publish(ctx, second))

		require.NoError(t, b.catchUp(ctx))
		require.Equal(t, []uuid.UUID{first.ID, second.ID}, got)
		b.mu.Lock()
		require.Len(t, b.gaps, 1, "one range for the whole jump")
		require.Equal(t, int64(jump), b.gaps[0].to-b.gaps[0].from+1)
		require.LessOrEqual(t, len(b.delivered), 1)
		b.mu.Unlock()

		// A late event inside the range splits it; re-reading costs one
		// query whatever the width.
		require.NoError(t, b.catchUp(ctx))
		require.Len(t, got, 2)

		// Once the range has waited GapWait, low passes it in one step.
		b.mu.Lock()
		b.gaps[0].since = time.Now().Add(-2 * time.Hour)
		b.advance(time.Now())
		require.Empty(t, b.gaps)
		require.Equal(t, b.high, b.low)
		require.Empty(t, b.delivered)
		b.mu.Unlock()
	})
}

// Gaps past the cap are given up oldest first, so that even a pathological
// sequence cannot grow the reader's memory.
func TestGapRangesAreCapped(t *testing.T) {
	t.Parallel()
	b := &Outbox{config: OutboxConfig{GapWait: time.Hour}, delivered: map[int64]struct{}{}, logger: dbx.DiscardLogger()}
	var evs []Event
	var seqs []int64
	for i := range int64(3 * maxGapRanges) {
		evs = append(evs, Event{ID: uuid.New(), Type: EpisodeStarted})
		seqs = append(seqs, 2*i+2) // every odd seq missing
	}
	b.deliver(context.Background(), evs, seqs)
	require.LessOrEqual(t, len(b.gaps), maxGapRanges)
	require.LessOrEqual(t, len(b.delivered), maxGapRanges+1)
	// A late event inside a kept gap is still delivered once.
	late := b.gaps[len(b.gaps)-1].from
	n := 0
	b.subs.add("", func(context.Context, Event) error { n++; return nil })
	b.deliver(context.Background(), []Event{{ID: uuid.New(), Type: EpisodeStarted}, {ID: uuid.New(), Type: EpisodeStarted}}, []int64{late, late})
	require.Equal(t, 1, n)
}
