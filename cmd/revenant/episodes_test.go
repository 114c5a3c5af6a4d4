package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant"
	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/internal/testdb"
	"github.com/revenant-go/revenant/journal"
	"github.com/revenant-go/revenant/runner"
)

// fastConfig keeps a live node quick to start, claim and stop in tests.
func fastConfig(name string) *revenant.Config {
	return &revenant.Config{Name: name, HeartbeatInterval: 100 * time.Millisecond, NodeTTL: 2 * time.Second,
		PollInterval: 20 * time.Millisecond, SweepInterval: 200 * time.Millisecond}
}

// episodes list and show: the journal with durations and output sizes,
// and no input, result or step output unless --data.
func TestEpisodesListAndShow(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		f := newFixture(t, driver)
		ctx := context.Background()
		node, err := revenant.New(f.s.DB, fastConfig("worker"))
		require.NoError(t, err)
		t.Cleanup(func() { _ = node.StopAndCancel(context.Background()) })
		require.NoError(t, node.Register(runner.Actor{ID: "charger", Run: func(ctx context.Context, _ *episodes.Episode, j *journal.Journal) (any, error) {
			quote, err := journal.Step(ctx, j, "quote", func(context.Context) (string, error) { return "quote SECRET-OUTPUT-7", nil })
			if err != nil {
				return nil, err
			}
			return map[string]string{"receipt": quote}, nil
		}}))
		require.NoError(t, node.Start(ctx))
		res, err := node.Enqueue(ctx, episodes.CreateParams{ActorID: "charger", Input: map[string]string{"email": "SECRET-INPUT-42"}})
		require.NoError(t, err)
		id := res.Episode.ID
		require.Eventually(t, func() bool {
			ep, err := f.eps.Get(ctx, id) // not f.get: no require off the test goroutine
			return err == nil && ep.Status == episodes.StatusDone
		}, 30*time.Second, 10*time.Millisecond)
		later := f.create(episodes.CreateParams{ActorID: "other"})

		var list episodeListJSON
		r := cliJSON(t, f.dsn(), &list, "episodes", "list", "--status", "done", "--actor", "charger")
		requireExit(t, 0, r)
		require.Len(t, list.Episodes, 1)
		require.Equal(t, id.String(), list.Episodes[0].ID)
		require.Equal(t, "done", list.Episodes[0].Status)
		require.NotContains(t, r.stdout, "SECRET")

		// Paging: one at a time, with the cursor.
		list = episodeListJSON{}
		requireExit(t, 0, cliJSON(t, f.dsn(), &list, "episodes", "list", "--limit", "1"))
		require.Len(t, list.Episodes, 1)
		require.Equal(t, id.String(), list.Episodes[0].ID)
		require.NotEmpty(t, list.Next)
		text := cli(t, f.dsn(), "episodes", "list", "--limit", "1", "--after", list.Next)
		requireExit(t, 0, text)
		require.Contains(t, text.stdout, later.String())
		require.NotContains(t, text.stdout, id.String())

		text = cli(t, f.dsn(), "episodes", "show", id.String())
		requireExit(t, 0, text)
		for _, s := range []string{id.String(), "charger", "done", "(hidden: pass --data)", "STEPS (1)", "quote"} {
			require.Contains(t, text.stdout, s)
		}
		require.NotContains(t, text.stdout, "SECRET")

		var show episodeShowJSON
		r = cliJSON(t, f.dsn(), &show, "episodes", "show", id.String())
		requireExit(t, 0, r)
		require.NotContains(t, r.stdout, "SECRET")
		require.NotContains(t, r.stdout, `"input"`)
		require.Len(t, show.Steps, 1)
		require.Equal(t, "quote", show.Steps[0].Name)
		require.Positive(t, show.Steps[0].OutputBytes)
		require.Nil(t, show.Steps[0].Output)

		text = cli(t, f.dsn(), "episodes", "show", id.String(), "--data")
		requireExit(t, 0, text)
		require.Contains(t, text.stdout, "SECRET-INPUT-42")
		require.Contains(t, text.stdout, "SECRET-OUTPUT-7")
		show = episodeShowJSON{}
		requireExit(t, 0, cliJSON(t, f.dsn(), &show, "episodes", "show", id.String(), "--data"))
		require.Contains(t, string(show.Episode.Input), "SECRET-INPUT-42")
		require.Contains(t, string(show.Steps[0].Output), "SECRET-OUTPUT-7")

		r = cli(t, f.dsn(), "episodes", "show", uuid.NewString())
		requireExit(t, exitNotFound, r)
	})
}

// requeue and cancel ask first (refused without --yes when stdin is not
// a terminal), then act; dead-letters lists what failed.
func TestRequeueCancelAndDeadLetters(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		f := newFixture(t, driver)
		a := f.failed("mailer", "smtp_down")
		b := f.failed("mailer", "smtp_down")
		c := f.failed("mailer", "bounced")
		f.failed("charger", "declined")

		var dl episodeListJSON
		requireExit(t, 0, cliJSON(t, f.dsn(), &dl, "dead-letters"))
		require.Len(t, dl.Episodes, 4)
		dl = episodeListJSON{}
		requireExit(t, 0, cliJSON(t, f.dsn(), &dl, "dead-letters", "--actor", "mailer", "--error-class", "smtp_down"))
		require.Len(t, dl.Episodes, 2)
		text := cli(t, f.dsn(), "dead-letters", "--actor", "mailer")
		requireExit(t, 0, text)
		require.Contains(t, text.stdout, c.String())
		require.Contains(t, text.stdout, "bounced")

		r := cli(t, f.dsn(), "requeue", a.String())
		requireExit(t, exitDeclined, r)
		require.Contains(t, r.stderr, "stdin is not a terminal")
		require.Contains(t, r.stderr, "pass --yes")
		require.Equal(t, episodes.StatusFailed, f.get(a).Status)

		var rq requeueResultJSON
		requireExit(t, 0, cliJSON(t, f.dsn(), &rq, "requeue", a.String(), "--yes", "--reason", "ticket 7"))
		require.Len(t, rq.Requeued, 1)
		require.Equal(t, "pending", rq.Requeued[0].Status)
		ep := f.get(a)
		require.Equal(t, episodes.StatusPending, ep.Status)
		require.Len(t, ep.Requeues, 1)
		require.Equal(t, "ticket 7", ep.Requeues[0].Reason)
		require.True(t, strings.HasPrefix(ep.Requeues[0].By, AdminNodeName), ep.Requeues[0].By)

		rq = requeueResultJSON{}
		requireExit(t, 0, cliJSON(t, f.dsn(), &rq, "requeue", "--actor", "mailer", "--error-class", "smtp_down", "--yes"))
		require.Len(t, rq.Requeued, 1)
		require.Equal(t, b.String(), rq.Requeued[0].ID)

		// One known, one unknown: the known one is requeued, exit 3.
		r = cli(t, f.dsn(), "requeue", c.String(), uuid.NewString(), "--yes", "--delay", "1h")
		requireExit(t, exitNotFound, r)
		require.Contains(t, r.stdout, "requeued 1 episode(s)")
		require.Equal(t, episodes.StatusPending, f.get(c).Status)
		require.True(t, f.get(c).RunAt.After(time.Now().Add(30*time.Minute)), "--delay scheduled it")

		text = cli(t, f.dsn(), "episodes", "show", a.String())
		requireExit(t, 0, text)
		require.Contains(t, text.stdout, "REQUEUES (1)")
		require.Contains(t, text.stdout, "ticket 7")

		requireExit(t, exitDeclined, cli(t, f.dsn(), "cancel", a.String()))
		var cn struct {
			Canceled episodeJSON `json:"canceled"`
		}
		requireExit(t, 0, cliJSON(t, f.dsn(), &cn, "cancel", a.String(), "--yes", "--reason", "not needed"))
		require.Equal(t, "canceled", cn.Canceled.Status)
		require.Equal(t, episodes.StatusCanceled, f.get(a).Status)
		requireExit(t, exitNotFound, cli(t, f.dsn(), "cancel", uuid.NewString(), "--yes"))
	})
}
