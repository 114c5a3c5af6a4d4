package runner

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"log/slog"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/lib/pq"

	"github.com/revenant-go/revenant/recovery"
)

var (
	errMarkedStopped = errors.New("node row was marked stopped by a sweep")
	errBadConn       = driver.ErrBadConn // returned from Conn.Raw to discard a connection
)

// startListener subscribes to new-work and control notifications with lib/pq's
// reconnecting Listener. Notifications are only wake-ups: after a reconnect
// the claim loop is woken to catch up, and polling still runs, so a lost
// notification delays work by at most PollInterval and never loses it.
func (r *Runner) startListener() {
	l := pq.NewListener(r.config.ListenDSN, 50*time.Millisecond, 5*time.Second, func(ev pq.ListenerEventType, err error) {
		if err != nil {
			r.logger.Warn("revenant: listener", slog.String("event", ev.String()), slog.Any("error", err))
		}
	})
	for _, ch := range []string{recovery.NotifyChannel, ControlChannel} {
		if err := l.Listen(ch); err != nil {
			r.logger.Warn("revenant: LISTEN failed; polling only", slog.String("channel", ch), slog.Any("error", err))
			_ = l.Close()
			return
		}
	}
	r.listener = l
	r.loops.Add(1)
	go func() {
		defer r.loops.Done()
		ping := time.NewTicker(90 * time.Second)
		defer ping.Stop()
		for {
			select {
			case <-r.stopCh:
				return
			case <-ping.C:
				go func() { _ = l.Ping() }()
			case n, ok := <-l.NotificationChannel():
				if !ok {
					return
				}
				r.onNotification(n)
			}
		}
	}()
}

func (r *Runner) onNotification(n *pq.Notification) {
	if n == nil { // reconnected: we may have missed some
		r.signal()
		return
	}
	switch n.Channel {
	case recovery.NotifyChannel:
		r.mu.Lock()
		_, ours := r.actors[n.Extra]
		r.mu.Unlock()
		if ours {
			r.signal()
		}
	case ControlChannel:
		if id, ok := strings.CutPrefix(n.Extra, "cancel:"); ok {
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
	ctx, cancel := context.WithTimeout(r.runCtx, r.config.HeartbeatInterval)
	defer cancel()
	var status string
	var token int64
	err := r.db.QueryRowContext(ctx, r.q.state, id).Scan(&status, &token)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		r.cancelRun(id, ErrLeaseLost)
	case err != nil:
		// The heartbeat's lease check settles it within an interval.
		r.logger.Debug("revenant: checking a cancel notification failed", slog.String("episode", id.String()), slog.Any("error", err))
	case status == "canceled" && token == a.ep.ClaimToken:
		r.cancelRun(id, ErrCanceled)
	case status != "running" || token != a.ep.ClaimToken:
		r.cancelRun(id, ErrLeaseLost)
	default:
		r.logger.Warn("revenant: ignored a cancel notification for an episode its row says is still running under this node",
			slog.String("episode", id.String()))
	}
}
