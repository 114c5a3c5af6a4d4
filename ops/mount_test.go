package ops_test

import (
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant/internal/testdb"
	"github.com/revenant-go/revenant/ops"
)

var (
	baseHref = regexp.MustCompile(`<base href="([^"]*)">`)
	linkAttr = regexp.MustCompile(`(?:href|src)="([^"]*)"|<form method="get" action="([^"]*)"`)
	postForm = regexp.MustCompile(`<form method="post" action="([^"]*)"`)
)

// Mounted under a prefix with http.StripPrefix, every link, form and
// redirect stays under it: crawl the dashboard from its root and follow
// every link.
func TestMountedUnderPrefix(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		f := newFixture(t, driver)
		srv, cl := server(t, newHandler(t, f.c, &ops.Config{Actions: true}), "/revenant")
		start := srv.URL + "/revenant/"
		seen := map[string]bool{start: true}
		queue := []string{start}
		posts := map[string]bool{}
		for len(queue) > 0 {
			page := queue[0]
			queue = queue[1:]
			status, body := get(t, cl, page)
			require.Equal(t, http.StatusOK, status, "GET %s", page)
			pageURL, err := url.Parse(page)
			require.NoError(t, err)
			m := baseHref.FindStringSubmatch(body)
			require.NotNil(t, m, "every page sets its base: %s", page)
			base := pageURL.ResolveReference(mustURL(t, html.UnescapeString(m[1])))
			for _, l := range linkAttr.FindAllStringSubmatch(strings.Replace(body, m[0], "", 1), -1) {
				raw := html.UnescapeString(l[1] + l[2])
				require.False(t, strings.HasPrefix(raw, "/") || strings.Contains(raw, "://"), "link %q on %s is not relative", raw, page)
				u := base.ResolveReference(mustURL(t, raw))
				require.True(t, strings.HasPrefix(u.Path, "/revenant/"), "link %q on %s leaves the prefix: %s", raw, page, u)
				if u.Path == "/revenant/static/style.css" {
					continue
				}
				if !seen[u.String()] && len(seen) < 60 {
					seen[u.String()] = true
					queue = append(queue, u.String())
				}
			}
			for _, a := range postForm.FindAllStringSubmatch(body, -1) {
				posts[base.ResolveReference(mustURL(t, html.UnescapeString(a[1]))).Path] = true
			}
		}
		require.Greater(t, len(seen), 15, "the crawl reached the pages")
		for _, p := range []string{"/revenant/recovery", "/revenant/dead-letters", "/revenant/workflows",
			"/revenant/episodes/" + f.orphan.String(), "/revenant/workflows/" + f.wf.String()} {
			require.True(t, seen[srv.URL+p], "the crawl reached %s", p)
		}
		require.True(t, posts["/revenant/actions/requeue"], "forms post under the prefix: %v", posts)

		// An action's redirect and its flash stay under the prefix too.
		_, body := get(t, cl, srv.URL+"/revenant/episodes/"+f.dead.String())
		resp, _ := post(t, cl, srv.URL+"/revenant/actions/requeue", url.Values{"csrf": {token(t, body)}, "id": {f.dead.String()},
			"return": {"episodes/" + f.dead.String()}}, nil)
		require.Equal(t, http.StatusSeeOther, resp.StatusCode)
		next := resp.Request.URL.ResolveReference(mustURL(t, resp.Header.Get("Location")))
		require.Equal(t, "/revenant/episodes/"+f.dead.String(), next.Path)
		status, body := get(t, cl, next.String())
		require.Equal(t, http.StatusOK, status)
		require.Contains(t, body, `class="flash ok"`, "the flash cookie is scoped to the prefix")

		status, body = get(t, cl, srv.URL+"/revenant/healthz")
		require.Equal(t, http.StatusOK, status)
		require.Equal(t, "ok\n", body)
	})
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	require.NoError(t, err)
	return u
}
