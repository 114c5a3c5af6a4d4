package main

import (
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/internal/store"
	"github.com/revenant-go/revenant/internal/testdb"
	"github.com/revenant-go/revenant/recovery"
)

// The dry run answers "what will recovery do?", and the real sweep then
// does exactly that: the same episodes, the same actions, the same
// previous owners and reasons, the same dead nodes marked. Every source
// of policy and every action is covered: the owner's published policy
// (restart, fail), a restart past max attempts (dead-letter), an actor
// definition written through the CLI, the default (fail), and an
// exhausted orphan that no sweep can take (skip).
func TestSweepDoesWhatTheDryRunSaid(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		f := newFixture(t, driver)
		f.node("alive-1", time.Minute, []string{"mailer"}, nil)
		f.node("dead-1", -time.Minute, []string{"mailer", "charger", "importer"},
			map[string]store.ActorPolicy{"mailer": {Recovery: "restart"}, "charger": {Recovery: "fail"}})
		restart := f.running(episodes.CreateParams{ActorID: "mailer"}, "dead-1")
		fail := f.running(episodes.CreateParams{ActorID: "charger"}, "dead-1")
		deadLetter := f.running(episodes.CreateParams{ActorID: "mailer", MaxAttempts: 1}, "dead-1")
		defined := f.running(episodes.CreateParams{ActorID: "importer"}, "dead-1")
		byDefault := f.running(episodes.CreateParams{ActorID: "legacy"}, "dead-1")
		exhausted := f.running(episodes.CreateParams{ActorID: "charger"}, "dead-1")
		_, err := f.s.DB.Exec(`UPDATE revenant_episodes SET attempts = 2147483647 WHERE id = $1`, exhausted)
		require.NoError(t, err)
		busy := f.running(episodes.CreateParams{ActorID: "mailer"}, "alive-1")
		requireExit(t, 0, cli(t, f.dsn(), "actors", "define", "importer", "--recovery", "restart", "--yes"))

		var dry sweepJSON
		requireExit(t, 0, cliJSON(t, f.dsn(), &dry, "sweep", "--dry-run"))
		require.True(t, dry.DryRun)
		require.True(t, dry.Scope.AllStacks)
		require.True(t, dry.Scope.AllEnvs)
		plans := map[string]planJSON{}
		for _, p := range dry.Plans {
			plans[p.EpisodeID] = p
		}
		want := map[uuid.UUID]string{restart: "restart", fail: "fail", deadLetter: "dead_letter", defined: "restart", byDefault: "fail", exhausted: "skip"}
		require.Len(t, plans, len(want), "the live node's episode is no orphan: %+v", dry.Plans)
		for id, action := range want {
			require.Equal(t, action, plans[id.String()].Action, "episode %s", id)
		}
		require.Equal(t, recovery.SourceOwner, plans[restart.String()].PolicySource)
		require.Equal(t, recovery.SourceDefinitions, plans[defined.String()].PolicySource)
		require.Equal(t, recovery.SourceDefault, plans[byDefault.String()].PolicySource)
		require.Contains(t, plans[exhausted.String()].Error, "maximum")
		require.Equal(t, []string{"dead-1"}, dry.DeadNodes)
		require.Equal(t, 2, dry.Restarted)
		require.Equal(t, 1, dry.Skipped)

		text := cli(t, f.dsn(), "sweep", "--dry-run")
		requireExit(t, 0, text)
		require.Contains(t, text.stdout, "DRY RUN (nothing changed): 6 orphaned episode(s); a sweep would restart 2, fail 2, dead-letter 1, leave 1")
		require.Contains(t, text.stdout, recovery.SourceDefinitions)
		require.Contains(t, text.stdout, "would mark dead nodes stopped: dead-1")

		// Unconfirmed, the real sweep changes nothing.
		r := cli(t, f.dsn(), "sweep")
		requireExit(t, exitDeclined, r)
		require.Contains(t, r.stderr, "pass --yes")
		require.Equal(t, episodes.StatusRunning, f.get(restart).Status)

		var swept sweepJSON
		requireExit(t, 0, cliJSON(t, f.dsn(), &swept, "sweep", "--yes"))
		require.False(t, swept.DryRun)
		done := map[string]actionJSON{}
		for _, a := range swept.Actions {
			done[a.EpisodeID] = a
		}
		require.Len(t, done, len(plans), "the sweep acted on the dry run's episodes: %+v", swept.Actions)
		for id, p := range plans {
			a, ok := done[id]
			require.True(t, ok, "episode %s was planned, not swept", id)
			require.Equal(t, p.Action, a.Action, "episode %s", id)
			if p.Action != "skip" {
				require.Equal(t, p.PreviousOwner, a.PreviousOwner, "episode %s", id)
				require.Equal(t, p.Reason, a.Reason, "episode %s", id)
			}
		}
		require.Equal(t, dry.DeadNodes, swept.DeadNodes)
		require.Equal(t, [4]int{dry.Restarted, dry.Failed, dry.DeadLettered, dry.Skipped},
			[4]int{swept.Restarted, swept.Failed, swept.DeadLettered, swept.Skipped})

		// And the database agrees.
		require.Equal(t, episodes.StatusPending, f.get(restart).Status)
		require.Equal(t, episodes.StatusPending, f.get(defined).Status)
		for _, id := range []uuid.UUID{fail, byDefault} {
			ep := f.get(id)
			require.Equal(t, episodes.StatusFailed, ep.Status)
			require.Equal(t, "orphaned", ep.ErrorClass)
		}
		require.Equal(t, "max_attempts_exceeded", f.get(deadLetter).ErrorClass)
		require.Equal(t, episodes.StatusRunning, f.get(exhausted).Status, "left alone")
		require.Equal(t, episodes.StatusRunning, f.get(busy).Status)

		text = cli(t, f.dsn(), "sweep", "--yes")
		requireExit(t, 0, text)
		require.Contains(t, text.stdout, "restarted 0, failed 0, dead-lettered 0, left 1")
	})
}

// --stack and --env keep a sweep to one scope.
func TestSweepScope(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		f := newFixture(t, driver)
		f.node("dead-1", -time.Minute, []string{"mailer"}, map[string]store.ActorPolicy{"mailer": {Recovery: "restart"}})
		prod := f.running(episodes.CreateParams{ActorID: "mailer", SourceStack: "shop", SourceEnv: "prod"}, "dead-1")
		f.running(episodes.CreateParams{ActorID: "mailer", SourceStack: "shop", SourceEnv: "staging"}, "dead-1")

		var dry sweepJSON
		requireExit(t, 0, cliJSON(t, f.dsn(), &dry, "sweep", "--dry-run", "--stack", "shop", "--env", "prod"))
		require.Len(t, dry.Plans, 1)
		require.Equal(t, prod.String(), dry.Plans[0].EpisodeID)
		require.False(t, dry.Scope.AllEnvs)
		require.Equal(t, "prod", dry.Scope.Env)

		var swept sweepJSON
		requireExit(t, 0, cliJSON(t, f.dsn(), &swept, "sweep", "--yes", "--env", "prod"))
		require.Len(t, swept.Actions, 1)
		require.Equal(t, prod.String(), swept.Actions[0].EpisodeID)
	})
}
