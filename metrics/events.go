package metrics

import (
	"context"
	"strings"

	"github.com/google/uuid"

	"github.com/revenant-go/revenant/bus"
)

// unknownLabel stands for an empty class or reason: an empty label value
// would read as a missing label.
const unknownLabel = "unknown"

func orUnknown(s string) string {
	if s == "" {
		return unknownLabel
	}
	return s
}

// handle counts one bus event. It runs on the bus's delivery goroutine, so
// it only touches memory: node lookups go to the lookup goroutine.
func (m *Metrics) handle(_ context.Context, ev bus.Event) error {
	if ev.ID != uuid.Nil {
		m.mu.Lock()
		fresh := m.seen.add(ev.ID)
		m.mu.Unlock()
		if !fresh {
			return nil // delivery is at least once
		}
	}
	actor := ev.ActorID
	switch ev.Type {
	case bus.EpisodeStarted:
		m.claims.WithLabelValues(actor).Inc()
	case bus.EpisodeCompleted:
		m.completions.WithLabelValues(actor).Inc()
	case bus.EpisodeCanceled:
		m.cancellations.WithLabelValues(actor).Inc()
	case bus.EpisodeRequeued:
		m.requeues.WithLabelValues(actor).Inc()
	case bus.EpisodeRetrying:
		m.retries.WithLabelValues(actor, orUnknown(ev.ErrorClass)).Inc()
	case bus.EpisodeFailed, bus.EpisodeDeadLettered:
		m.failures.WithLabelValues(actor, orUnknown(ev.ErrorClass)).Inc()
		m.noteRecovery(ev)
	case bus.EpisodeRecovered:
		rec, _ := ev.Recovery()
		m.restarts.WithLabelValues(actor, orUnknown(rec.Reason)).Inc()
		m.noteRecovery(ev)
	case bus.BreakerOpened, bus.BreakerHalfOpen, bus.BreakerClosed:
		state := ev.Status
		if state == "" {
			state = strings.TrimPrefix(ev.Type, "breaker.")
		}
		m.breakerChanges.WithLabelValues(actor, state).Inc()
	}
	return nil
}
