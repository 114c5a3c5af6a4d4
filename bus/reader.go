package bus

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"time"

	"github.com/revenant-go/revenant/internal/dbx"
	"github.com/revenant-go/revenant/internal/safe"
	"github.com/revenant-go/revenant/internal/service"
	"github.com/revenant-go/revenant/internal/store"
)

// The outbox reader: it follows revenant_events by sequence number and
// hands each event to this node's subscribers once.

const readBatch = 1000

// maxGapRanges caps the gaps the reader tracks; past it the oldest is given
// up (see OutboxConfig.GapWait).
const maxGapRanges = 1000

// gapRange is a run of sequence numbers the reader has not read, since
// when it first saw later ones.
type gapRange struct {
	from, to int64
	since    time.Time
}

// Start begins delivery from now on (events already in the outbox are not
// delivered; the reconciler covers what they would have done). It reads
// the outbox position first: a database that is down or was never
// migrated fails Start, which then holds nothing and may be called again.
// With ListenDSN it also waits until LISTEN is established, the first
// connection attempt fails, ctx ends or 5 s pass; LISTEN is retried in the
// background meanwhile.
func (b *Outbox) Start(ctx context.Context) error {
	b.lifecycle.Lock()
	defer b.lifecycle.Unlock()
	if b.started {
		return fmt.Errorf("%w: bus already started", dbx.ErrInvalidInput)
	}
	select {
	case <-b.stop:
		return fmt.Errorf("%w: bus was stopped; create a new one to start again", dbx.ErrInvalidInput)
	default:
	}
	high, err := b.st.EventPosition(ctx, b.db)
	if err != nil {
		return fmt.Errorf("bus: reading the outbox position: %w", dbx.Explain(err))
	}
	b.mu.Lock()
	b.high, b.gaps = high, nil
	b.mu.Unlock()
	if b.config.ListenDSN != "" {
		b.listener = b.st.Listen(ctx, store.ListenConfig{DSN: b.config.ListenDSN, Channels: []string{Channel}, Owner: "bus", Logger: b.logger})
	}
	b.started = true
	go b.loop()
	return nil
}

// Stop ends delivery, waiting at most until ctx ends. It returns at once
// if the bus never started (or its Start failed), and is safe to call
// again.
func (b *Outbox) Stop(ctx context.Context) error {
	b.lifecycle.Lock()
	defer b.lifecycle.Unlock()
	select {
	case <-b.stop:
		return nil
	default:
		close(b.stop)
	}
	if !b.started {
		return nil
	}
	return service.AwaitStop(ctx, "outbox bus", b.done, func() {
		if b.listener != nil {
			b.listener.Close()
		}
	})
}

func (b *Outbox) loop() {
	defer close(b.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { <-b.stop; cancel() }()
	poll := time.NewTicker(b.config.PollInterval)
	defer poll.Stop()
	prune := time.NewTicker(time.Minute)
	defer prune.Stop()
	var notes <-chan *store.Notification
	if b.listener != nil {
		notes = b.listener.Notifications()
	}
	var lastRead time.Time
	for {
		select {
		case <-b.stop:
			return
		case n := <-notes:
			if n != nil && b.dropNotification != nil && b.dropNotification() {
				continue
			}
		case <-poll.C:
			// While LISTEN is up every commit is announced: poll rarely,
			// unless a gap waits for its events.
			if b.listener != nil && b.listener.Listening() && len(b.gapRanges()) == 0 &&
				time.Since(lastRead) < b.config.ListeningPollInterval {
				continue
			}
		case <-prune.C:
			err := safe.Pass(ctx, b.logger, "outbox prune", func() error {
				_, err := b.st.EventPrune(ctx, b.db, b.config.Retention)
				return err
			})
			if err != nil && ctx.Err() == nil {
				b.logger.WarnContext(ctx, "revenant: pruning the outbox failed", slog.Any("error", err))
			}
			continue
		}
		err := safe.Pass(ctx, b.logger, "outbox read", func() error { return b.catchUp(ctx) })
		if err == nil {
			lastRead = time.Now() // a failed read is tried again at the next tick
		}
		if err != nil && ctx.Err() == nil {
			b.logger.WarnContext(ctx, "revenant: reading the outbox failed", slog.Any("error", err))
		}
	}
}

// catchUp delivers every event committed since the last read. The loop
// calls it on each notification and poll tick.

func (b *Outbox) catchUp(ctx context.Context) error {
	// Gaps are re-read by range, so a gap never makes the reader page over
	// the same rows again, and a wide one costs one index range scan.
	for {
		ranges := b.gapRanges()
		if len(ranges) == 0 {
			break
		}
		evs, err := b.st.EventReadRanges(ctx, b.db, ranges, readBatch)
		if err != nil {
			return dbx.Explain(err)
		}
		b.deliver(ctx, evs)
		if len(evs) < readBatch {
			break
		}
	}
	for {
		b.mu.Lock()
		high := b.high
		b.mu.Unlock()
		evs, err := b.st.EventReadAfter(ctx, b.db, high, readBatch)
		if err != nil {
			return dbx.Explain(err)
		}
		b.deliver(ctx, evs)
		if len(evs) < readBatch {
			b.mu.Lock()
			b.advance(time.Now())
			b.mu.Unlock()
			return nil
		}
	}
}

// gapRanges returns the current gaps, to re-read.
func (b *Outbox) gapRanges() []store.SeqRange {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.gaps) == 0 {
		return nil
	}
	out := make([]store.SeqRange, len(b.gaps))
	for i, g := range b.gaps {
		out[i] = store.SeqRange{From: g.from, To: g.to}
	}
	return out
}

// deliver hands new events to subscribers once each, and records the gaps
// the events' sequence numbers reveal.
func (b *Outbox) deliver(ctx context.Context, evs []store.EventRecord) {
	now := time.Now()
	for _, r := range evs {
		b.mu.Lock()
		fresh := b.take(r.Seq, now)
		b.mu.Unlock()
		if fresh {
			b.subs.deliver(ctx, b.logger, Event(r.Event))
		}
	}
}

// take records seq as read and reports whether it was not read before. The
// caller holds mu.
func (b *Outbox) take(seq int64, now time.Time) bool {
	if seq > b.high {
		if seq > b.high+1 {
			b.gaps = append(b.gaps, gapRange{from: b.high + 1, to: seq - 1, since: now})
			b.shed()
		}
		b.high = seq
		return true
	}
	return b.fillGap(seq)
}

// shed gives up the oldest gaps past maxGapRanges, so that memory stays
// bounded whatever the sequence does. The caller holds mu.
func (b *Outbox) shed() {
	for len(b.gaps) > maxGapRanges {
		if !b.gapsShed {
			b.gapsShed = true
			b.logger.Warn("revenant: the outbox reader is tracking too many sequence gaps; giving up the oldest (events committed inside them may be missed; the reconciler repairs what they would have done)",
				slog.Int("max_gaps", maxGapRanges))
		}
		b.gaps = b.gaps[1:]
	}
}

// fillGap removes seq, read late, from the gap holding it, and reports
// whether one did. The caller holds mu.
func (b *Outbox) fillGap(seq int64) bool {
	i := sort.Search(len(b.gaps), func(i int) bool { return b.gaps[i].to >= seq })
	if i == len(b.gaps) || b.gaps[i].from > seq {
		return false
	}
	g := b.gaps[i]
	switch {
	case g.from == seq && g.to == seq:
		b.gaps = slices.Delete(b.gaps, i, i+1)
	case g.from == seq:
		b.gaps[i].from++
	case g.to == seq:
		b.gaps[i].to--
	default:
		b.gaps[i].to = seq - 1
		b.gaps = slices.Insert(b.gaps, i+1, gapRange{from: seq + 1, to: g.to, since: g.since})
		b.shed()
	}
	return true
}

// advance gives up each gap that has waited GapWait, whole, in one step.
// Gaps are ordered by when they were seen, so the expired ones lead. The
// caller holds mu.
func (b *Outbox) advance(now time.Time) {
	for len(b.gaps) > 0 && now.Sub(b.gaps[0].since) > b.config.GapWait {
		b.gaps = b.gaps[1:]
	}
	if len(b.gaps) == 0 {
		b.gaps = nil // release the backing array
	}
}
