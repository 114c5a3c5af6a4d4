package ops

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strings"
)

// Cookie names. Their path is the handler's mount prefix, so that two
// dashboards on one host do not share them.
const (
	csrfCookie  = "revenant_csrf"
	flashCookie = "revenant_flash"
)

// CSRF is a double submit bound to the handler: each browser gets a random
// cookie, and forms carry HMAC(secret, cookie). A forged form from another
// site can neither read the cookie nor compute the token; cross-site POSTs
// are refused before that anyway (http.CrossOriginProtection).

// csrfToken returns the token for r's browser, giving it a cookie first
// when it has none.
func (h *Handler) csrfToken(w http.ResponseWriter, r *http.Request) string {
	value := ""
	if c, err := r.Cookie(csrfCookie); err == nil && len(c.Value) >= 32 {
		value = c.Value
	} else {
		var b [32]byte
		_, _ = rand.Read(b[:])
		value = base64.RawURLEncoding.EncodeToString(b[:])
		http.SetCookie(w, h.cookie(r, csrfCookie, value, 0))
	}
	return h.sign("csrf", value)
}

// validToken reports whether r's form carries the token of r's cookie.
func (h *Handler) validToken(r *http.Request) bool {
	c, err := r.Cookie(csrfCookie)
	if err != nil || len(c.Value) < 32 {
		return false
	}
	got := r.PostFormValue("csrf")
	return got != "" && hmac.Equal([]byte(got), []byte(h.sign("csrf", c.Value)))
}

// sign is the HMAC of value under the handler's secret, for purpose.
func (h *Handler) sign(purpose, value string) string {
	m := hmac.New(sha256.New, h.secret)
	m.Write([]byte(purpose + "\x00" + value))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// cookie is one of the handler's cookies: scoped to its mount prefix,
// out of scripts' reach, never sent on cross-site requests, and Secure
// whenever the browser came over HTTPS (to the handler or to a proxy in
// front of it). Over plain HTTP (a port-forward, the CLI on localhost) it
// cannot be Secure, or the browser would drop it.
func (h *Handler) cookie(r *http.Request, name, value string, maxAge int) *http.Cookie {
	secure := r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
	//nolint:gosec // G124: Secure as above; HttpOnly and SameSite are always set.
	return &http.Cookie{Name: name, Value: value, Path: mountPrefix(r) + "/", MaxAge: maxAge,
		HttpOnly: true, Secure: secure, SameSite: http.SameSiteStrictMode}
}

// flash is the one-time message an action leaves for the page it
// redirects to.
type flash struct {
	// OK is false for an error.
	OK  bool
	Msg string
}

// setFlash leaves f for the next page, signed so that nothing else can
// put words in the dashboard's mouth.
func (h *Handler) setFlash(w http.ResponseWriter, r *http.Request, f flash) {
	kind := "e"
	if f.OK {
		kind = "o"
	}
	msg := f.Msg
	if len(msg) > 1500 { // cookies hold about 4 KB
		msg = msg[:1500] + "…"
	}
	payload := base64.RawURLEncoding.EncodeToString([]byte(kind + msg))
	http.SetCookie(w, h.cookie(r, flashCookie, payload+"."+h.sign("flash", payload), 60))
}

// takeFlash returns the flash left for r, if any, and clears it.
func (h *Handler) takeFlash(w http.ResponseWriter, r *http.Request) *flash {
	c, err := r.Cookie(flashCookie)
	if err != nil {
		return nil
	}
	http.SetCookie(w, h.cookie(r, flashCookie, "", -1))
	payload, sig, ok := strings.Cut(c.Value, ".")
	if !ok || !hmac.Equal([]byte(sig), []byte(h.sign("flash", payload))) {
		return nil
	}
	b, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil || len(b) < 1 {
		return nil
	}
	return &flash{OK: b[0] == 'o', Msg: string(b[1:])}
}
