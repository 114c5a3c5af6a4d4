package runner

import (
	"context"
	"log/slog"
	"time"
)

// Announcing: a claim or a completion that writes its events in its own
// statement (the outbox on Postgres) sends no NOTIFY there: Postgres holds
// one lock for every notifying transaction from its NOTIFY to the end of
// its commit, disk flush included, so notifying commits cannot share a
// flush. The node announces after the commit instead, from one goroutine:
// at most one announcement is in flight, and the writes committed while
// it is sent are covered by the next one. Each write's announcement comes
// after its commit, so a reader woken by it reads the events. A node that
// dies between a commit and its announcement leaves those events to the
// readers' next wake-up or poll.

// announceTimeout bounds one announcement; announceRetry is the wait
// before the next after one failed.
const (
	announceTimeout = 5 * time.Second
	announceRetry   = time.Second
)

// announceSoon asks for an announcement of events just committed.
func (r *Runner) announceSoon() {
	select {
	case r.announceKick <- struct{}{}:
	default: // one is pending already: it covers these events too
	}
}

func (r *Runner) announceLoop() {
	defer r.loops.Done()
	for {
		select {
		case <-r.stopCh:
			// Runs ending after this are announced by stop itself.
			return
		case <-r.announceKick:
			if r.announce() {
				continue
			}
			// Failed (the pool exhausted, the connection lost): try again
			// shortly, so that committed events are not left to a poll.
			select {
			case <-r.stopCh:
				r.announceSoon() // for stop's last announcement
				return
			case <-time.After(announceRetry):
				r.announceSoon()
			}
		}
	}
}

// announcePending sends the announcement still asked for, if any.
func (r *Runner) announcePending() {
	select {
	case <-r.announceKick:
		_ = r.announce()
	default:
	}
}

// announce sends one announcement and reports whether it went out.
func (r *Runner) announce() bool {
	ctx, cancel := context.WithTimeout(context.Background(), announceTimeout)
	defer cancel()
	if err := r.st.EventAnnounce(ctx, r.db); err != nil {
		r.logger.Warn("revenant: announcing new events failed; trying again", slog.Any("error", err))
		return false
	}
	return true
}
