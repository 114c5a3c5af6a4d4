package revenant_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant"
	"github.com/revenant-go/revenant/breakers"
	"github.com/revenant-go/revenant/bus"
	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/internal/store"
	"github.com/revenant-go/revenant/internal/testdb"
	"github.com/revenant-go/revenant/journal"
	"github.com/revenant-go/revenant/recovery"
	"github.com/revenant-go/revenant/runner"
)

// retryChildEnv makes the test binary the retry victim (see TestMain).
const retryChildEnv = "REVENANT_TEST_RETRY_CHILD"

// effects counts the effects of flakyActor's transactional step.
func createEffects(t *testing.T, db *sqlx.DB) {
	t.Helper()
	_, err := db.Exec(`CREATE TABLE effects (episode text PRIMARY KEY)`)
	require.NoError(t, err)
}

// flakyActor writes one effect in a transactional step, then fails its
// first attempt; a retry waits retryWait.
func flakyActor(retryWait time.Duration) runner.Actor {
	return runner.Actor{
		ID: "flaky", Retry: &episodes.RetryPolicy{MinBackoff: retryWait, MaxBackoff: retryWait},
		Run: func(ctx context.Context, ep *episodes.Episode, j *journal.Journal) (any, error) {
			if _, err := journal.StepTx(ctx, j, "effect", func(ctx context.Context, tx *sqlx.Tx) (int, error) {
				_, err := tx.ExecContext(ctx, `INSERT INTO effects (episode) VALUES ($1)`, ep.ID.String())
				return 1, err
			}); err != nil {
				return nil, err
			}
			if ep.Attempts == 1 {
				return nil, errors.New("the dependency timed out")
			}
			return "ok", nil
		},
	}
}

// retryVictim runs flakyActor until its episode waits for its retry, says
// so, and waits for SIGKILL.
func retryVictim(raw string) error {
	ctx := context.Background()
	db, err := openChildDB(ctx, raw)
	if err != nil {
		return err
	}
	c, err := revenant.New(db, fast(revenant.Config{Name: "retry-victim", SkipMigrate: true}))
	if err != nil {
		return err
	}
	if err := c.Register(flakyActor(time.Hour)); err != nil {
		return err
	}
	// episode.retrying is published once the retry's wait is committed.
	waiting := make(chan string, 1)
	c.Subscribe(bus.EpisodeRetrying, func(_ context.Context, ev bus.Event) error {
		select {
		case waiting <- ev.EpisodeID.String():
		default:
		}
		return nil
	})
	if err := c.Start(ctx); err != nil {
		return err
	}
	if _, err := c.Enqueue(ctx, episodes.CreateParams{ActorID: "flaky"}); err != nil {
		return err
	}
	fmt.Println("waiting", <-waiting)
	select {} // until SIGKILL
}

// A node killed while its episode waits for a retry loses nothing: the
// wait is a row in the database, and a new node runs the retry when it is
// due, without running the completed transactional step again.
func TestKillDuringRetryWaitLosesNothing(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		s := testdb.New(t, &testdb.Options{Driver: driver})
		createEffects(t, s.DB)
		spec, err := json.Marshal(childSpec{Driver: driver, DSN: s.DSN})
		require.NoError(t, err)
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), retryChildEnv+"="+string(spec))
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		require.NoError(t, err)
		require.NoError(t, cmd.Start())
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		deadline := time.AfterFunc(60*time.Second, func() { _ = cmd.Process.Kill() })
		defer deadline.Stop()
		var id uuid.UUID
		for lines := bufio.NewScanner(out); lines.Scan(); {
			if rest, ok := strings.CutPrefix(lines.Text(), "waiting "); ok {
				id = uuid.MustParse(rest)
				break
			}
		}
		require.NotEqual(t, uuid.Nil, id, "the victim never reached the retry wait")
		require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
		_ = cmd.Wait()

		// The retry is due in an hour; an operator (or a test) makes it
		// due now, then a new node takes it.
		_, err = s.DB.Exec(`UPDATE revenant_episodes SET run_at = created_at WHERE id = $1`, id)
		require.NoError(t, err)
		c := newClient(t, s.DB, revenant.Config{Name: "survivor"})
		require.NoError(t, c.Register(flakyActor(time.Hour)))
		require.NoError(t, c.Start(context.Background()))
		waitFor(t, "the retried episode completes", func() bool { return status(t, s.DB, id) == episodes.StatusDone })
		ep, err := c.Episodes().Get(context.Background(), id)
		require.NoError(t, err)
		require.Equal(t, 2, ep.Attempts)
		var effects int
		require.NoError(t, s.DB.Get(&effects, `SELECT count(*) FROM effects`))
		require.Equal(t, 1, effects, "the transactional step ran once")
	})
}

// Retries, requeues and breaker changes are published on the client's bus.
func TestRetryRequeueAndBreakerEvents(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		s := testdb.New(t, &testdb.Options{Driver: driver})
		c := newClient(t, s.DB, revenant.Config{Name: "events"})
		var mu sync.Mutex
		seen := map[string]int{}
		for _, typ := range []string{bus.EpisodeRetrying, bus.EpisodeFailed, bus.EpisodeRequeued, bus.BreakerOpened, bus.BreakerHalfOpen, bus.BreakerClosed} {
			c.Subscribe(typ, func(_ context.Context, ev bus.Event) error {
				mu.Lock()
				defer mu.Unlock()
				seen[ev.Type]++
				return nil
			})
		}
		count := func(typ string) int {
			mu.Lock()
			defer mu.Unlock()
			return seen[typ]
		}
		var healthy sync.Map
		require.NoError(t, c.Register(runner.Actor{
			ID: "dep", MaxAttempts: 2, Retry: &episodes.RetryPolicy{MinBackoff: 10 * time.Millisecond},
			Breaker: &breakers.Policy{ConsecutiveFailures: 2, CoolDown: 200 * time.Millisecond},
			Run: func(context.Context, *episodes.Episode, *journal.Journal) (any, error) {
				if _, ok := healthy.Load("yes"); ok {
					return "ok", nil
				}
				return nil, errors.New("down")
			},
		}))
		ctx := context.Background()
		require.NoError(t, c.Start(ctx))
		res, err := c.Enqueue(ctx, episodes.CreateParams{ActorID: "dep"})
		require.NoError(t, err)
		waitFor(t, "the episode fails after a retry", func() bool { return status(t, s.DB, res.Episode.ID) == episodes.StatusFailed })
		waitFor(t, "retrying, failed and opened are published", func() bool {
			return count(bus.EpisodeRetrying) == 1 && count(bus.EpisodeFailed) == 1 && count(bus.BreakerOpened) == 1
		})
		b, err := c.Breakers().Get(ctx, breakers.Key{ActorID: "dep"})
		require.NoError(t, err)
		require.Equal(t, breakers.Open, b.State)

		healthy.Store("yes", true)
		dead, err := c.DeadLetters(ctx, episodes.ListParams{ActorID: "dep"})
		require.NoError(t, err)
		require.Len(t, dead.Episodes, 1)
		_, err = c.Requeue(ctx, res.Episode.ID, episodes.RequeueOptions{Reason: "fixed"})
		require.NoError(t, err)
		waitFor(t, "the requeued episode is the probe and completes", func() bool { return status(t, s.DB, res.Episode.ID) == episodes.StatusDone })
		waitFor(t, "requeued, half-open and closed are published", func() bool {
			return count(bus.EpisodeRequeued) == 1 && count(bus.BreakerHalfOpen) == 1 && count(bus.BreakerClosed) == 1
		})
		_, err = c.Archive(ctx, res.Episode.ID)
		require.NoError(t, err)
	})
}

// The client explains an orphan as its own sweep will treat it: its own
// registry first (here Fail, over the dead owner's Restart).
func TestClientExplainResolvesAsItsSweep(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		s := testdb.New(t, &testdb.Options{Driver: driver})
		ids := deadNode(t, s, "dead-1", map[string]store.ActorPolicy{"mailer": {Recovery: "restart"}}, "mailer")
		c := newClient(t, s.DB, revenant.Config{Name: "ops"})
		require.NoError(t, c.Register(runner.Actor{ID: "mailer", Run: noop, Recovery: recovery.Fail}))
		x, err := c.Explain(context.Background(), ids["mailer"])
		require.NoError(t, err)
		require.NotNil(t, x.Plan)
		require.Equal(t, recovery.ActionFail, x.Plan.Action)
		require.Equal(t, recovery.SourceRegistry, x.Plan.PolicySource)
		prod := newClient(t, s.DB, revenant.Config{Name: "prod", Env: "prod"})
		require.NoError(t, prod.Register(runner.Actor{ID: "mailer", Run: noop, Recovery: recovery.Fail}))
		x, err = prod.Explain(context.Background(), ids["mailer"])
		require.NoError(t, err)
		require.Nil(t, x.Plan, "not this client's sweep to take")
		require.Contains(t, x.Summary, "outside this node's sweep scope")

		res, err := c.Sweep(context.Background(), false)
		require.NoError(t, err)
		require.Equal(t, 1, res.Failed, "the sweep does what Explain said")
	})
}
