package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant"
	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/inspect"
	"github.com/revenant-go/revenant/internal/testdb"
	"github.com/revenant-go/revenant/journal"
	"github.com/revenant-go/revenant/recovery"
	"github.com/revenant-go/revenant/runner"
)

// The "done when", from a really killed node: a child process
// runs two episodes (their actors published restart and fail) and is
// SIGKILLed. Then each question is answered by one command, and the
// answers agree: status (exit 5) names the dead node by rule
// owner_lock_released and its stuck episodes, explained; episodes explain
// gives the same explanation; sweep --dry-run plans what sweep --yes then
// does, episode for episode.
func TestKilledNodeAnsweredByTheCLI(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		if driver == testdb.SQLite {
			t.Skip("SQLite has no session lock for a kill to release; TestStatusFindsWhatIsStuck covers its lapsed-TTL deaths")
		}
		f := newFixture(t, driver)
		victim := killVictim(t, f.dsn())
		in, err := inspect.New(f.s.DB, nil)
		require.NoError(t, err)
		require.Eventually(t, func() bool {
			nodes, err := in.Nodes(context.Background())
			if err != nil {
				return false
			}
			for _, n := range nodes {
				if n.ID == victim {
					return n.Liveness == inspect.Dead && n.DeadBy == recovery.ReasonOwnerLockGone
				}
			}
			return false
		}, 30*time.Second, 20*time.Millisecond, "Postgres never released the killed node's session lock")

		// What is stuck?
		var st statusJSON
		requireExit(t, exitAttention, cliJSON(t, f.dsn(), &st, "status"))
		require.Contains(t, st.Attention, fmt.Sprintf("node %s is dead (%s) and owns 2 running episode(s)", victim, recovery.ReasonOwnerLockGone))
		var dead *nodeJSON
		for i := range st.Nodes {
			if st.Nodes[i].ID == victim {
				dead = &st.Nodes[i]
			}
		}
		require.NotNil(t, dead, "status lists the dead node: %+v", st.Nodes)
		require.Equal(t, "dead", dead.Liveness)
		require.Equal(t, recovery.ReasonOwnerLockGone, dead.DeadBy)
		require.Equal(t, 2, dead.Running)
		require.Len(t, st.Stuck, 2)
		want := map[string]string{"victim-restart": "restart", "victim-fail": "fail"}
		for _, s := range st.Stuck {
			require.Equal(t, want[s.ActorID], s.Action, "episode %s of %s", s.EpisodeID, s.ActorID)
			require.Equal(t, victim, s.PreviousOwner)
			require.Equal(t, recovery.ReasonOwnerLockGone, s.Reason)
			require.Equal(t, recovery.SourceOwner, s.PolicySource, "the killed node published its policies")
			require.Contains(t, s.Summary, "session lock was released")
		}
		text := cli(t, f.dsn(), "status")
		requireExit(t, exitAttention, text)
		for _, s := range append([]string{victim, recovery.ReasonOwnerLockGone, "STUCK: 2 episode(s)"}, st.Stuck[0].EpisodeID, st.Stuck[1].EpisodeID) {
			require.Contains(t, text.stdout, s)
		}

		// Why? The same explanation, episode by episode.
		for _, s := range st.Stuck {
			var x explainJSON
			requireExit(t, 0, cliJSON(t, f.dsn(), &x, "episodes", "explain", s.EpisodeID))
			require.Equal(t, s.Summary, x.Summary, "status and explain say the same of %s", s.EpisodeID)
			require.NotNil(t, x.Owner)
			require.Equal(t, recovery.ReasonOwnerLockGone, x.Owner.DeadBy)
			require.True(t, x.Owner.HasLock)
			require.False(t, x.Owner.LockHeld)
			require.NotNil(t, x.Plan)
			require.Equal(t, s.planJSON, *x.Plan, "status and explain plan the same for %s", s.EpisodeID)
		}

		// What will recovery do? Exactly what the real sweep then does.
		var dry sweepJSON
		requireExit(t, 0, cliJSON(t, f.dsn(), &dry, "sweep", "--dry-run"))
		plans := map[string]planJSON{}
		for _, p := range dry.Plans {
			plans[p.EpisodeID] = p
		}
		require.Len(t, plans, 2)
		for _, s := range st.Stuck {
			require.Equal(t, s.planJSON, plans[s.EpisodeID], "status and the dry run agree on %s", s.EpisodeID)
		}
		require.Equal(t, []string{victim}, dry.DeadNodes)

		var swept sweepJSON
		requireExit(t, 0, cliJSON(t, f.dsn(), &swept, "sweep", "--yes"))
		require.Len(t, swept.Actions, len(plans), "%+v", swept.Actions)
		for _, a := range swept.Actions {
			p, ok := plans[a.EpisodeID]
			require.True(t, ok, "episode %s was swept, not planned", a.EpisodeID)
			require.Equal(t, planJSON{EpisodeID: p.EpisodeID, ActorID: p.ActorID, PreviousOwner: p.PreviousOwner, Reason: p.Reason, Action: p.Action},
				planJSON{EpisodeID: a.EpisodeID, ActorID: a.ActorID, PreviousOwner: a.PreviousOwner, Reason: a.Reason, Action: a.Action})
		}
		require.Equal(t, dry.DeadNodes, swept.DeadNodes)
		require.Equal(t, [4]int{dry.Restarted, dry.Failed, dry.DeadLettered, dry.Skipped},
			[4]int{swept.Restarted, swept.Failed, swept.DeadLettered, swept.Skipped})
		require.Equal(t, [4]int{1, 1, 0, 0}, [4]int{swept.Restarted, swept.Failed, swept.DeadLettered, swept.Skipped})
		for id, p := range plans {
			ep := f.get(mustParseID(t, id))
			switch p.Action {
			case "restart":
				require.Equal(t, episodes.StatusPending, ep.Status, "restarted: pending again")
			case "fail":
				require.Equal(t, episodes.StatusFailed, ep.Status)
				require.Equal(t, "orphaned", ep.ErrorClass)
			}
		}
		requireExit(t, 0, cliJSON(t, f.dsn(), &dry, "sweep", "--dry-run"))
		require.Empty(t, dry.Plans, "nothing is left for the next sweep")
	})
}

func mustParseID(t *testing.T, s string) uuid.UUID {
	t.Helper()
	id, err := parseID(s, "an episode")
	require.NoError(t, err)
	return id
}

// The victim: a real node, in a child process, that runs one episode of
// each actor until SIGKILL.

const victimEnv = "REVENANT_CLI_TEST_VICTIM"

// victimMain runs the victim on dsn and never returns unless it fails.
func victimMain(dsn string) error {
	ctx := context.Background()
	db, err := sqlx.Open("postgres", dsn)
	if err != nil {
		return err
	}
	c, err := revenant.New(db, &revenant.Config{Name: "victim", SkipMigrate: true,
		HeartbeatInterval: 100 * time.Millisecond, NodeTTL: 30 * time.Second, PollInterval: 20 * time.Millisecond})
	if err != nil {
		return err
	}
	started := make(chan struct{}, 2)
	hang := func(ctx context.Context, _ *episodes.Episode, _ *journal.Journal) (any, error) {
		started <- struct{}{}
		<-ctx.Done()
		return nil, ctx.Err()
	}
	for actor, policy := range map[string]recovery.Policy{"victim-restart": recovery.Restart, "victim-fail": recovery.Fail} {
		if err := c.Register(runner.Actor{ID: actor, Run: hang, Recovery: policy}); err != nil {
			return err
		}
	}
	if err := c.Start(ctx); err != nil {
		return err
	}
	for _, actor := range []string{"victim-restart", "victim-fail"} {
		if _, err := c.Enqueue(ctx, episodes.CreateParams{ActorID: actor}); err != nil {
			return err
		}
	}
	<-started
	<-started
	fmt.Println("ready", c.NodeID())
	select {} // until SIGKILL
}

// killVictim runs the victim on dsn, waits until both its episodes run,
// SIGKILLs it and returns its node id.
func killVictim(t *testing.T, dsn string) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), victimEnv+"="+dsn)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	deadline := time.AfterFunc(60*time.Second, func() { _ = cmd.Process.Kill() })
	defer deadline.Stop()
	var node string
	lines := bufio.NewScanner(out)
	for lines.Scan() {
		if rest, ok := strings.CutPrefix(lines.Text(), "ready "); ok {
			node = rest
			break
		}
	}
	require.NotEmpty(t, node, "the victim never got both episodes running")
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	_ = cmd.Wait()
	return node
}
