package ops_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant"
	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/internal/store"
	"github.com/revenant-go/revenant/internal/store/backend"
	"github.com/revenant-go/revenant/internal/testdb"
	"github.com/revenant-go/revenant/journal"
	"github.com/revenant-go/revenant/ops"
	"github.com/revenant-go/revenant/recovery"
	"github.com/revenant-go/revenant/runner"
	"github.com/revenant-go/revenant/workflow"
)

const chromiumPath = "/usr/bin/chromium"

// browser starts a headless Chromium for t, or skips t without one
// (fails with REVENANT_REQUIRE_BROWSER=1, as in CI).
func browser(t *testing.T) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("REVENANT_REQUIRE_BROWSER") == "1" {
			t.Fatalf("Chromium required (REVENANT_REQUIRE_BROWSER=1) but not found at %s: %v", chromiumPath, err)
		}
		t.Skipf("no Chromium at %s; install it to run the browser tests (REVENANT_REQUIRE_BROWSER=1 makes this fail)", chromiumPath)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.NoFirstRun,
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 800),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelBrowser := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(func() {
		cancelTimeout()
		cancelBrowser()
		cancelAlloc() // waits for the browser to exit, before TempDir's cleanup
	})
	require.NoError(t, chromedp.Do(ctx), "starting Chromium")
	return ctx
}

// js evaluates a JavaScript expression in the page.
func js[T any](ctx context.Context, t *testing.T, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	require.NoError(t, err, "evaluating %s", expr)
	return v
}

// text is the text of the first element matching a CSS selector ("" when
// none does).
func text(ctx context.Context, t *testing.T, sel string) string {
	t.Helper()
	q, err := json.Marshal(sel)
	require.NoError(t, err)
	return js[string](ctx, t, fmt.Sprintf(`(document.querySelector(%s)||{}).innerText||""`, q))
}

func navigate(ctx context.Context, t *testing.T, u string) {
	t.Helper()
	resp, err := chromedp.Run(ctx, chromedp.NavigateResponse(u))
	require.NoError(t, err, "navigating to %s", u)
	require.Equal(t, int64(200), resp.Status, "GET %s", u)
}

// screenshot saves the page as a full-page PNG in $REVENANT_SCREENSHOTS,
// or testdata/screenshots (git-ignored), for people to look at.
func screenshot(ctx context.Context, t *testing.T, name string) {
	t.Helper()
	dir := os.Getenv("REVENANT_SCREENSHOTS")
	if dir == "" {
		dir = filepath.Join("testdata", "screenshots")
	}
	require.NoError(t, os.MkdirAll(dir, 0o755))
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644))
}

func steps(names ...string) runner.RunFunc {
	return func(ctx context.Context, _ *episodes.Episode, j *journal.Journal) (any, error) {
		for _, n := range names {
			if _, err := journal.Step(ctx, j, n, func(context.Context) (string, error) { return n + " ok", nil }); err != nil {
				return nil, err
			}
		}
		return map[string]int{"steps": len(names)}, nil
	}
}

// The dashboard in a real browser: a node dies with running episodes and
// the overview shows it dead, with its stuck episodes explained exactly as
// Explain and the recovery dry run say; an operator requeues a dead letter
// with its button and watches it complete; workflow instances are drawn as
// DAGs, one box per step, coloured by state.
func TestDashboardInBrowser(t *testing.T) {
	t.Parallel()
	s := testdb.New(t, nil)
	bctx := browser(t)
	ctx := context.Background()

	// A node that died (its session lock is gone) while running episodes.
	const dead = "web-3f9c2a"
	st := backend.For(s.DB)
	require.NoError(t, st.NodeRegister(ctx, s.DB, &store.NodeRegisterParams{ID: dead, Name: "web", LockKey: rand.Int64N(1 << 40),
		Actors: []string{"mailer", "charger", "printer"}, Policies: map[string]store.ActorPolicy{"mailer": {Recovery: "restart"}},
		TTL: time.Minute}))
	adm, err := revenant.New(s.DB, &revenant.Config{Name: "ops", SkipMigrate: true})
	require.NoError(t, err)
	eps := adm.Episodes()
	running := func(actor string, maxAttempts int, journalSteps ...string) uuid.UUID {
		res, err := eps.Create(ctx, episodes.CreateParams{ActorID: actor, MaxAttempts: maxAttempts, Input: map[string]string{"to": marker}})
		require.NoError(t, err)
		ep, err := eps.Claim(ctx, res.Episode.ID, dead)
		require.NoError(t, err)
		j, err := journal.Open(ctx, s.DB, ep.ID, ep.ClaimToken, nil)
		require.NoError(t, err)
		for _, n := range journalSteps {
			_, err := journal.Step(ctx, j, n, func(context.Context) (string, error) { return marker, nil })
			require.NoError(t, err)
		}
		return ep.ID
	}
	restart := running("mailer", 3, "load-user", "render", "send")
	fail := running("charger", 3, "quote")
	exhausted := running("mailer", 1)
	letter := running("printer", 1)
	ep, err := eps.Get(ctx, letter)
	require.NoError(t, err)
	_, err = eps.Fail(ctx, letter, ep.ClaimToken, "paper_jam", map[string]string{"message": "tray 2 jammed"})
	require.NoError(t, err)
	typo, err := eps.Create(ctx, episodes.CreateParams{ActorID: "mialer"})
	require.NoError(t, err)

	h, err := ops.New(adm, &ops.Config{Actions: true, Title: "revenant · shop"})
	require.NoError(t, err)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)

	// What is stuck: the dead node and its orphans, each explained as
	// Explain and the dry run say.
	dry, err := adm.Sweep(ctx, true)
	require.NoError(t, err)
	require.Len(t, dry.Plans, 3)
	navigate(bctx, t, srv.URL+"/")
	require.Equal(t, "dead", text(bctx, t, `tr[data-node="`+dead+`"] .badge`))
	require.Contains(t, text(bctx, t, `tr[data-node="`+dead+`"]`), "session lock was released")
	actions := map[uuid.UUID]recovery.Action{}
	for _, p := range dry.Plans {
		row := `#stuck tr[data-episode="` + p.EpisodeID.String() + `"]`
		x, err := adm.Explain(ctx, p.EpisodeID)
		require.NoError(t, err)
		require.NotNil(t, x.Plan)
		require.Equal(t, p.Action, x.Plan.Action)
		require.Equal(t, p.PolicySource, x.Plan.PolicySource)
		require.Equal(t, x.Summary, text(bctx, t, row+` td.summary`))
		require.Equal(t, string(p.Action), text(bctx, t, row+` td.plan strong`))
		require.Contains(t, text(bctx, t, row+` td.plan`), "policy "+string(p.Policy))
		actions[p.EpisodeID] = p.Action
	}
	require.Equal(t, map[uuid.UUID]recovery.Action{restart: recovery.ActionRestart, fail: recovery.ActionFail,
		exhausted: recovery.ActionDeadLetter}, actions)
	require.Equal(t, "exhausted", text(bctx, t, `#stuck tr[data-episode="`+exhausted.String()+`"] .badge`))
	require.Contains(t, text(bctx, t, `#stuck tr[data-episode="`+typo.Episode.ID.String()+`"] td.summary`), `no live node in its scope`)
	require.Zero(t, js[int](bctx, t, `document.querySelectorAll('#stuck tr[data-episode="`+letter.String()+`"]').length`))
	require.NotContains(t, js[string](bctx, t, `document.body.innerText`), marker)
	screenshot(bctx, t, "overview")

	navigate(bctx, t, srv.URL+"/recovery")
	for _, p := range dry.Plans {
		require.Equal(t, string(p.Action), text(bctx, t, `#plans tr[data-episode="`+p.EpisodeID.String()+`"] strong`))
	}
	require.Equal(t, dead, text(bctx, t, `#deadnodes li`))
	screenshot(bctx, t, "recovery")

	navigate(bctx, t, srv.URL+"/episodes/"+restart.String())
	require.Equal(t, 3, js[int](bctx, t, `document.querySelectorAll('table.timeline svg.bar').length`))
	require.NotContains(t, js[string](bctx, t, `document.body.innerText`), marker)
	screenshot(bctx, t, "episode-orphan")

	// A live node takes over: it runs the printer, and workflows.
	release := make(chan struct{})
	live, err := revenant.New(s.DB, &revenant.Config{Name: "worker", PollInterval: 50 * time.Millisecond, SweepInterval: 500 * time.Millisecond})
	require.NoError(t, err)
	require.NoError(t, live.Register(runner.Actor{ID: "printer", Run: steps("load-job", "rasterize", "print")}))
	require.NoError(t, live.Register(runner.Actor{ID: "stock", Run: steps("reserve")}))
	require.NoError(t, live.Register(runner.Actor{ID: "billing", Run: steps("authorize", "capture")}))
	require.NoError(t, live.Register(runner.Actor{ID: "refund", Run: steps("refund")}))
	require.NoError(t, live.Register(runner.Actor{ID: "shipping", Run: steps("label")}))
	require.NoError(t, live.Register(runner.Actor{ID: "packer", Run: func(ctx context.Context, _ *episodes.Episode, _ *journal.Journal) (any, error) {
		select {
		case <-release:
			return "packed", nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}}))
	require.NoError(t, live.Register(runner.Actor{ID: "courier", Run: func(context.Context, *episodes.Episode, *journal.Journal) (any, error) {
		return nil, journal.Permanent(errors.New("no courier serves this postcode"))
	}}))
	require.NoError(t, live.RegisterWorkflow(workflow.Definition{ID: "fulfil", Steps: []workflow.Step{
		{ID: "reserve", Actor: "stock"},
		{ID: "charge", Actor: "billing", DependsOn: []string{"reserve"}, Compensate: "refund"},
		{ID: "pack", Actor: "packer", DependsOn: []string{"reserve"}},
		{ID: "ship", Actor: "shipping", DependsOn: []string{"charge", "pack"}},
	}}))
	require.NoError(t, live.RegisterWorkflow(workflow.Definition{ID: "express", Steps: []workflow.Step{
		{ID: "charge", Actor: "billing", Compensate: "refund"},
		{ID: "dispatch", Actor: "courier", DependsOn: []string{"charge"}},
	}}))
	require.NoError(t, live.Start(ctx))
	t.Cleanup(func() {
		close(release)
		stopCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = live.StopAndCancel(stopCtx)
	})

	// Requeue the dead letter with its button, and watch it complete.
	navigate(bctx, t, srv.URL+"/dead-letters")
	screenshot(bctx, t, "dead-letters")
	resp, err := chromedp.RunResponse(bctx, chromedp.Click(chromedp.CSS(`tr[data-episode="`+letter.String()+`"] button[data-action="requeue"]`)))
	require.NoError(t, err)
	require.Equal(t, int64(200), resp.Status)
	require.Contains(t, text(bctx, t, ".flash.ok"), "requeued")
	// The condition runs off the test goroutine: it must not require.
	require.Eventually(t, func() bool {
		if _, err := chromedp.Run(bctx, chromedp.Navigate(srv.URL+"/episodes/"+letter.String())); err != nil {
			return false
		}
		badge, err := chromedp.Run(bctx, chromedp.Evaluate[string](`(document.querySelector("h1 .badge")||{}).innerText||""`))
		return err == nil && badge == "done"
	}, 30*time.Second, 100*time.Millisecond, "the requeued episode never showed done")
	navigate(bctx, t, srv.URL+"/episodes/"+letter.String())
	require.Equal(t, 3, js[int](bctx, t, `document.querySelectorAll('table.timeline svg.bar').length`))
	require.Contains(t, text(bctx, t, "#requeues"), "dashboard")
	screenshot(bctx, t, "episode-requeued")

	// A running instance: reserve and charge done, pack running, ship
	// waiting.
	fulfil, err := live.StartWorkflow(ctx, "fulfil", map[string]string{"order": "A-1001"}, &workflow.StartOptions{Subject: "A-1001"})
	require.NoError(t, err)
	waitSteps(t, live, fulfil, map[string]string{"reserve": "done", "charge": "done", "pack": "running", "ship": "pending"})
	navigate(bctx, t, srv.URL+"/workflows/"+fulfil.String())
	require.Equal(t, map[string]string{"reserve": "done", "charge": "done", "pack": "running", "ship": "pending"}, boxes(bctx, t, "#dag-svg"))
	require.Equal(t, 4, js[int](bctx, t, `document.querySelectorAll('#dag-svg g.edge').length`), "reserve→charge, reserve→pack, charge→ship, pack→ship")
	require.Zero(t, js[int](bctx, t, `document.querySelectorAll('#undefined').length`), "a started node published the shape")
	require.Equal(t, "rgb(218, 251, 225)", fill(bctx, t, "reserve"), "done is green")
	require.Equal(t, "rgb(221, 244, 255)", fill(bctx, t, "pack"), "running is blue")
	require.Equal(t, "rgb(255, 248, 197)", fill(bctx, t, "ship"), "pending is amber")
	require.Less(t, js[float64](bctx, t, `document.querySelector('#dag-svg g.step[data-step="reserve"] rect').getBBox().x`),
		js[float64](bctx, t, `document.querySelector('#dag-svg g.step[data-step="charge"] rect').getBBox().x`), "a dependency is left of its dependent")
	screenshot(bctx, t, "workflow-running")

	// An aborted instance: its failed step in red, its compensation drawn
	// apart.
	express, err := live.StartWorkflow(ctx, "express", map[string]string{"order": "A-1002"}, &workflow.StartOptions{Subject: "A-1002"})
	require.NoError(t, err)
	waitSteps(t, live, express, map[string]string{"charge": "done", "dispatch": "failed", "compensate:charge": "done"})
	navigate(bctx, t, srv.URL+"/workflows/"+express.String())
	require.Equal(t, map[string]string{"charge": "done", "dispatch": "failed"}, boxes(bctx, t, "#dag-svg"))
	require.Equal(t, 1, len(boxes(bctx, t, "#comp-svg")))
	require.Equal(t, "rgb(255, 235, 233)", fill(bctx, t, "dispatch"), "failed is red")
	screenshot(bctx, t, "workflow-aborted")

	// The overview now: one node alive with its last sweep, one dead.
	require.Eventually(t, func() bool {
		nodes, err := adm.Inspect().Nodes(ctx)
		if err != nil {
			return false
		}
		for _, n := range nodes {
			if n.ID == live.NodeID() {
				return n.LastSweep != nil
			}
		}
		return false
	}, 30*time.Second, 20*time.Millisecond, "the live node never recorded a sweep")
	navigate(bctx, t, srv.URL+"/")
	liveRow := `tr[data-node="` + live.NodeID() + `"]`
	require.Equal(t, "alive", text(bctx, t, liveRow+" .badge"))
	require.Contains(t, text(bctx, t, liveRow), "restarted 0, failed 0, dead-lettered 0, skipped 0")
	require.Equal(t, "dead", text(bctx, t, `tr[data-node="`+dead+`"] .badge`))
	screenshot(bctx, t, "overview-later")

	navigate(bctx, t, srv.URL+"/workflows")
	require.Equal(t, 2, js[int](bctx, t, `document.querySelectorAll('#workflows tr[data-instance]').length`))
	screenshot(bctx, t, "workflows")
	navigate(bctx, t, srv.URL+"/episodes")
	screenshot(bctx, t, "episodes")
	require.NotContains(t, js[string](bctx, t, `document.body.innerText`), marker)
}

// waitSteps waits until the instance's steps (and compensations) have
// the given statuses.
func waitSteps(t *testing.T, c *revenant.Client, id uuid.UUID, want map[string]string) {
	t.Helper()
	var got map[string]string
	require.Eventually(t, func() bool {
		w, err := c.Inspect().Workflow(context.Background(), id)
		if err != nil {
			return false
		}
		got = map[string]string{}
		for _, s := range w.Steps {
			got[s.ID] = s.Status
		}
		for k, v := range want {
			if got[k] != v {
				return false
			}
		}
		return true
	}, 30*time.Second, 20*time.Millisecond, "workflow steps never reached %v", want)
}

// boxes maps each step box drawn in an SVG to its status class.
func boxes(ctx context.Context, t *testing.T, svg string) map[string]string {
	t.Helper()
	raw := js[string](ctx, t, `JSON.stringify(Array.from(document.querySelectorAll('`+svg+` g.step')).map(g => [g.dataset.step, g.getAttribute('class')]))`)
	var pairs [][2]string
	require.NoError(t, json.Unmarshal([]byte(raw), &pairs))
	out := map[string]string{}
	for _, p := range pairs {
		require.Contains(t, p[1], "st-", "each box has a state class")
		out[p[0]] = strings.TrimPrefix(strings.Fields(p[1])[1], "st-")
	}
	return out
}

// fill is the computed fill of a step's box.
func fill(ctx context.Context, t *testing.T, step string) string {
	t.Helper()
	return js[string](ctx, t, `getComputedStyle(document.querySelector('svg.dag g.step[data-step="`+step+`"] rect')).fill`)
}
