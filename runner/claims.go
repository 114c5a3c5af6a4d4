package runner

import (
	"context"
	"database/sql"
	"encoding/json"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"

	"github.com/revenant-go/revenant"
	"github.com/revenant-go/revenant/bus"
	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/internal/dbx"
	"github.com/revenant-go/revenant/internal/safe"
	"github.com/revenant-go/revenant/internal/store"
	"github.com/revenant-go/revenant/recovery"
)

// Claiming: the claim loop takes pending episodes of this node's actors, as
// many as their free slots allow, one compare-and-set statement each.

func (r *Runner) claimLoop() {
	defer r.loops.Done()
	t := time.NewTicker(r.config.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-r.stopCh:
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
		case <-r.stopCh:
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
			evs[i] = EventOf(bus.EpisodeStarted, ep)
		}
		return r.publishTx(ctx, tx, &after, evs...)
	})
	if err != nil {
		return nil, err
	}
	r.publishAfter(ctx, after)
	return eps, nil
}

func (r *Runner) claimOn(ctx context.Context, ex revenant.Executor, nodeID, actorID string, n int) ([]*episodes.Episode, error) {
	// This node's stack (or none), and exactly its env.
	scope, scopeArgs := recovery.Scope{Stack: r.config.Stack, Env: r.config.Env}.Where("", 4)
	args := append([]any{nodeID, actorID, n}, scopeArgs...)
	query := claimSQL(scope)
	if r.sqlite {
		query = sqliteClaimSQL(scope)
	}
	rows, err := ex.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, dbx.Explain(err)
	}
	defer rows.Close()
	var out []*episodes.Episode
	var unreadable []leaseState
	// Every row returned is claimed already: read them all, whatever one
	// of them holds, so that none is left running with nobody to run it.
	for rows.Next() {
		row, err := store.ScanEpisode(rows)
		if err != nil {
			id, token := claimedIDAndToken(rows)
			r.logger.Error("revenant: a claimed episode's row cannot be read; failing it as corrupt_row",
				slog.String("episode", id.String()), slog.Any("error", err))
			unreadable = append(unreadable, leaseState{id: id, token: token, kind: err.Error()})
			continue
		}
		out = append(out, (*episodes.Episode)(row))
	}
	err = rows.Err()
	rows.Close()
	for _, u := range unreadable {
		r.failUnreadable(ctx, ex, u)
	}
	return out, err
}

// claimedIDAndToken reads the id and claim token of a claimed row that
// could not be scanned whole (they come first and thirteenth in
// store.EpisodeColumns).
func claimedIDAndToken(rows *sql.Rows) (uuid.UUID, int64) {
	id := dbx.RowUUID(rows)
	cols, err := rows.Columns()
	if err != nil || len(cols) < 13 {
		return id, 0
	}
	dest := make([]any, len(cols))
	for i := range dest {
		dest[i] = new(any)
	}
	var token sql.NullInt64
	dest[12] = &token
	_ = rows.Scan(dest...)
	return id, token.Int64
}

// failUnreadable fails a claimed episode that cannot be read, by id and
// token: running it is impossible, and handing it back would only have it
// claimed again.
func (r *Runner) failUnreadable(ctx context.Context, ex revenant.Executor, u leaseState) {
	detail, _ := json.Marshal(map[string]string{"message": dbx.CleanText(u.kind, maxMessageBytes)})
	if _, err := ex.ExecContext(context.WithoutCancel(ctx), r.q.failUnreadable, u.id, u.token, string(detail)); err != nil {
		// Left running under this node: the heartbeat hands it back.
		r.logger.Error("revenant: failing an unreadable episode failed", slog.String("episode", u.id.String()), slog.Any("error", err))
	}
}
