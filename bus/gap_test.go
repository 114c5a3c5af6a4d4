package bus

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant/internal/dbx"
	"github.com/revenant-go/revenant/internal/store"
	"github.com/revenant-go/revenant/internal/testdb"
)

// A jump of millions in the sequence (a setval, one odd row) costs one
// tracked range, not one entry per missing number; a late event inside it
// splits it; the ranges are re-read by range and passed in one step once
// they have waited GapWait.
func TestSequenceJumpKeepsMemoryBounded(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		s := testdb.New(t, &testdb.Options{Driver: driver})
		ctx := context.Background()
		b, err := NewOutbox(s.DB, &OutboxConfig{GapWait: time.Hour})
		require.NoError(t, err)
		var got []uuid.UUID
		b.Subscribe("", func(_ context.Context, ev Event) error { got = append(got, ev.ID); return nil })
		require.NoError(t, b.Start(ctx))
		require.NoError(t, b.Stop(ctx)) // the test drives catchUp itself

		first := Event{ID: uuid.New(), Type: EpisodeStarted}
		require.NoError(t, b.Publish(ctx, first))
		var base int64
		require.NoError(t, s.DB.Get(&base, `SELECT max(seq) FROM revenant_events`))
		const jump = 4_000_000
		if s.IsSQLite() {
			_, err = s.DB.Exec(`UPDATE sqlite_sequence SET seq = seq + $1 WHERE name = 'revenant_events'`, jump)
		} else {
			_, err = s.DB.Exec(`SELECT setval(pg_get_serial_sequence('revenant_events', 'seq'), $1)`, base+jump)
		}
		require.NoError(t, err)
		second := Event{ID: uuid.New(), Type: EpisodeCompleted}
		require.NoError(t, b.Publish(ctx, second))

		require.NoError(t, b.catchUp(ctx))
		require.Equal(t, []uuid.UUID{first.ID, second.ID}, got)
		b.mu.Lock()
		require.Equal(t, []gapRange{{from: base + 1, to: base + jump, since: b.gaps[0].since}}, b.gaps, "one range for the whole jump")
		b.mu.Unlock()

		// A late event inside the range is delivered once and splits it.
		late := Event{ID: uuid.New(), Type: EpisodeFailed}
		_, err = s.DB.Exec(`INSERT INTO revenant_events (seq, id, type) VALUES ($1, $2, $3)`, base+jump/2, late.ID.String(), late.Type)
		require.NoError(t, err)
		require.NoError(t, b.catchUp(ctx))
		require.NoError(t, b.catchUp(ctx))
		require.Equal(t, []uuid.UUID{first.ID, second.ID, late.ID}, got)
		b.mu.Lock()
		require.Len(t, b.gaps, 2)
		require.Equal(t, base+jump/2-1, b.gaps[0].to)
		require.Equal(t, base+jump/2+1, b.gaps[1].from)

		// Once they have waited GapWait, both are passed in one step.
		for i := range b.gaps {
			b.gaps[i].since = time.Now().Add(-2 * time.Hour)
		}
		high := b.high
		b.advance(time.Now())
		require.Empty(t, b.gaps)
		require.Equal(t, high, b.high)
		b.mu.Unlock()
		require.NoError(t, b.catchUp(ctx))
		require.Len(t, got, 3)
	})
}

// Gaps past the cap are given up oldest first, so that even a pathological
// sequence cannot grow the reader's memory.
func TestGapRangesAreCapped(t *testing.T) {
	t.Parallel()
	logs, logger := testdb.NewLogs()
	b := &Outbox{config: OutboxConfig{GapWait: time.Hour}, logger: logger}
	var evs []Event
	var seqs []int64
	for i := range int64(3 * maxGapRanges) {
		evs = append(evs, Event{ID: uuid.New(), Type: EpisodeStarted})
		seqs = append(seqs, 2*i+2) // every odd seq missing
	}
	b.deliver(context.Background(), records(evs, seqs))
	require.Len(t, b.gaps, maxGapRanges)
	require.Equal(t, int64(2*(2*maxGapRanges)+1), b.gaps[0].from, "the oldest were given up")
	require.Equal(t, 1, logs.Count("too many sequence gaps"))
	// A late event inside a kept gap is delivered once; one inside a
	// given-up gap is not.
	n := 0
	b.subs.add("", func(context.Context, Event) error { n++; return nil })
	kept := b.gaps[len(b.gaps)-1].from
	b.deliver(context.Background(), records([]Event{{ID: uuid.New(), Type: EpisodeStarted}, {ID: uuid.New(), Type: EpisodeStarted}, {ID: uuid.New(), Type: EpisodeStarted}},
		[]int64{kept, kept, 1}))
	require.Equal(t, 1, n)
}

// While a gap waits, the events read above it cost nothing each: the
// reader's memory does not grow with the traffic a stuck transaction lets
// pass.
func TestReaderMemoryDoesNotGrowWhileAGapWaits(t *testing.T) {
	// Not parallel: it measures the heap.
	b := &Outbox{config: OutboxConfig{GapWait: time.Hour}, logger: dbx.DiscardLogger()}
	ctx := context.Background()
	b.deliver(ctx, records([]Event{{ID: uuid.New(), Type: EpisodeStarted}}, []int64{2})) // seq 1 is in flight
	recs := make([]store.EventRecord, 1000)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	next := int64(3)
	for range 2000 { // 2M events
		for i := range recs {
			recs[i].Seq = next
			next++
		}
		b.deliver(ctx, recs)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	require.Equal(t, []gapRange{{from: 1, to: 1, since: b.gaps[0].since}}, b.gaps)
	require.Equal(t, next-1, b.high)
	grew := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	require.Less(t, grew, int64(4<<20), "the reader's memory grew by %d bytes over 2M events", grew)
	runtime.KeepAlive(b)
}

// records pairs events with sequence numbers, as the store reads them.
func records(evs []Event, seqs []int64) []store.EventRecord {
	out := make([]store.EventRecord, len(evs))
	for i := range evs {
		out[i] = store.EventRecord{Seq: seqs[i], Event: store.Event(evs[i])}
	}
	return out
}
