package ops

import (
	"bytes"
	"context"
	"crypto/rand"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/revenant-go/revenant"
)

//go:embed templates/*.html static/style.css
var assets embed.FS

// Handler serves the health endpoints, /metrics and the dashboard of one
// revenant client. It has no authentication of its own: wrap it in the
// host's (see the package documentation).
type Handler struct {
	c      *revenant.Client
	cfg    Config
	logger *slog.Logger
	mux    *http.ServeMux
	cop    *http.CrossOriginProtection
	// secret keys the CSRF tokens and flash cookies; it is random per
	// Handler, so a restart invalidates open forms (a reload fixes them).
	secret []byte
	pages  map[string]*template.Template
	css    []byte
}

// New returns the handler for c: a started node, or an unstarted client
// used as an admin handle (revenant.New with SkipMigrate, never Started),
// as the CLI does.
func New(c *revenant.Client, cfg *Config) (*Handler, error) {
	if c == nil {
		return nil, errors.New("ops.New: the client is nil; pass the *revenant.Client of this node (or an unstarted one opened for administration)")
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	h := &Handler{c: c, cfg: cfg.withDefaults(), cop: http.NewCrossOriginProtection(), secret: make([]byte, 32)}
	h.logger = h.cfg.Logger
	for _, o := range h.cfg.TrustedOrigins {
		if err := h.cop.AddTrustedOrigin(o); err != nil {
			return nil, fmt.Errorf("ops.New: TrustedOrigins: %w; give origins as scheme://host[:port]", err)
		}
	}
	if _, err := rand.Read(h.secret); err != nil {
		return nil, fmt.Errorf("ops.New: generating the CSRF secret: %w", err)
	}
	var err error
	if h.pages, err = parsePages(); err != nil {
		return nil, fmt.Errorf("ops.New: parsing templates: %w", err)
	}
	if h.css, err = assets.ReadFile("static/style.css"); err != nil {
		return nil, fmt.Errorf("ops.New: %w", err)
	}
	h.routes()
	return h, nil
}

func (h *Handler) routes() {
	m := http.NewServeMux()
	m.HandleFunc("GET /healthz", h.healthz)
	m.HandleFunc("GET /readyz", h.readyz)
	m.HandleFunc("/metrics", h.metrics)
	m.HandleFunc("GET /static/style.css", h.stylesheet)
	m.HandleFunc("GET /{$}", h.page("overview", h.overview))
	m.HandleFunc("GET /recovery", h.page("recovery", h.recoveryPage))
	m.HandleFunc("GET /episodes", h.page("episodes", h.episodesPage))
	m.HandleFunc("GET /episodes/{id}", h.page("episode", h.episodePage))
	m.HandleFunc("GET /dead-letters", h.page("deadletters", h.deadLettersPage))
	m.HandleFunc("GET /workflows", h.page("workflows", h.workflowsPage))
	m.HandleFunc("GET /workflows/{id}", h.page("workflow", h.workflowPage))
	m.HandleFunc("POST /actions/{action}", h.action)
	m.HandleFunc("/actions/{action}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", http.MethodPost)
		h.renderError(w, r, http.StatusMethodNotAllowed, "Actions are taken with the dashboard's buttons (POST), not by following a link.")
	})
	m.HandleFunc("/", h.notFound)
	h.mux = m
}

// ServeHTTP serves r. Mount the handler at the root of a host mux, or
// under a prefix with http.StripPrefix: every link it renders is relative.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mux.ServeHTTP(w, r)
}

// view is what every page template receives.
type view struct {
	// Title is the page's own title; Site the configured one.
	Title, Site string
	// Nav is the page's navigation entry.
	Nav string
	// Base is the relative path from the page to the handler's root:
	// the pages' <base href>, so that every link works under any prefix.
	Base string
	// Actions and ShowData are the Config's.
	Actions, ShowData bool
	// CSRF is the token forms carry.
	CSRF string
	// Return is the page's path relative to the root, where an action
	// posted from it comes back to.
	Return string
	Flash  *flash
	// Error is a failure to show in an error box instead of the page.
	Error string
	// Refresh is the meta refresh period in seconds (0: none).
	Refresh int
	// Data is the page's own data.
	Data any
}

// loader fills a page's data (and may set v.Title); an error renders the
// page's error box instead.
type loader func(ctx context.Context, r *http.Request, v *view) error

// page returns the handler of one dashboard page.
func (h *Handler) page(name string, load loader) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v := h.newView(w, r, name)
		ctx, cancel := context.WithTimeout(r.Context(), h.cfg.PageTimeout)
		defer cancel()
		status := http.StatusOK
		if err := load(ctx, r, v); err != nil {
			status = errorStatus(err)
			v.Error = sanitize(err.Error())
			v.Data = nil
			if status >= 500 {
				h.logger.Error("ops: page failed", "page", name, "err", v.Error)
			}
		}
		tmpl := name
		if v.Error != "" {
			tmpl = "error"
			v.Refresh = 0
		}
		if !refreshable(name, v.Actions) {
			v.Refresh = 0
		}
		h.render(w, status, tmpl, v)
	}
}

func (h *Handler) newView(w http.ResponseWriter, r *http.Request, nav string) *view {
	v := &view{Site: h.cfg.Title, Nav: nav, Base: relBase(r.URL.Path), Actions: h.cfg.Actions, ShowData: h.cfg.ShowData,
		Return: strings.TrimPrefix(r.URL.Path, "/"), Flash: h.takeFlash(w, r)}
	if r.URL.RawQuery != "" {
		v.Return += "?" + r.URL.RawQuery
	}
	if h.cfg.Actions {
		v.CSRF = h.csrfToken(w, r)
	}
	if h.cfg.Refresh > 0 {
		v.Refresh = int(h.cfg.Refresh / time.Second)
	}
	return v
}

// refreshable reports whether a page may reload itself: not when it holds
// a form (filters being typed, buttons), which a reload would disturb.
func refreshable(name string, actions bool) bool {
	switch name {
	case "recovery":
		return true
	case "overview", "episode", "workflow":
		return !actions
	}
	return false
}

// render executes a template into a buffer first, so that a template
// error never leaves half a page.
func (h *Handler) render(w http.ResponseWriter, status int, name string, v *view) {
	t, ok := h.pages[name]
	if !ok {
		t = h.pages["error"]
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", v); err != nil {
		h.logger.Error("ops: rendering a page", "page", name, "err", err)
		buf.Reset()
		v.Error, v.Data = "The page could not be rendered; the server log says why.", nil
		status = http.StatusInternalServerError
		if err := h.pages["error"].ExecuteTemplate(&buf, "layout", v); err != nil {
			http.Error(w, v.Error, status)
			return
		}
	}
	securityHeaders(w)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// securityHeaders keeps the dashboard out of frames, and scripts (there
// are none) and foreign styles out of its pages.
func securityHeaders(w http.ResponseWriter) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; base-uri 'self'; frame-ancestors 'none'")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Referrer-Policy", "same-origin")
	hd.Set("Cache-Control", "no-store")
}

// renderError shows a message (a refused action, an unknown page) in the
// dashboard's layout.
func (h *Handler) renderError(w http.ResponseWriter, r *http.Request, status int, msg string) {
	v := &view{Site: h.cfg.Title, Title: http.StatusText(status), Base: relBase(r.URL.Path), Error: msg}
	h.render(w, status, "error", v)
}

func (h *Handler) notFound(w http.ResponseWriter, r *http.Request) {
	h.renderError(w, r, http.StatusNotFound, fmt.Sprintf("There is no page at %q.", r.URL.Path))
}

// stylesheet serves the one CSS file, cached for an hour.
func (h *Handler) stylesheet(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/css; charset=utf-8")
	w.Header().Set("Cache-Control", "public, max-age=3600")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	http.ServeContent(w, r, "style.css", time.Time{}, bytes.NewReader(h.css))
}

// relBase is the relative path from a page at path (as the handler sees
// it, prefix stripped) back to the handler's root.
func relBase(path string) string {
	n := strings.Count(path, "/") - 1
	if n <= 0 {
		return "./"
	}
	return strings.Repeat("../", n)
}

// mountPrefix is the path prefix stripped before the handler saw r (""
// at the root), from the original request URI: cookies are scoped to it.
func mountPrefix(r *http.Request) string {
	u, err := url.ParseRequestURI(r.RequestURI)
	if err != nil {
		return ""
	}
	uri := u.EscapedPath()
	if p := r.URL.EscapedPath(); p != "" && strings.HasSuffix(uri, p) {
		return strings.TrimSuffix(uri, p)
	}
	return ""
}
