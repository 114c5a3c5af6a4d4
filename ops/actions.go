package ops

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/google/uuid"

	"github.com/revenant-go/revenant/breakers"
	"github.com/revenant-go/revenant/episodes"
)

// maxFormBytes bounds an action's form: a few ids and a token.
const maxFormBytes = 16 << 10

// action applies one button's POST, then redirects (303) back to the page
// it came from with a flash message saying what happened. It refuses, with
// 403, when actions are off, the request is cross-site, or the CSRF token
// is missing or wrong.
func (h *Handler) action(w http.ResponseWriter, r *http.Request) {
	if !h.cfg.Actions {
		h.renderError(w, r, http.StatusForbidden, "Actions are disabled: this dashboard is read-only (ops.Config.Actions is false).")
		return
	}
	if err := h.cop.Check(r); err != nil {
		h.renderError(w, r, http.StatusForbidden, "Refused: a cross-origin request cannot take actions ("+err.Error()+"). Use the dashboard's own buttons.")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		h.renderError(w, r, http.StatusBadRequest, "The form could not be read: "+err.Error())
		return
	}
	if !h.validToken(r) {
		h.renderError(w, r, http.StatusForbidden, "Refused: the CSRF token is missing or does not match this browser's cookie (the page may be older than the server). Reload the page and try again.")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.PageTimeout)
	defer cancel()
	name := r.PathValue("action")
	msg, err := h.apply(ctx, r, name)
	switch {
	case errors.Is(err, errNoSuchPage):
		h.renderError(w, r, http.StatusNotFound, fmt.Sprintf("There is no action %q.", name))
		return
	case errors.Is(err, errBadRequest):
		h.renderError(w, r, http.StatusBadRequest, err.Error())
		return
	case err != nil:
		text := sanitize(err.Error())
		h.logger.Warn("ops: action refused or failed", "action", name, "operator", h.cfg.Operator(r), "err", text)
		h.setFlash(w, r, flash{Msg: msg + " failed: " + text})
	default:
		h.logger.Info("ops: action", "action", name, "operator", h.cfg.Operator(r), "target", r.PostFormValue("id")+r.PostFormValue("actor"))
		h.setFlash(w, r, flash{OK: true, Msg: msg})
	}
	w.Header().Set("Location", relBase(r.URL.Path)+safeReturn(r.PostFormValue("return")))
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusSeeOther)
}

// apply runs one action. It returns what was done, or, with an error,
// what was attempted.
func (h *Handler) apply(ctx context.Context, r *http.Request, name string) (string, error) {
	op := h.cfg.Operator(r)
	switch name {
	case "requeue", "cancel", "resume-workflow", "cancel-workflow":
		id, err := uuid.Parse(r.PostFormValue("id"))
		if err != nil {
			return "", fmt.Errorf("%w: the form's id %q is not a UUID", errBadRequest, r.PostFormValue("id"))
		}
		switch name {
		case "requeue":
			if _, err := h.c.Requeue(ctx, id, episodes.RequeueOptions{By: op, Reason: "requeued from the dashboard"}); err != nil {
				return "Requeue of episode " + id.String(), err
			}
			return "Episode " + id.String() + " requeued: pending again, with fresh attempts.", nil
		case "cancel":
			if _, err := h.c.Cancel(ctx, id, "canceled from the dashboard by "+op); err != nil {
				return "Cancel of episode " + id.String(), err
			}
			return "Episode " + id.String() + " canceled.", nil
		case "resume-workflow":
			if err := h.c.ResumeWorkflow(ctx, id); err != nil {
				return "Resume of workflow instance " + id.String(), err
			}
			return "Resume of workflow instance " + id.String() + " requested: its status below shows when it is applied.", nil
		default:
			if err := h.c.CancelWorkflow(ctx, id, "canceled from the dashboard by "+op); err != nil {
				return "Cancel of workflow instance " + id.String(), err
			}
			return "Cancel of workflow instance " + id.String() + " requested: its status below shows when it is applied.", nil
		}
	case "open-breaker", "close-breaker":
		key := breakers.Key{ActorID: r.PostFormValue("actor"), Stack: r.PostFormValue("stack"), Env: r.PostFormValue("env")}
		if key.ActorID == "" {
			return "", fmt.Errorf("%w: the form names no actor", errBadRequest)
		}
		what := fmt.Sprintf("breaker of actor %q (stack %q, env %q)", key.ActorID, key.Stack, key.Env)
		if name == "open-breaker" {
			if _, err := h.c.Breakers().Open(ctx, key, "opened from the dashboard by "+op); err != nil {
				return "Opening the " + what, err
			}
			return "The " + what + " is open: no node claims its episodes until it is closed.", nil
		}
		if _, err := h.c.Breakers().Close(ctx, key, "closed from the dashboard by "+op); err != nil {
			return "Closing the " + what, err
		}
		return "The " + what + " is closed.", nil
	}
	return "", errNoSuchPage
}

// safeReturn keeps a form's return path relative to the handler's root,
// so that an action can only redirect within the dashboard.
func safeReturn(p string) string {
	if p == "" || strings.HasPrefix(p, "/") || strings.HasPrefix(p, "\\") || strings.Contains(p, "://") ||
		strings.Contains(p, "..") || strings.ContainsAny(p, "\r\n\\") {
		return ""
	}
	return p
}
