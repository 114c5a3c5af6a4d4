package ops_test

import (
	"context"
	"html/template"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant"
	"github.com/revenant-go/revenant/breakers"
	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/internal/store"
	"github.com/revenant-go/revenant/internal/store/backend"
	"github.com/revenant-go/revenant/internal/testdb"
	"github.com/revenant-go/revenant/journal"
	"github.com/revenant-go/revenant/ops"
	"github.com/revenant-go/revenant/workflow"
)

func TestMain(m *testing.M) { testdb.Main(m) }

// marker stands for personal data: it must never reach a page unless
// Config.ShowData.
const marker = "SECRET-MARKER-7f3a"

const deadNode = "dead-node-1"

// fixture is a database with something on every page: a dead node with an
// orphan (whose input and metadata hold the marker), a dead letter, a
// pending episode no node can claim, an open breaker and a workflow
// instance; and an unstarted admin client on it, as the CLI opens.
type fixture struct {
	s                        *testdb.Schema
	c                        *revenant.Client
	orphan, dead, unclaimed  uuid.UUID
	wf                       uuid.UUID
	explainOrphan, explainDL string
}

var testWorkflow = workflow.Definition{ID: "fulfil", Steps: []workflow.Step{
	{ID: "reserve", Actor: "stock"},
	{ID: "charge", Actor: "billing", DependsOn: []string{"reserve"}, Compensate: "refund"},
	{ID: "ship", Actor: "shipping", DependsOn: []string{"reserve", "charge"}},
}}

func newFixture(t *testing.T, driver string) *fixture {
	t.Helper()
	ctx := context.Background()
	s := testdb.New(t, &testdb.Options{Driver: driver})
	c, err := revenant.New(s.DB, &revenant.Config{Name: "admin", SkipMigrate: true})
	require.NoError(t, err)
	require.NoError(t, c.RegisterWorkflow(testWorkflow))
	f := &fixture{s: s, c: c}

	st := backend.For(s.DB)
	require.NoError(t, st.NodeRegister(ctx, s.DB, &store.NodeRegisterParams{ID: deadNode, Name: "dead-node",
		Actors: []string{"mailer", "charger"}, Policies: map[string]store.ActorPolicy{"mailer": {Recovery: "restart"}},
		TTL: -time.Minute}))
	eps := c.Episodes()
	res, err := eps.Create(ctx, episodes.CreateParams{ActorID: "mailer", Input: map[string]string{"email": marker},
		Metadata: map[string]string{"note": marker}})
	require.NoError(t, err)
	f.orphan = res.Episode.ID
	claimed, err := eps.Claim(ctx, f.orphan, deadNode)
	require.NoError(t, err)
	j, err := journal.Open(ctx, s.DB, f.orphan, claimed.ClaimToken, nil)
	require.NoError(t, err)
	_, err = journal.Step(ctx, j, "render-template", func(context.Context) (string, error) { return "Dear " + marker, nil })
	require.NoError(t, err)
	_, err = journal.Step(ctx, j, "send", func(context.Context) (int, error) { return 250, nil })
	require.NoError(t, err)

	res, err = eps.Create(ctx, episodes.CreateParams{ActorID: "charger", Input: map[string]string{"card": marker}, MaxAttempts: 1})
	require.NoError(t, err)
	f.dead = res.Episode.ID
	claimed, err = eps.Claim(ctx, f.dead, deadNode)
	require.NoError(t, err)
	_, err = eps.Fail(ctx, f.dead, claimed.ClaimToken, "card_declined", map[string]string{"message": "the bank said no"})
	require.NoError(t, err)

	res, err = eps.Create(ctx, episodes.CreateParams{ActorID: "nobody-runs-me"})
	require.NoError(t, err)
	f.unclaimed = res.Episode.ID

	_, err = c.Breakers().Open(ctx, breakers.Key{ActorID: "charger"}, "maintenance window")
	require.NoError(t, err)
	f.wf, err = c.StartWorkflow(ctx, "fulfil", map[string]string{"order": marker}, &workflow.StartOptions{Subject: "order-42"})
	require.NoError(t, err)

	x, err := c.Explain(ctx, f.orphan)
	require.NoError(t, err)
	f.explainOrphan = x.Summary
	x, err = c.Explain(ctx, f.dead)
	require.NoError(t, err)
	f.explainDL = x.Summary
	return f
}

// server serves h (under prefix when set) and returns a browser-like
// client: a cookie jar, redirects not followed.
func server(t *testing.T, h http.Handler, prefix string) (*httptest.Server, *http.Client) {
	t.Helper()
	root := http.Handler(h)
	if prefix != "" {
		mux := http.NewServeMux()
		mux.Handle(prefix+"/", http.StripPrefix(prefix, h))
		root = mux
	}
	srv := httptest.NewServer(root)
	t.Cleanup(srv.Close)
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	cl := &http.Client{Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return srv, cl
}

// newHandler builds a handler whose log is shown when t fails and must
// never hold the data marker.
func newHandler(t *testing.T, c *revenant.Client, cfg *ops.Config) *ops.Handler {
	t.Helper()
	if cfg == nil {
		cfg = &ops.Config{}
	}
	logs, logger := testdb.NewLogs()
	cfg.Logger = logger
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("handler log:\n%s", logs.String())
		}
		if strings.Contains(logs.String(), marker) {
			t.Errorf("the handler logged personal data:\n%s", logs.String())
		}
	})
	h, err := ops.New(c, cfg)
	require.NoError(t, err)
	return h
}

// get fetches u and returns the status and body.
func get(t *testing.T, cl *http.Client, u string) (int, string) {
	t.Helper()
	resp, err := cl.Get(u)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

// post submits a form to u and returns the response (body read).
func post(t *testing.T, cl *http.Client, u string, form url.Values, header http.Header) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := cl.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(b)
}

var (
	nextLink   = regexp.MustCompile(`href="(episodes\?[^"]*)" rel="next"`)
	episodeRow = regexp.MustCompile(`<tr data-episode="([^"]+)">`)
)

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// token is the CSRF token in a page's forms.
func token(t *testing.T, body string) string {
	t.Helper()
	m := csrfField.FindStringSubmatch(body)
	require.NotNil(t, m, "the page has a form with a CSRF token")
	return m[1]
}

var escTmpl = template.Must(template.New("").Parse("{{.}}"))

// esc is s as html/template writes it in a page's text.
func esc(s string) string {
	var b strings.Builder
	_ = escTmpl.Execute(&b, s)
	return b.String()
}
