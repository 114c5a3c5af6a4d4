package runner

import (
	"context"
	"errors"
	"log/slog"
	"strings"

	"github.com/google/uuid"

	"github.com/revenant-go/revenant/internal/dbx"
	"github.com/revenant-go/revenant/internal/safe"
	"github.com/revenant-go/revenant/internal/store"
)

var errMarkedStopped = errors.New("node row was marked stopped by a sweep")

// startListener subscribes to new-work and control notifications. It waits
// only until LISTEN is established or the first connection attempt fails
// (or ctx ends); LISTEN is then retried in the background (see
// internal/notify), and until it is up, or while its connection is down,
// the node polls every PollInterval as it always does. Notifications are only wake-ups: after a
// reconnect the claim loop is woken to catch up, so a lost notification
// delays work by at most PollInterval and never loses it.
func (r *Runner) startListener(ctx context.Context) {
	r.listener = r.st.Listen(ctx, store.ListenConfig{DSN: r.config.ListenDSN, Channels: []string{store.PendingChannel, controlChannel},
		Owner: "runner", Logger: r.logger})
	notes := r.listener.Notifications()
	r.loops.Add(1)
	go func() {
		defer r.loops.Done()
		for {
			select {
			case <-r.stopCh:
				return
			case n, ok := <-notes:
				if !ok {
					return
				}
				_ = safe.Pass(r.runCtx, r.logger, "runner notifications", func() error { r.onNotification(n); return nil })
			}
		}
	}()
}

func (r *Runner) onNotification(n *store.Notification) {
	if n == nil { // reconnected: we may have missed some
		r.signal()
		return
	}
	switch n.Channel {
	case store.PendingChannel:
		r.mu.Lock()
		_, ours := r.actors[n.Payload]
		r.mu.Unlock()
		if ours {
			r.signal()
		}
	case controlChannel:
		if id, ok := strings.CutPrefix(n.Payload, "cancel:"); ok {
			if u, err := uuid.Parse(id); err == nil {
				r.checkCancel(u)
			}
		}
	}
}

// checkCancel acts on a cancel notification only if the episode's row says
// so: any role that can connect may send one, and a run stopped on a false
// one would write nothing and stay running.
func (r *Runner) checkCancel(id uuid.UUID) {
	r.mu.Lock()
	a, ok := r.active[id]
	r.mu.Unlock()
	if !ok {
		return
	}
	// Bounded by the TTL: past it the heartbeat has settled the question.
	ctx, cancel := context.WithTimeout(r.runCtx, r.config.NodeTTL)
	defer cancel()
	status, token, err := r.st.EpisodeState(ctx, r.db, id)
	switch {
	// Only the run it looked at: a retry or requeue of the episode may
	// have been claimed here since, under a newer token.
	case errors.Is(err, dbx.ErrNotFound):
		r.cancelRunAt(id, a.ep.ClaimToken, ErrLeaseLost)
	case err != nil:
		// The heartbeat's lease check settles it within an interval.
		r.logger.Debug("revenant: checking a cancel notification failed", slog.String("episode", id.String()), slog.Any("error", err))
	case status == "canceled" && token == a.ep.ClaimToken:
		r.cancelRunAt(id, a.ep.ClaimToken, ErrCanceled)
	case status != "running" || token != a.ep.ClaimToken:
		r.cancelRunAt(id, a.ep.ClaimToken, ErrLeaseLost)
	default:
		r.logger.Warn("revenant: ignored a cancel notification for an episode its row says is still running under this node",
			slog.String("episode", id.String()))
	}
}
