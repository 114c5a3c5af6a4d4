package main

import (
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/internal/store"
	"github.com/revenant-go/revenant/internal/testdb"
	"github.com/revenant-go/revenant/recovery"
)

// stuckCluster is a cluster with a live node, a dead node (its heartbeat
// lapsed) owning two running episodes whose policies it published, a
// running episode of the live node, and pending work nobody can claim.
type stuckCluster struct {
	*fixture
	restart, fail, busy, typo uuid.UUID
}

func newStuckCluster(t *testing.T, driver string) *stuckCluster {
	f := newFixture(t, driver)
	f.node("alive-1", time.Minute, []string{"mailer"}, nil)
	f.node("dead-1", -time.Minute, []string{"mailer", "charger"},
		map[string]store.ActorPolicy{"mailer": {Recovery: "restart"}, "charger": {Recovery: "fail"}})
	return &stuckCluster{fixture: f,
		restart: f.running(episodes.CreateParams{ActorID: "mailer"}, "dead-1"),
		fail:    f.running(episodes.CreateParams{ActorID: "charger"}, "dead-1"),
		busy:    f.running(episodes.CreateParams{ActorID: "mailer"}, "alive-1"),
		typo:    f.create(episodes.CreateParams{ActorID: "mialer"}),
	}
}

// status answers "what is stuck?": the dead node and its orphans, each
// explained, and the unclaimable backlog; it exits 5.
func TestStatusFindsWhatIsStuck(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		c := newStuckCluster(t, driver)

		var st statusJSON
		requireExit(t, exitAttention, cliJSON(t, c.dsn(), &st, "status"))
		attention := strings.Join(st.Attention, "\n")
		require.Contains(t, attention, "node dead-1 is dead ("+recovery.ReasonOwnerExpired+") and owns 2 running episode(s)")
		require.Contains(t, attention, `of actor "mialer"`)
		require.Contains(t, attention, "unclaimable")

		nodes := map[string]nodeJSON{}
		for _, n := range st.Nodes {
			nodes[n.ID] = n
		}
		require.Equal(t, "alive", nodes["alive-1"].Liveness)
		require.Equal(t, "dead", nodes["dead-1"].Liveness)
		require.Equal(t, 2, nodes["dead-1"].Running)

		stuck := map[string]stuckJSON{}
		for _, s := range st.Stuck {
			stuck[s.EpisodeID] = s
		}
		require.Len(t, stuck, 2, "the live node's episode is not stuck")
		r := stuck[c.restart.String()]
		require.Equal(t, "restart", r.Action)
		require.Equal(t, "dead-1", r.PreviousOwner)
		require.Equal(t, recovery.SourceOwner, r.PolicySource)
		require.Contains(t, r.Summary, "restart it")
		f := stuck[c.fail.String()]
		require.Equal(t, "fail", f.Action)
		require.Contains(t, f.Summary, "fail (orphaned) it")

		var typo *backlogJSON
		for i, b := range st.Backlog {
			if b.ActorID == "mialer" {
				typo = &st.Backlog[i]
			}
		}
		require.NotNil(t, typo)
		require.False(t, typo.Claimable)
		require.Equal(t, 1, typo.Due)

		text := cli(t, c.dsn(), "status")
		requireExit(t, exitAttention, text)
		for _, s := range []string{"dead-1", recovery.ReasonOwnerExpired, "STUCK: 2 episode(s)", c.restart.String(), "restart it", "NEEDS ATTENTION", "mialer"} {
			require.Contains(t, text.stdout, s)
		}

		// Scoped to an env nothing runs in, all is well.
		scoped := cli(t, c.dsn(), "status", "--env", "prod")
		requireExit(t, 0, scoped)
		require.Contains(t, scoped.stdout, "OK: nothing needs attention")
	})
}

// nodes shows liveness, the rule that found a node dead, and its orphans.
func TestNodes(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		c := newStuckCluster(t, driver)
		var out struct {
			Nodes []nodeJSON `json:"nodes"`
		}
		requireExit(t, 0, cliJSON(t, c.dsn(), &out, "nodes"))
		require.Len(t, out.Nodes, 2)
		byID := map[string]nodeJSON{}
		for _, n := range out.Nodes {
			byID[n.ID] = n
		}
		require.Equal(t, "alive", byID["alive-1"].Liveness)
		require.Equal(t, 1, byID["alive-1"].Running)
		d := byID["dead-1"]
		require.Equal(t, "dead", d.Liveness)
		require.Equal(t, recovery.ReasonOwnerExpired, d.DeadBy)
		require.Equal(t, 2, d.Running)
		require.Equal(t, "restart", d.Policies["mailer"].Recovery)
		require.Greater(t, d.HeartbeatAgeMS, int64(0))

		r := cli(t, c.dsn(), "nodes")
		requireExit(t, 0, r)
		require.Regexp(t, `dead-1\s+dead-1\s+-\s+dead\s+`+recovery.ReasonOwnerExpired, r.stdout)
		require.Regexp(t, `alive-1\s+alive-1\s+-\s+alive\s`, r.stdout)
	})
}

// explain answers "why?": owner liveness and signal, the plan (rule,
// policy, source, action) for a running episode; due, claimers and
// breakers for a pending one.
func TestEpisodeExplain(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		c := newStuckCluster(t, driver)

		var x explainJSON
		requireExit(t, 0, cliJSON(t, c.dsn(), &x, "episodes", "explain", c.restart.String()))
		require.Equal(t, c.restart.String(), x.Episode.ID)
		require.NotNil(t, x.Owner)
		require.Equal(t, "dead", x.Owner.Liveness)
		require.NotNil(t, x.Plan)
		require.Equal(t, "restart", x.Plan.Action)
		require.Equal(t, "restart", x.Plan.Policy)
		require.Equal(t, recovery.SourceOwner, x.Plan.PolicySource)
		require.Equal(t, recovery.ReasonOwnerExpired, x.Plan.Reason)
		require.Equal(t, 2, x.AttemptsLeft)
		require.Contains(t, x.Summary, "restart it")

		text := cli(t, c.dsn(), "episodes", "explain", c.restart.String())
		requireExit(t, 0, text)
		require.Contains(t, text.stdout, "sweep would")
		require.Contains(t, text.stdout, "restart: rule "+recovery.ReasonOwnerExpired+", policy restart from owner")
		require.Contains(t, text.stdout, "dead-1: dead")

		x = explainJSON{}
		requireExit(t, 0, cliJSON(t, c.dsn(), &x, "episodes", "explain", c.busy.String()))
		require.Nil(t, x.Plan, "its owner is alive")
		require.Contains(t, x.Summary, "alive")

		x = explainJSON{}
		requireExit(t, 0, cliJSON(t, c.dsn(), &x, "episodes", "explain", c.typo.String()))
		require.Empty(t, x.Claimers)
		require.Contains(t, x.Summary, `no live node in its scope`)

		r := cli(t, c.dsn(), "episodes", "explain", uuid.NewString())
		requireExit(t, exitNotFound, r)
		require.Contains(t, r.stderr, "not found")
	})
}
