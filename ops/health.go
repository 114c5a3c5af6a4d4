package ops

import (
	"context"
	"errors"
	"fmt"
	"net/http"
)

// healthz is liveness: the process serves HTTP. It never asks the
// database, so that a database outage does not get every pod restarted
// (which would not bring the database back).
func (h *Handler) healthz(w http.ResponseWriter, _ *http.Request) {
	plain(w, http.StatusOK, "ok\n")
}

// readyz is readiness: the node can do its work (Client.Ready: database
// reachable, schema current, node registered with a fresh heartbeat, not
// stopping), answered within ReadyTimeout.
func (h *Handler) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.ReadyTimeout)
	defer cancel()
	// A server that accepts connections and never answers holds lib/pq
	// past its context (a connection's startup ignores it): the probe
	// answers at the deadline anyway, and the check ends when the driver
	// gives up (at most one per pooled connection).
	result := make(chan error, 1)
	go func() { result <- h.c.Ready(ctx) }()
	var err error
	select {
	case err = <-result:
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err == nil {
		plain(w, http.StatusOK, "ready\n")
		return
	}
	msg := sanitize(err.Error())
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) || errors.Is(err, context.DeadlineExceeded) {
		msg = fmt.Sprintf("no answer within %v (is the database reachable?): %s", h.cfg.ReadyTimeout, msg)
	}
	plain(w, http.StatusServiceUnavailable, "not ready: "+msg+"\n")
}

// metrics serves Config.Metrics.
func (h *Handler) metrics(w http.ResponseWriter, r *http.Request) {
	if h.cfg.Metrics == nil {
		plain(w, http.StatusNotFound, "no metrics: this handler was built without ops.Config.Metrics\n")
		return
	}
	h.cfg.Metrics.ServeHTTP(w, r)
}

func plain(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}
