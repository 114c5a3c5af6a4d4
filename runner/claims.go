package runner

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/revenant-go/revenant/breakers"
	"github.com/revenant-go/revenant/bus"
	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/internal/dbx"
	"github.com/revenant-go/revenant/internal/safe"
	"github.com/revenant-go/revenant/internal/store"
)

// Claiming: the claim loop takes due pending episodes of this node's
// actors, as many as their free slots allow, one compare-and-set statement
// each. It wakes on a notification, on its poll, and when the next
// scheduled or retrying episode falls due (or a breaker's cool-down ends),
// which it asks the database after a pass that left slots free.

func (r *Runner) claimLoop() {
	defer close(r.claimDone)
	t := time.NewTicker(r.config.PollInterval)
	defer t.Stop()
	due := time.NewTimer(time.Hour)
	due.Stop()
	defer due.Stop()
	var dueAt time.Time // when due fires; zero or past when it is idle
	dueNow := 0         // passes in a row that found work due yet unclaimed
	for {
		select {
		case <-r.claimStop:
			return
		case <-r.wake:
		case <-t.C:
		case <-due.C:
		}
		_ = safe.Pass(r.runCtx, r.logger, "runner claims", func() error {
			d, ok := r.nextWake(r.claimAll())
			if ok && d <= 0 {
				// Due already, yet not claimed: it fell due after the
				// claim, or a lock (another node's claim, a caller's
				// transaction) holds it. Look again soon, then less and
				// less often: never a busy loop.
				d = min(minInterval<<min(dueNow, 10), r.config.PollInterval)
				dueNow++
			} else {
				dueNow = 0
			}
			if ok {
				// A pending wake-up is never moved later: an extra pass
				// costs one claim, a missed due time a poll interval.
				if at := time.Now().Add(d); dueAt.IsZero() || at.Before(dueAt) || time.Now().After(dueAt) {
					dueAt = at
					due.Reset(d)
				}
			}
			return nil
		})
	}
}

// claimAll claims work for every actor with free slots, and returns those
// whose slots it could not fill (nothing more is due for them).
func (r *Runner) claimAll() (idle []string) {
	for _, id := range r.actorIDs() {
		select {
		case <-r.claimStop:
			return nil
		default:
		}
		if r.claimActor(id) {
			idle = append(idle, id)
		}
	}
	return idle
}

// nextWake asks when the idle actors next have work: their next waiting
// episode's due time (0 when one is due already), or their breaker's end
// of cool-down (a breaker due for a probe gets it now). ok is false when
// nothing waits.
func (r *Runner) nextWake(idle []string) (time.Duration, bool) {
	if len(idle) == 0 {
		return 0, false
	}
	dues, err := r.st.EpisodeNextDue(r.runCtx, r.db, idle, store.Scope{Stack: r.config.Stack, Env: r.config.Env})
	if err != nil {
		if r.runCtx.Err() == nil {
			r.logger.Warn("revenant: reading when the next episode falls due failed; polling", slog.Any("error", err))
		}
		return 0, false
	}
	var wake *time.Duration
	earlier := func(d *time.Duration) {
		if d != nil && (wake == nil || *d < *wake) {
			wake = d
		}
	}
	for _, d := range dues {
		if d.Breaker == store.BreakerClosed {
			earlier(d.NextDueIn)
			continue
		}
		if d.ReopenIn == nil {
			continue // opened by hand: only an operator closes it
		}
		// Not its due episodes: they wait for the breaker. A probe that
		// did not start (nothing due, or the last probe still runs) is
		// tried again at the poll or on a notification.
		if *d.ReopenIn > 0 {
			earlier(d.ReopenIn)
		} else {
			r.probe(d.ActorID)
		}
	}
	switch {
	case wake == nil:
		return 0, false
	case *wake <= 0:
		return 0, true // due already: the caller decides how soon
	default:
		// A millisecond late, so that the due time has passed by the
		// database clock too.
		return *wake + time.Millisecond, true
	}
}

// claimActor claims and starts what the actor's free slots allow; idle is
// true when slots remain free (nothing more is due).
func (r *Runner) claimActor(id string) (idle bool) {
	r.mu.Lock()
	a := r.actors[id]
	free := a.MaxConcurrent - r.perActr[id]
	nodeID, unregistered := r.nodeID, r.unregistered
	if free <= 0 || unregistered {
		r.mu.Unlock()
		return false
	}
	r.claiming++
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.claiming--
		r.mu.Unlock()
	}()
	eps, err := r.claim(r.runCtx, nodeID, id, free)
	if err != nil && r.runCtx.Err() == nil {
		r.logger.Warn("revenant: claiming failed", slog.String("actor", id), slog.Any("error", err))
	}
	r.startClaimed(a, eps, nodeID, false)
	return err == nil && len(eps) < free
}

// startClaimed runs claimed episodes. Episodes read before an error are
// claimed too (on SQLite a RETURNING statement's changes stand once its
// first row is out): they run like the others.
func (r *Runner) startClaimed(a *Actor, eps []claimedEpisode, nodeID string, probe bool) {
	for _, c := range eps {
		ep := c.ep
		if !r.startRun(a, c, nodeID, probe) {
			// Claimed under an identity this node lost meanwhile: those
			// episodes are orphans already; hand them back at once.
			if _, err := r.store.Release(context.WithoutCancel(r.runCtx), ep.ID, ep.ClaimToken); err != nil {
				r.logger.Info("revenant: releasing an episode claimed under a lost identity", slog.Any("error", err))
			}
		}
	}
}

// errNoProbe rolls a probe back: nothing was due to be its trial.
var errNoProbe = errors.New("no episode due for a probe")

// probe lets one episode through the actor's breaker, once its cool-down
// has passed: in one transaction the breaker moves to half-open (a
// compare-and-set, so one node in the cluster wins) and one due episode is
// claimed; with none due, nothing changes.
func (r *Runner) probe(actorID string) {
	r.mu.Lock()
	a := r.actors[actorID]
	nodeID, unregistered := r.nodeID, r.unregistered
	if a == nil || a.MaxConcurrent-r.perActr[actorID] <= 0 || unregistered {
		r.mu.Unlock()
		return
	}
	r.claiming++
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.claiming--
		r.mu.Unlock()
	}()
	ctx, key := r.runCtx, r.breakerKey(actorID)
	var eps []claimedEpisode
	var after []bus.Event
	err := r.inTx(ctx, func(tx *sqlx.Tx) error {
		ok, err := r.st.BreakerProbe(ctx, tx, key)
		if err != nil || !ok {
			return err
		}
		var claimed int
		if eps, claimed, err = r.claimOn(ctx, tx, nodeID, actorID, 1, true, ""); err != nil {
			return err
		}
		if claimed == 0 {
			return errNoProbe
		}
		evs := []bus.Event{breakers.Event(key, breakers.HalfOpen, "cool-down over: one probe episode let through")}
		if len(eps) == 0 {
			// The row claimed could not be read and was failed as
			// corrupt_row: that stands, and the next probe comes after a
			// cool-down.
			return r.publishTx(ctx, tx, &after, evs...)
		}
		if err := r.st.BreakerProbeStarted(ctx, tx, key, eps[0].ep.ID, eps[0].ep.ClaimToken); err != nil {
			return err
		}
		return r.publishTx(ctx, tx, &after, append(evs, eventOf(bus.EpisodeStarted, eps[0].ep))...)
	})
	if err != nil {
		if !errors.Is(err, errNoProbe) && ctx.Err() == nil {
			r.logger.Warn("revenant: a breaker probe failed", slog.String("actor", actorID), slog.Any("error", err))
		}
		return
	}
	r.publishAfter(ctx, after)
	if len(eps) > 0 {
		r.logger.Info("revenant: circuit breaker half-open: running one probe episode", slog.String("actor", actorID),
			slog.String("episode", eps[0].ep.ID.String()))
	}
	r.startClaimed(a, eps, nodeID, true)
}

func (r *Runner) claim(ctx context.Context, nodeID, actorID string, n int) ([]claimedEpisode, error) {
	if r.config.Bus == nil {
		eps, _, err := r.claimOn(ctx, r.db, nodeID, actorID, n, false, "")
		return eps, err
	}
	// The outbox on Postgres: the claim writes its events itself, in one
	// statement with no transaction around it.
	if bus.Transactional(r.config.Bus) && r.st.Capabilities().StatementEvents {
		eps, claimed, err := r.claimOn(ctx, r.db, nodeID, actorID, n, false, bus.EpisodeStarted)
		if claimed > 0 {
			r.announceSoon()
		}
		return eps, err
	}
	var eps []claimedEpisode
	var after []bus.Event
	err := r.inTx(ctx, func(tx *sqlx.Tx) error {
		var err error
		if eps, _, err = r.claimOn(ctx, tx, nodeID, actorID, n, false, ""); err != nil || len(eps) == 0 {
			return err
		}
		evs := make([]bus.Event, len(eps))
		for i, c := range eps {
			evs[i] = eventOf(bus.EpisodeStarted, c.ep)
		}
		return r.publishTx(ctx, tx, &after, evs...)
	})
	if err != nil {
		return nil, err
	}
	r.publishAfter(ctx, after)
	return eps, nil
}

// claimedEpisode is an episode this node claimed, with its journal as the
// claim read it (nil if it could not: journal.Open reads it then).
type claimedEpisode struct {
	ep      *episodes.Episode
	journal *store.StepJournal
}

// claimOn claims up to n episodes and returns those that can run, and how
// many rows were claimed (unreadable ones included, which it fails).
// With startedEvent, the claim statement writes each claimed row's event.
func (r *Runner) claimOn(ctx context.Context, ex dbx.Executor, nodeID, actorID string, n int, probe bool, startedEvent string) ([]claimedEpisode, int, error) {
	// This node's stack (or none), and exactly its env.
	rows, err := r.st.EpisodeClaimMany(ctx, ex, &store.ClaimManyParams{Node: nodeID, ActorID: actorID, Limit: n,
		Scope: store.Scope{Stack: r.config.Stack, Env: r.config.Env}, Probe: probe, StartedEvent: startedEvent})
	// Every row returned is claimed already, even beside an error: run
	// those that can be read, fail those that cannot, so that none is left
	// running with nobody to run it.
	var out []claimedEpisode
	for _, row := range rows {
		if row.Err != nil {
			r.logger.Error("revenant: a claimed episode's row cannot be read; failing it as corrupt_row",
				slog.String("episode", row.ID.String()), slog.Any("error", row.Err))
			if r.failUnreadable(ctx, ex, row) && startedEvent != "" {
				// The claim's statement wrote its start: end it too.
				r.publishAfter(ctx, []bus.Event{{Type: bus.EpisodeFailed, EpisodeID: row.ID, Status: string(episodes.StatusFailed), ErrorClass: "corrupt_row"}})
			}
			continue
		}
		out = append(out, claimedEpisode{ep: (*episodes.Episode)(row.Episode), journal: row.Journal})
	}
	return out, len(rows), dbx.Explain(err)
}

// failUnreadable fails a claimed episode that cannot be read, by id and
// token: running it is impossible, and handing it back would only have it
// claimed again.
func (r *Runner) failUnreadable(ctx context.Context, ex dbx.Executor, row store.ClaimedRow) bool {
	detail, _ := json.Marshal(map[string]string{"message": dbx.CleanText(row.Err.Error(), maxMessageBytes)})
	if err := r.st.EpisodeFailUnreadable(context.WithoutCancel(ctx), ex, row.ID, row.Token, string(detail)); err != nil {
		// Left running under this node: the heartbeat hands it back.
		r.logger.Error("revenant: failing an unreadable episode failed", slog.String("episode", row.ID.String()), slog.Any("error", err))
		return false
	}
	return true
}
