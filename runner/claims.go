package runner

import (
	"context"
	"encoding/json"
	"log/slog"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/revenant-go/revenant/bus"
	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/internal/dbx"
	"github.com/revenant-go/revenant/internal/safe"
	"github.com/revenant-go/revenant/internal/store"
)

// Claiming: the claim loop takes pending episodes of this node's actors, as
// many as their free slots allow, one compare-and-set statement each.

func (r *Runner) claimLoop() {
	defer close(r.claimDone)
	t := time.NewTicker(r.config.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-r.claimStop:
			return
		case <-r.wake:
		case <-t.C:
		}
		_ = safe.Pass(r.runCtx, r.logger, "runner claims", func() error { r.claimAll(); return nil })
	}
}

// claimAll claims work for every actor with free slots.
func (r *Runner) claimAll() {
	for _, id := range r.actorIDs() {
		select {
		case <-r.claimStop:
			return
		default:
		}
		r.claimActor(id)
	}
}

// claimActor claims and starts what the actor's free slots allow.
func (r *Runner) claimActor(id string) {
	r.mu.Lock()
	a := r.actors[id]
	free := a.MaxConcurrent - r.perActr[id]
	nodeID, unregistered := r.nodeID, r.unregistered
	if free <= 0 || unregistered {
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
	eps, err := r.claim(r.runCtx, nodeID, id, free)
	if err != nil && r.runCtx.Err() == nil {
		r.logger.Warn("revenant: claiming failed", slog.String("actor", id), slog.Any("error", err))
	}
	// Episodes read before an error are claimed (on SQLite a RETURNING
	// statement's changes stand once its first row is out): run them.
	for _, ep := range eps {
		if !r.startRun(a, ep, nodeID) {
			// Claimed under an identity this node lost meanwhile: those
			// episodes are orphans already; hand them back at once.
			if _, err := r.store.Release(context.WithoutCancel(r.runCtx), ep.ID, ep.ClaimToken); err != nil {
				r.logger.Info("revenant: releasing an episode claimed under a lost identity", slog.Any("error", err))
			}
		}
	}
}

func (r *Runner) claim(ctx context.Context, nodeID, actorID string, n int) ([]*episodes.Episode, error) {
	if r.config.Bus == nil {
		return r.claimOn(ctx, r.db, nodeID, actorID, n)
	}
	var eps []*episodes.Episode
	var after []bus.Event
	err := r.inTx(ctx, func(tx *sqlx.Tx) error {
		var err error
		if eps, err = r.claimOn(ctx, tx, nodeID, actorID, n); err != nil || len(eps) == 0 {
			return err
		}
		evs := make([]bus.Event, len(eps))
		for i, ep := range eps {
			evs[i] = eventOf(bus.EpisodeStarted, ep)
		}
		return r.publishTx(ctx, tx, &after, evs...)
	})
	if err != nil {
		return nil, err
	}
	r.publishAfter(ctx, after)
	return eps, nil
}

func (r *Runner) claimOn(ctx context.Context, ex dbx.Executor, nodeID, actorID string, n int) ([]*episodes.Episode, error) {
	// This node's stack (or none), and exactly its env.
	rows, err := r.st.EpisodeClaimMany(ctx, ex, &store.ClaimManyParams{Node: nodeID, ActorID: actorID, Limit: n,
		Scope: store.Scope{Stack: r.config.Stack, Env: r.config.Env}})
	// Every row returned is claimed already, even beside an error: run
	// those that can be read, fail those that cannot, so that none is left
	// running with nobody to run it.
	var out []*episodes.Episode
	for _, row := range rows {
		if row.Err != nil {
			r.logger.Error("revenant: a claimed episode's row cannot be read; failing it as corrupt_row",
				slog.String("episode", row.ID.String()), slog.Any("error", row.Err))
			r.failUnreadable(ctx, ex, row)
			continue
		}
		out = append(out, (*episodes.Episode)(row.Episode))
	}
	return out, dbx.Explain(err)
}

// failUnreadable fails a claimed episode that cannot be read, by id and
// token: running it is impossible, and handing it back would only have it
// claimed again.
func (r *Runner) failUnreadable(ctx context.Context, ex dbx.Executor, row store.ClaimedRow) {
	detail, _ := json.Marshal(map[string]string{"message": dbx.CleanText(row.Err.Error(), maxMessageBytes)})
	if err := r.st.EpisodeFailUnreadable(context.WithoutCancel(ctx), ex, row.ID, row.Token, string(detail)); err != nil {
		// Left running under this node: the heartbeat hands it back.
		r.logger.Error("revenant: failing an unreadable episode failed", slog.String("episode", row.ID.String()), slog.Any("error", err))
	}
}
