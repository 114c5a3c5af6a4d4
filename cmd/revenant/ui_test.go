package main

import (
	"bufio"
	"context"
	"html"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/internal/store"
	"github.com/revenant-go/revenant/internal/testdb"
)

// ui serves the dashboard on loopback, prints its URL, and stops
// gracefully on SIGINT.
func TestUIServesTheDashboard(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		f := newFixture(t, driver)
		// An orphan in a scope of its own: the admin client's sweep (no
		// stack, no env) would not see it; 'revenant sweep' does, and so
		// must the pages.
		f.node("dead-1", -time.Minute, []string{"mailer"}, map[string]store.ActorPolicy{"mailer": {Recovery: "restart"}})
		orphan := f.running(episodes.CreateParams{ActorID: "mailer", SourceStack: "shop", SourceEnv: "prod"}, "dead-1")
		var x explainJSON
		requireExit(t, 0, cliJSON(t, f.dsn(), &x, "episodes", "explain", orphan.String()))
		require.NotNil(t, x.Plan)
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, binary, "ui", "--addr", "127.0.0.1:0")
		cmd.Env = cliEnv(f.dsn())
		stdout, err := cmd.StdoutPipe()
		require.NoError(t, err)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		require.NoError(t, cmd.Start())
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

		lines := bufio.NewReader(stdout)
		first, err := lines.ReadString('\n')
		require.NoError(t, err, "stderr: %s", stderr.String())
		require.Contains(t, first, "read-only")
		start := strings.Index(first, "http://")
		require.GreaterOrEqual(t, start, 0, first)
		url := strings.Fields(first[start:])[0]
		require.True(t, strings.HasPrefix(url, "http://127.0.0.1:"), url)

		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		require.NoError(t, err)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, resp.Body.Close())
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
		require.Contains(t, string(body), "<html")
		require.Contains(t, string(body), `data-episode="`+orphan.String()+`" data-why="orphan"`)
		require.Contains(t, string(body), html.EscapeString(x.Summary), "the overview explains it as 'episodes explain' does")
		page := func(path string) string {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+path, nil)
			require.NoError(t, err)
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			body, err := io.ReadAll(resp.Body)
			require.NoError(t, resp.Body.Close())
			require.NoError(t, err)
			require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
			return string(body)
		}
		recovery := page("recovery")
		require.Contains(t, recovery, "every stack, every env")
		require.Contains(t, recovery, `data-episode="`+orphan.String()+`"`, "the dry run 'revenant sweep --dry-run' shows")
		require.Contains(t, recovery, `class="act-`+x.Plan.Action+`"`)
		require.Contains(t, page("episodes/"+orphan.String()), html.EscapeString(x.Summary))

		require.NoError(t, cmd.Process.Signal(os.Interrupt))
		rest, err := io.ReadAll(lines)
		require.NoError(t, err)
		require.NoError(t, cmd.Wait(), "stderr: %s", stderr.String())
		require.Contains(t, string(rest), "stopped")
	})
}
