package ops_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/internal/testdb"
	"github.com/revenant-go/revenant/ops"
	"github.com/revenant-go/revenant/workflow"
)

// Every page renders what it is for, and the read-only dashboard shows no
// personal data and no button.
func TestPagesRender(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		f := newFixture(t, driver)
		srv, cl := server(t, newHandler(t, f.c, nil), "")
		var bodies []string
		page := func(path string, wantStatus int, contains ...string) string {
			t.Helper()
			status, body := get(t, cl, srv.URL+path)
			require.Equal(t, wantStatus, status, "GET %s: %s", path, body)
			for _, s := range contains {
				require.Contains(t, body, s, "GET %s", path)
			}
			bodies = append(bodies, body)
			return body
		}

		// The overview answers "what is stuck?".
		body := page("/", http.StatusOK, deadNode, `class="badge lv-dead"`, "its owner&#39;s heartbeat lapsed",
			`data-episode="`+f.orphan.String()+`" data-why="orphan"`, esc(f.explainOrphan),
			`data-episode="`+f.unclaimed.String()+`" data-why="unclaimable"`, "nobody-runs-me",
			"maintenance window", `class="badge br-open"`, `href="recovery"`)
		require.Contains(t, f.explainOrphan, "restart it", "the fixture's orphan is restarted by its dead owner's policy")
		require.NotContains(t, body, `data-episode="`+f.dead.String()+`"`, "a dead letter is not stuck")

		page("/recovery", http.StatusOK, `data-episode="`+f.orphan.String()+`"`, deadNode, `class="act-restart"`, "published by the dead owner")
		body = page("/episodes", http.StatusOK, f.orphan.String(), f.dead.String(), f.unclaimed.String())
		require.NotContains(t, body, `method="post"`)
		body = page("/episodes?status=failed", http.StatusOK, f.dead.String())
		require.NotContains(t, body, f.orphan.String())
		page("/episodes?actor=mailer", http.StatusOK, f.orphan.String())
		page("/episodes?status=bogus", http.StatusBadRequest, "unknown status")
		page("/episodes?after=nope", http.StatusBadRequest, "start again from the first page")

		page("/episodes/"+f.orphan.String(), http.StatusOK, esc(f.explainOrphan), "render-template", "send",
			`<svg class="bar"`, "hidden: they may hold personal data", "owner_ttl_expired")
		page("/episodes/"+f.dead.String(), http.StatusOK, esc(f.explainDL), "card_declined", "the bank said no")
		page("/episodes/"+f.unclaimed.String(), http.StatusOK, "no live node in its scope", "No journal entries")
		page("/episodes/"+uuid.NewString(), http.StatusNotFound, "not found")
		page("/episodes/not-an-id", http.StatusBadRequest, "is not an episode id")

		body = page("/dead-letters", http.StatusOK, f.dead.String(), "card_declined")
		require.NotContains(t, body, f.orphan.String())
		page("/dead-letters?error_class=nothing-like-it", http.StatusOK, "No dead letters match")

		page("/workflows", http.StatusOK, f.wf.String(), "fulfil", "order-42")
		page("/workflows?status=nonsense", http.StatusBadRequest, "unknown workflow status")
		body = page("/workflows/"+f.wf.String(), http.StatusOK, `<svg class="dag"`, `data-step="reserve"`,
			`data-step="charge"`, `data-step="ship"`, `id="undefined"`)
		require.NotContains(t, body, `class="edge"`, "without the definition's shape there are no edges")
		page("/workflows/"+uuid.NewString(), http.StatusNotFound)
		page("/no-such-page", http.StatusNotFound, "There is no page")

		for _, b := range bodies {
			require.NotContains(t, b, marker, "personal data stays hidden without ShowData")
			require.NotContains(t, b, `method="post"`, "read-only: no buttons")
			require.NotContains(t, b, "data-action")
		}

		status, body := get(t, cl, srv.URL+"/healthz")
		require.Equal(t, http.StatusOK, status)
		require.Equal(t, "ok\n", body)
		status, body = get(t, cl, srv.URL+"/readyz")
		require.Equal(t, http.StatusServiceUnavailable, status, "an unstarted admin client is no node")
		require.Contains(t, body, "not ready")
		require.Contains(t, body, "not started")
		status, _ = get(t, cl, srv.URL+"/metrics")
		require.Equal(t, http.StatusNotFound, status)
		resp, err := cl.Get(srv.URL + "/static/style.css")
		require.NoError(t, err)
		require.NoError(t, resp.Body.Close())
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.Contains(t, resp.Header.Get("Content-Type"), "text/css")
	})
}

// ShowData shows an episode's input, metadata and step outputs on its
// page, and only there.
func TestShowData(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		f := newFixture(t, driver)
		srv, cl := server(t, newHandler(t, f.c, &ops.Config{ShowData: true}), "")
		status, body := get(t, cl, srv.URL+"/episodes/"+f.orphan.String())
		require.Equal(t, http.StatusOK, status)
		require.Contains(t, body, `&#34;email&#34;: &#34;`+marker)
		require.Contains(t, body, `&#34;note&#34;: &#34;`+marker)
		require.Contains(t, body, `&#34;Dear `+marker, "step outputs")
		for _, p := range []string{"/", "/episodes", "/dead-letters", "/recovery", "/workflows", "/workflows/" + f.wf.String()} {
			status, body := get(t, cl, srv.URL+p)
			require.Equal(t, http.StatusOK, status, p)
			require.NotContains(t, body, marker, "lists never show data: %s", p)
		}
	})
}

// Metrics are served when configured.
func TestMetricsHandler(t *testing.T) {
	f := newFixture(t, testdb.SQLite)
	m := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("revenant_up 1\n")) })
	srv, cl := server(t, newHandler(t, f.c, &ops.Config{Metrics: m}), "")
	status, body := get(t, cl, srv.URL+"/metrics")
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, "revenant_up 1\n", body)
}

// Actions are POSTs with a CSRF token, refused (403) without it or from
// another site; applied with it, then redirected back with a flash
// message; a refused transition is a message, not a 500.
func TestActions(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		f := newFixture(t, driver)
		ctx := context.Background()
		h := newHandler(t, f.c, &ops.Config{Actions: true, Operator: func(*http.Request) string { return "alice" }})
		srv, cl := server(t, h, "")
		status, body := get(t, cl, srv.URL+"/dead-letters")
		require.Equal(t, http.StatusOK, status)
		require.Contains(t, body, `data-action="requeue"`)
		tok := token(t, body)
		requeue := url.Values{"id": {f.dead.String()}, "return": {"dead-letters"}}

		resp, body := post(t, cl, srv.URL+"/actions/requeue", requeue, nil)
		require.Equal(t, http.StatusForbidden, resp.StatusCode, "no token")
		require.Contains(t, body, "CSRF token is missing")
		bad := url.Values{"csrf": {"forged"}}
		for k, v := range requeue {
			bad[k] = v
		}
		resp, _ = post(t, cl, srv.URL+"/actions/requeue", bad, nil)
		require.Equal(t, http.StatusForbidden, resp.StatusCode, "a wrong token")
		requeue.Set("csrf", tok)
		resp, body = post(t, cl, srv.URL+"/actions/requeue", requeue, http.Header{"Sec-Fetch-Site": {"cross-site"}})
		require.Equal(t, http.StatusForbidden, resp.StatusCode, "a cross-site request, even with the token")
		require.Contains(t, body, "cross-origin")
		other, _ := server(t, newHandler(t, f.c, &ops.Config{Actions: true}), "")
		resp, _ = post(t, &http.Client{Jar: cl.Jar, CheckRedirect: cl.CheckRedirect}, other.URL+"/actions/requeue", requeue, nil)
		require.Equal(t, http.StatusForbidden, resp.StatusCode, "another handler's token")
		ep, err := f.c.Episodes().Get(ctx, f.dead)
		require.NoError(t, err)
		require.Equal(t, episodes.StatusFailed, ep.Status, "nothing refused was applied")

		resp, _ = post(t, cl, srv.URL+"/actions/requeue", requeue, nil)
		require.Equal(t, http.StatusSeeOther, resp.StatusCode)
		require.Equal(t, "../dead-letters", resp.Header.Get("Location"), "relative, back to the page")
		ep, err = f.c.Episodes().Get(ctx, f.dead)
		require.NoError(t, err)
		require.Equal(t, episodes.StatusPending, ep.Status)
		require.Len(t, ep.Requeues, 1)
		require.Equal(t, "alice", ep.Requeues[0].By)
		_, body = get(t, cl, srv.URL+"/dead-letters")
		require.Contains(t, body, `class="flash ok"`)
		require.Contains(t, body, "requeued")
		_, body = get(t, cl, srv.URL+"/dead-letters")
		require.NotContains(t, body, `class="flash`, "a flash is shown once")

		// Requeueing it again is an illegal transition: said on the page.
		resp, _ = post(t, cl, srv.URL+"/actions/requeue", requeue, nil)
		require.Equal(t, http.StatusSeeOther, resp.StatusCode)
		status, body = get(t, cl, srv.URL+"/dead-letters")
		require.Equal(t, http.StatusOK, status)
		require.Contains(t, body, `class="flash bad"`)
		require.Contains(t, body, "Requeue of episode "+f.dead.String()+" failed")

		// Cancel an open episode from its page.
		_, body = get(t, cl, srv.URL+"/episodes/"+f.unclaimed.String())
		require.Contains(t, body, `data-action="cancel"`)
		require.NotContains(t, body, `data-action="requeue"`, "a pending episode cannot be requeued")
		resp, _ = post(t, cl, srv.URL+"/actions/cancel", url.Values{"csrf": {token(t, body)}, "id": {f.unclaimed.String()},
			"return": {"episodes/" + f.unclaimed.String()}}, nil)
		require.Equal(t, http.StatusSeeOther, resp.StatusCode)
		require.Equal(t, "../episodes/"+f.unclaimed.String(), resp.Header.Get("Location"))
		ep, err = f.c.Episodes().Get(ctx, f.unclaimed)
		require.NoError(t, err)
		require.Equal(t, episodes.StatusCanceled, ep.Status)
		require.Contains(t, ep.ErrorClass+string(ep.ErrorDetail), "alice")

		// Breakers: close the open one, open it again.
		_, body = get(t, cl, srv.URL+"/")
		require.Contains(t, body, `data-action="close-breaker"`)
		breaker := url.Values{"csrf": {tok}, "actor": {"charger"}, "return": {""}}
		resp, _ = post(t, cl, srv.URL+"/actions/close-breaker", breaker, nil)
		require.Equal(t, http.StatusSeeOther, resp.StatusCode)
		require.Equal(t, "../", resp.Header.Get("Location"))
		b, err := f.c.Breakers().List(ctx)
		require.NoError(t, err)
		require.Len(t, b, 1)
		require.Equal(t, "closed", string(b[0].State))
		resp, _ = post(t, cl, srv.URL+"/actions/open-breaker", breaker, nil)
		require.Equal(t, http.StatusSeeOther, resp.StatusCode)
		b, err = f.c.Breakers().List(ctx)
		require.NoError(t, err)
		require.Equal(t, "open", string(b[0].State))
		require.Contains(t, b[0].Reason, "alice")

		// Cancel the workflow instance (this client registered it: at once).
		_, body = get(t, cl, srv.URL+"/workflows/"+f.wf.String())
		require.Contains(t, body, `data-action="cancel-workflow"`)
		require.NotContains(t, body, `data-action="resume-workflow"`, "a running instance is not resumed")
		resp, _ = post(t, cl, srv.URL+"/actions/resume-workflow", url.Values{"csrf": {tok}, "id": {f.wf.String()},
			"return": {"workflows/" + f.wf.String()}}, nil)
		require.Equal(t, http.StatusSeeOther, resp.StatusCode, "resuming a running instance is said on the page, not a 500")
		status, body = get(t, cl, srv.URL+"/workflows/"+f.wf.String())
		require.Equal(t, http.StatusOK, status)
		require.Contains(t, body, "Resume of workflow instance "+f.wf.String())
		resp, _ = post(t, cl, srv.URL+"/actions/cancel-workflow", url.Values{"csrf": {tok}, "id": {f.wf.String()},
			"return": {"workflows/" + f.wf.String()}}, nil)
		require.Equal(t, http.StatusSeeOther, resp.StatusCode)
		w, err := f.c.Inspect().Workflow(ctx, f.wf)
		require.NoError(t, err)
		require.Equal(t, workflow.StatusCanceled, w.Status)

		// A redirect never leaves the dashboard.
		resp, _ = post(t, cl, srv.URL+"/actions/close-breaker", url.Values{"csrf": {tok}, "actor": {"charger"},
			"return": {"//evil.example/x"}}, nil)
		require.Equal(t, "../", resp.Header.Get("Location"))

		resp, _ = post(t, cl, srv.URL+"/actions/explode", url.Values{"csrf": {tok}}, nil)
		require.Equal(t, http.StatusNotFound, resp.StatusCode)
		resp, body = post(t, cl, srv.URL+"/actions/requeue", url.Values{"csrf": {tok}, "id": {"not-a-uuid"}}, nil)
		require.Equal(t, http.StatusBadRequest, resp.StatusCode)
		require.Contains(t, body, "is not a UUID")
		status, _ = get(t, cl, srv.URL+"/actions/requeue")
		require.Equal(t, http.StatusMethodNotAllowed, status, "actions are POST only")
	})
}

// With actions off, no page has a button and every POST is refused.
func TestActionsDisabled(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		f := newFixture(t, driver)
		srv, cl := server(t, newHandler(t, f.c, &ops.Config{}), "")
		for _, p := range []string{"/", "/dead-letters", "/episodes/" + f.dead.String(), "/episodes/" + f.orphan.String(),
			"/workflows/" + f.wf.String()} {
			status, body := get(t, cl, srv.URL+p)
			require.Equal(t, http.StatusOK, status, p)
			require.NotContains(t, body, `method="post"`, p)
			require.NotContains(t, body, `name="csrf"`, p)
		}
		for _, a := range []string{"requeue", "cancel", "resume-workflow", "cancel-workflow", "open-breaker", "close-breaker"} {
			resp, body := post(t, cl, srv.URL+"/actions/"+a, url.Values{"id": {f.dead.String()}, "actor": {"charger"}}, nil)
			require.Equal(t, http.StatusForbidden, resp.StatusCode, a)
			require.Contains(t, body, "Actions are disabled")
		}
		ep, err := f.c.Episodes().Get(context.Background(), f.dead)
		require.NoError(t, err)
		require.Equal(t, episodes.StatusFailed, ep.Status)
	})
}

// Pages come a PageSize at a time, the filters kept across pages.
func TestEpisodePaging(t *testing.T) {
	f := newFixture(t, testdb.SQLite)
	srv, cl := server(t, newHandler(t, f.c, &ops.Config{PageSize: 1}), "")
	walk := func(first string) []string {
		var ids []string
		for next := srv.URL + first; next != ""; {
			require.Less(t, len(ids), 10)
			status, body := get(t, cl, next)
			require.Equal(t, http.StatusOK, status)
			rows := episodeRow.FindAllStringSubmatch(body, -1)
			require.Len(t, rows, 1, next)
			ids = append(ids, rows[0][1])
			next = ""
			if m := nextLink.FindStringSubmatch(body); m != nil {
				next = srv.URL + "/" + strings.ReplaceAll(m[1], "&amp;", "&")
				require.Contains(t, next, "status=pending", "the filter is kept")
			}
		}
		return ids
	}
	// The fixture's pending episodes: the unclaimable one and the
	// workflow's first step.
	ids := walk("/episodes?status=pending&actor=")
	require.Len(t, ids, 2)
	require.NotEqual(t, ids[0], ids[1])
	require.Contains(t, ids, f.unclaimed.String())
}

// A database error shows an error box (500 or 503), never a panic or a
// half page, and is logged.
func TestDatabaseErrorPage(t *testing.T) {
	f := newFixture(t, testdb.SQLite)
	srv, cl := server(t, newHandler(t, f.c, nil), "")
	require.NoError(t, f.s.DB.Close())
	for _, p := range []string{"/", "/recovery", "/episodes", "/episodes/" + f.orphan.String(), "/dead-letters", "/workflows",
		"/workflows/" + f.wf.String()} {
		status, body := get(t, cl, srv.URL+p)
		require.GreaterOrEqual(t, status, 500, p)
		require.Contains(t, body, `<div class="errorbox" role="alert"><strong>Error:</strong>`, p)
		require.Contains(t, body, "database is closed", p)
		require.Contains(t, body, "</html>", "a whole page: %s", p)
	}
	status, _ := get(t, cl, srv.URL+"/healthz")
	require.Equal(t, http.StatusOK, status)
}

// Refresh reloads the pages that hold no form.
func TestRefresh(t *testing.T) {
	f := newFixture(t, testdb.SQLite)
	refresh := `<meta http-equiv="refresh" content="7">`
	srv, cl := server(t, newHandler(t, f.c, &ops.Config{Refresh: 7 * time.Second}), "")
	_, body := get(t, cl, srv.URL+"/")
	require.Contains(t, body, refresh)
	_, body = get(t, cl, srv.URL+"/episodes")
	require.NotContains(t, body, refresh, "the filters are a form")
	srv, cl = server(t, newHandler(t, f.c, &ops.Config{Refresh: 7 * time.Second, Actions: true}), "")
	_, body = get(t, cl, srv.URL+"/")
	require.NotContains(t, body, refresh, "buttons")
	_, body = get(t, cl, srv.URL+"/recovery")
	require.Contains(t, body, refresh)
}

// Config mistakes are refused with a way out.
func TestConfigValidation(t *testing.T) {
	f := newFixture(t, testdb.SQLite)
	_, err := ops.New(nil, nil)
	require.ErrorContains(t, err, "client is nil")
	_, err = ops.New(f.c, &ops.Config{PageSize: -1, ReadyTimeout: -time.Second, Refresh: time.Millisecond})
	require.ErrorContains(t, err, "PageSize is -1; set 1 to 1000")
	require.ErrorContains(t, err, "ReadyTimeout")
	require.ErrorContains(t, err, "Refresh")
	_, err = ops.New(f.c, &ops.Config{TrustedOrigins: []string{"not an origin"}})
	require.ErrorContains(t, err, "TrustedOrigins")
	_, err = ops.New(f.c, &ops.Config{Sweep: &ops.Sweep{Scope: "every stack and env"}})
	require.ErrorContains(t, err, "Config.Sweep lacks its Scope, DryRun or Explain")
}
