package runner

import (
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
				r.cancelRun(u, ErrCanceled)
			}
		}
	}
}
