package metrics

import (
	"context"
	"log/slog"
	"time"

	"github.com/revenant-go/revenant/bus"
)

// Detection latency: from a node's death to its orphans being taken by a
// sweep. The database does not record the instant of death, so a sample
// runs from the dead node's last heartbeat to the first sweep event naming
// it as previous owner, both by the database clock. It therefore includes
// up to one heartbeat interval before the death (and, for a node found
// dead by an expired heartbeat, the TTL it had to lapse).
//
// The event handler must not wait on the database (it holds up the bus),
// so it hands the first event of each dead node to one goroutine through a
// bounded queue; that goroutine looks the node up with Inspect().Nodes,
// one read for whatever is queued, bounded by ScrapeTimeout. A full queue
// (a mass death faster than the lookups) drops samples, with a warning.

// lookup is one dead node to sample.
type lookup struct {
	owner, rule string
	at          time.Time // the sweep event's CreatedAt
}

// noteRecovery queues the detection sample of a sweep event's previous
// owner, unless that owner was sampled (or queued) already.
func (m *Metrics) noteRecovery(ev bus.Event) {
	rec, ok := ev.Recovery()
	if !ok || rec.PreviousOwner == "" {
		return // not a sweep's event (a run's failure), or no known owner
	}
	m.mu.Lock()
	first := m.sampled.add(rec.PreviousOwner)
	m.mu.Unlock()
	if !first {
		return
	}
	select {
	case m.lookups <- lookup{owner: rec.PreviousOwner, rule: orUnknown(rec.Reason), at: ev.CreatedAt}:
	default:
		m.forget(rec.PreviousOwner)
		m.logger.Warn("revenant: metrics: detection latency sample dropped: too many dead nodes at once",
			slog.String("node", rec.PreviousOwner))
	}
}

// forget lets a later event of owner be sampled (its lookup failed).
func (m *Metrics) forget(owner string) {
	m.mu.Lock()
	m.sampled.remove(owner)
	m.mu.Unlock()
}

func (m *Metrics) lookupLoop(ctx context.Context) {
	defer close(m.done)
	for {
		select {
		case <-ctx.Done():
			return
		case l := <-m.lookups:
			batch := []lookup{l}
			for more := true; more; {
				select {
				case l := <-m.lookups:
					batch = append(batch, l)
				default:
					more = false
				}
			}
			// A failed read is tried again a few times, with a pause: the
			// dead node's other events may all have come already (a sweep
			// recovers its orphans in one batch), so no later one would.
			ok := m.sample(ctx, batch)
			for attempt := 1; !ok && attempt < lookupAttempts; attempt++ {
				t := time.NewTimer(time.Duration(attempt) * lookupRetry)
				select {
				case <-ctx.Done():
					t.Stop()
					return
				case <-t.C:
				}
				ok = m.sample(ctx, batch)
			}
			if !ok {
				// Given up: a later event of these nodes may be sampled.
				for _, l := range batch {
					m.forget(l.owner)
				}
			}
		}
	}
}

// lookupAttempts and lookupRetry bound the retries of a failed node read.
const (
	lookupAttempts = 5
	lookupRetry    = 500 * time.Millisecond
)

// sample observes one detection latency per queued dead node, and
// reports false when the nodes could not be read.
func (m *Metrics) sample(ctx context.Context, batch []lookup) bool {
	ctx, cancel := context.WithTimeout(ctx, m.config.ScrapeTimeout)
	defer cancel()
	nodes, err := m.client.Inspect().Nodes(ctx)
	if err != nil {
		m.logger.Warn("revenant: metrics: reading nodes for detection latency failed; trying again",
			slog.Int("nodes", len(batch)), slog.Any("error", err))
		return false
	}
	heartbeats := make(map[string]time.Time, len(nodes))
	for _, n := range nodes {
		heartbeats[n.ID] = n.HeartbeatAt
	}
	for _, l := range batch {
		hb, ok := heartbeats[l.owner]
		if !ok || hb.IsZero() || l.at.IsZero() {
			continue // not a known node (a stale owner), or its row is gone: nothing to measure from
		}
		m.detection.WithLabelValues(l.rule).Observe(max(l.at.Sub(hb), 0).Seconds())
	}
	return true
}
