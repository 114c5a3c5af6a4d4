package recovery_test

import (
	"context"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/internal/store/backend"
	"github.com/revenant-go/revenant/internal/testdb"
	"github.com/revenant-go/revenant/recovery"
)

func TestMain(m *testing.M) { testdb.Main(m) }

type bundle struct {
	db     *sqlx.DB
	store  *episodes.Store
	schema *testdb.Schema
}

func setup(t testing.TB, driver string) *bundle {
	t.Helper()
	s := testdb.New(t, &testdb.Options{Driver: driver, MaxOpenConns: 12})
	store, err := episodes.New(s.DB, nil)
	require.NoError(t, err)
	return &bundle{db: s.DB, store: store, schema: s}
}

// deadNode registers a node that just died: on Postgres, one whose
// advisory lock nobody holds; on SQLite (no locks), one whose heartbeat
// TTL lapsed.
func (b *bundle) deadNode(t testing.TB, stack, env string) string {
	t.Helper()
	id := "dead-" + uuid.NewString()[:8]
	var lockKey any = rand.Int64()
	expiry := b.schema.NowPlus(time.Hour)
	if b.schema.IsSQLite() {
		lockKey, expiry = nil, b.schema.NowPlus(-time.Second)
	}
	_, err := b.db.Exec(`INSERT INTO revenant_nodes (node_id, stack, env, lock_key, expires_at)
		VALUES ($1, NULLIF($2, ''), NULLIF($3, ''), $4, `+expiry+`)`, id, stack, env, lockKey)
	require.NoError(t, err)
	return id
}

// deadReason is why deadNode's episodes are orphans.
func (b *bundle) deadReason() string {
	if b.schema.IsSQLite() {
		return recovery.ReasonOwnerExpired
	}
	return recovery.ReasonOwnerLockGone
}

// liveNode registers a node that holds its lock on a connection kept open
// for the test, with a fresh heartbeat unless expired.
func (b *bundle) liveNode(t testing.TB, expired bool) string {
	t.Helper()
	if b.schema.IsSQLite() {
		id := "live-" + uuid.NewString()[:8]
		expiry := b.schema.NowPlus(time.Hour)
		if expired {
			expiry = b.schema.NowPlus(-time.Second)
		}
		_, err := b.db.Exec(`INSERT INTO revenant_nodes (node_id, expires_at) VALUES ($1, `+expiry+`)`, id)
		require.NoError(t, err)
		return id
	}
	ctx := context.Background()
	conn, err := b.db.Conn(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	key := rand.Int64()
	_, err = conn.ExecContext(ctx, `SELECT pg_advisory_lock($1)`, key)
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = conn.ExecContext(context.Background(), `SELECT pg_advisory_unlock($1)`, key) })
	id := "live-" + uuid.NewString()[:8]
	expiry := "now() + interval '1 hour'"
	if expired {
		expiry = "now() - interval '1 second'"
	}
	_, err = b.db.Exec(`INSERT INTO revenant_nodes (node_id, lock_key, expires_at) VALUES ($1, $2, `+expiry+`)`, id, key)
	require.NoError(t, err)
	return id
}

// running creates an episode and claims it for owner.
func (b *bundle) running(t testing.TB, owner string, p episodes.CreateParams) *episodes.Episode {
	t.Helper()
	if p.ActorID == "" {
		p.ActorID = "mailer"
	}
	res, err := b.store.Create(context.Background(), p)
	require.NoError(t, err)
	ep, err := b.store.Claim(context.Background(), res.Episode.ID, owner)
	require.NoError(t, err)
	return ep
}

func (b *bundle) get(t testing.TB, id uuid.UUID) *episodes.Episode {
	t.Helper()
	ep, err := b.store.Get(context.Background(), id)
	require.NoError(t, err)
	return ep
}

type registry map[string]recovery.Policy

func (r registry) RecoveryPolicy(actor, expectation string) (recovery.Policy, bool) {
	if p, ok := r[actor+"/"+expectation]; ok && expectation != "" {
		return p, true
	}
	p, ok := r[actor]
	return p, ok
}

func TestSweepRestartsOrFailsByPolicyAndFencesTheDeadOwner(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		b := setup(t, driver)
		ctx := context.Background()
		dead := b.deadNode(t, "", "")
		restartMe := b.running(t, dead, episodes.CreateParams{ActorID: "mailer"})
		failMe := b.running(t, dead, episodes.CreateParams{ActorID: "billing", WorkflowInstanceID: uuid.New(), WorkflowStepID: "charge"})

		var events []recovery.Event
		var mu sync.Mutex
		res, err := recovery.Sweep(ctx, b.db, &recovery.Options{
			Registry: registry{"mailer": recovery.Restart, "billing": recovery.Fail},
			OnEvent: func(_ context.Context, ev recovery.Event) {
				mu.Lock()
				events = append(events, ev)
				mu.Unlock()
			},
		})
		require.NoError(t, err)
		require.Equal(t, 1, res.Restarted)
		require.Equal(t, 1, res.Failed)
		require.Zero(t, res.Skipped)
		require.Equal(t, []string{dead}, res.DeadNodes)

		r := b.get(t, restartMe.ID)
		require.Equal(t, episodes.StatusPending, r.Status)
		require.Empty(t, r.OwnerNode)
		require.Greater(t, r.ClaimToken, restartMe.ClaimToken)

		f := b.get(t, failMe.ID)
		require.Equal(t, episodes.StatusFailed, f.Status)
		require.Equal(t, "orphaned", f.ErrorClass)
		require.NotNil(t, f.FinishedAt)
		require.Contains(t, string(f.ErrorDetail), b.deadReason())
		require.Contains(t, string(f.ErrorDetail), dead)

		// The dead owner, were it only partitioned, is fenced off.
		_, err = b.store.Complete(ctx, restartMe.ID, restartMe.ClaimToken, nil)
		require.ErrorIs(t, err, episodes.ErrLeaseLost)

		require.Len(t, events, 2)
		byType := map[string]recovery.Event{}
		for _, ev := range events {
			byType[ev.Type] = ev
		}
		require.Equal(t, restartMe.ID, byType[recovery.EventRecovered].EpisodeID)
		require.Equal(t, failMe.WorkflowInstanceID, byType[recovery.EventFailed].WorkflowInstanceID)
		require.Equal(t, "charge", byType[recovery.EventFailed].WorkflowStepID)
		require.Equal(t, "orphaned", byType[recovery.EventFailed].ErrorClass)

		// Nothing left: a second sweep is a no-op.
		res, err = recovery.Sweep(ctx, b.db, &recovery.Options{Registry: registry{"mailer": recovery.Restart}})
		require.NoError(t, err)
		require.Zero(t, res.Restarted+res.Failed+res.Skipped)
	})
}

func TestWhatCountsAsOrphaned(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		b := setup(t, driver)
		ctx := context.Background()
		live := b.liveNode(t, false)
		paused := b.liveNode(t, true) // lock held, heartbeat expired (SIGSTOP, partition)

		// A live node's long, silent step is never swept.
		silent := b.running(t, live, episodes.CreateParams{})
		_, err := b.db.Exec(`UPDATE revenant_episodes SET last_activity_at = `+b.schema.NowPlus(-24*time.Hour)+` WHERE id = $1`, silent.ID)
		require.NoError(t, err)
		expired := b.running(t, paused, episodes.CreateParams{})
		// No owner liveness to go by: journal activity decides.
		staleUnowned := b.running(t, "manual-worker", episodes.CreateParams{})
		_, err = b.db.Exec(`UPDATE revenant_episodes SET last_activity_at = `+b.schema.NowPlus(-3*time.Minute)+` WHERE id = $1`, staleUnowned.ID)
		require.NoError(t, err)
		freshUnowned := b.running(t, "manual-worker", episodes.CreateParams{})
		// Blocked episodes are not swept.
		blocked := b.running(t, b.deadNode(t, "", ""), episodes.CreateParams{})
		_, err = b.store.Block(ctx, blocked.ID, blocked.ClaimToken, "waiting")
		require.NoError(t, err)

		res, err := recovery.Sweep(ctx, b.db, &recovery.Options{DryRun: true, Registry: registry{"mailer": recovery.Restart}})
		require.NoError(t, err)
		reasons := map[uuid.UUID]string{}
		for _, p := range res.Plans {
			reasons[p.EpisodeID] = p.Reason
			require.Equal(t, recovery.ActionRestart, p.Action)
			require.Equal(t, recovery.SourceRegistry, p.PolicySource)
		}
		require.Equal(t, map[uuid.UUID]string{
			expired.ID:      recovery.ReasonOwnerExpired,
			staleUnowned.ID: recovery.ReasonNoActivity,
		}, reasons)
		require.Equal(t, episodes.StatusRunning, b.get(t, expired.ID).Status, "a dry run changes nothing")

		res, err = recovery.Sweep(ctx, b.db, &recovery.Options{Registry: registry{"mailer": recovery.Restart}})
		require.NoError(t, err)
		require.Equal(t, 2, res.Restarted)
		require.Equal(t, episodes.StatusRunning, b.get(t, silent.ID).Status)
		require.Equal(t, episodes.StatusRunning, b.get(t, freshUnowned.ID).Status)
		require.Equal(t, episodes.StatusBlocked, b.get(t, blocked.ID).Status)

		// A custom StaleAfter applies to unowned episodes only.
		res, err = recovery.Sweep(ctx, b.db, &recovery.Options{StaleAfter: time.Millisecond, Registry: registry{"mailer": recovery.Restart}})
		require.NoError(t, err)
		require.Equal(t, 1, res.Restarted)
		require.Equal(t, episodes.StatusPending, b.get(t, freshUnowned.ID).Status)
		require.Equal(t, episodes.StatusRunning, b.get(t, silent.ID).Status)
	})
}

func TestConcurrentSweepsClaimEachOrphanOnce(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		b := setup(t, driver)
		ctx := context.Background()
		const n = 600
		dead := b.deadNode(t, "", "")
		if b.schema.IsSQLite() {
			tx, err := b.db.Beginx()
			require.NoError(t, err)
			for i := range n {
				actor := map[bool]string{true: "mailer", false: "billing"}[i%2 == 0]
				_, err := tx.Exec(`INSERT INTO revenant_episodes (id, actor_id, status, owner_node, claim_token, attempts, started_at, last_activity_at)
				VALUES ($1, $2, 'running', $3, 1, 1, `+b.schema.NowPlus(0)+`, `+b.schema.NowPlus(0)+`)`, uuid.Must(uuid.NewV7()), actor, dead)
				require.NoError(t, err)
			}
			require.NoError(t, tx.Commit())
		} else {
			_, err := b.db.Exec(`INSERT INTO revenant_episodes (id, actor_id, status, owner_node, claim_token, attempts, started_at, last_activity_at)
		SELECT gen_random_uuid(), CASE WHEN i % 2 = 0 THEN 'mailer' ELSE 'billing' END, 'running', $1, 1, 1, now(), now()
		FROM generate_series(1, $2) AS i`, dead, n)
			require.NoError(t, err)
		}

		const sweepers = 6
		results := make([]*recovery.Result, sweepers)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range sweepers {
			wg.Go(func() {
				<-start
				res, err := recovery.Sweep(ctx, b.db, &recovery.Options{
					BatchSize: 37, Registry: registry{"mailer": recovery.Restart, "billing": recovery.Fail},
				})
				require.NoError(t, err)
				results[i] = res
			})
		}
		close(start)
		wg.Wait()
		restarted, failed := 0, 0
		for _, r := range results {
			restarted += r.Restarted
			failed += r.Failed
		}
		require.Equal(t, n/2, restarted)
		require.Equal(t, n/2, failed)
		var bumpedTwice int
		require.NoError(t, b.db.Get(&bumpedTwice, `SELECT count(*) FROM revenant_episodes WHERE claim_token <> 2`))
		require.Zero(t, bumpedTwice, "every orphan was claimed exactly once")
	})
}

func TestPolicyResolutionOrder(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		b := setup(t, driver)
		ctx := context.Background()
		_, err := b.db.Exec(`INSERT INTO revenant_actor_definitions (actor_id, recovery_policy, expectation_policies, enabled) VALUES
		('dyn', 'fail', '{"resumable": "restart"}', true),
		('dyn-off', 'restart', '{}', false),
		('dyn-bad', 'reboot', '{}', true),
		('dyn-badexp', 'restart', '{"x": 42}', true)`)
		require.NoError(t, err)
		dead := b.deadNode(t, "", "")
		mk := func(actor, exp string) uuid.UUID {
			return b.running(t, dead, episodes.CreateParams{ActorID: actor, Expectation: exp}).ID
		}
		regExp := mk("reg", "resumable")
		regActor := mk("reg", "other")
		dynExp := mk("dyn", "resumable")
		dynActor := mk("dyn", "")
		dynOff := mk("dyn-off", "")
		unknown := mk("ghost", "")
		bad := mk("dyn-bad", "")
		badExp := mk("dyn-badexp", "x")
		reg := registry{"reg": recovery.Fail, "reg/resumable": recovery.Restart, "dyn": recovery.Restart}
		// The registry knows "dyn" too, but its entry only applies when we ask
		// for it; remove it to exercise the database definitions.
		delete(reg, "dyn")

		res, err := recovery.Sweep(ctx, b.db, &recovery.Options{DryRun: true, Registry: reg})
		require.NoError(t, err)
		plans := map[uuid.UUID]recovery.Plan{}
		for _, p := range res.Plans {
			plans[p.EpisodeID] = p
		}
		check := func(id uuid.UUID, action recovery.Action, source string) {
			t.Helper()
			require.Equal(t, action, plans[id].Action, "episode of %s", plans[id].ActorID)
			require.Equal(t, source, plans[id].PolicySource, "episode of %s", plans[id].ActorID)
		}
		check(regExp, recovery.ActionRestart, recovery.SourceRegistry)
		check(regActor, recovery.ActionFail, recovery.SourceRegistry)
		check(dynExp, recovery.ActionRestart, recovery.SourceDefinitions)
		check(dynActor, recovery.ActionFail, recovery.SourceDefinitions)
		check(dynOff, recovery.ActionFail, recovery.SourceDefault)
		check(unknown, recovery.ActionFail, recovery.SourceDefault)
		require.Equal(t, recovery.ActionSkip, plans[bad].Action)
		require.ErrorIs(t, plans[bad].Err, recovery.ErrBadPolicy)
		require.Equal(t, recovery.ActionSkip, plans[badExp].Action)

		// For real: malformed values leave those episodes untouched, reported.
		res, err = recovery.Sweep(ctx, b.db, &recovery.Options{Registry: reg})
		require.NoError(t, err)
		require.Equal(t, 2, res.Restarted)
		require.Equal(t, 4, res.Failed)
		require.Equal(t, 2, res.Skipped)
		skipped := map[uuid.UUID]bool{}
		for _, e := range res.Errors {
			require.ErrorIs(t, e.Err, recovery.ErrBadPolicy)
			skipped[e.EpisodeID] = true
		}
		require.Equal(t, map[uuid.UUID]bool{bad: true, badExp: true}, skipped)
		for id := range skipped {
			ep := b.get(t, id)
			require.Equal(t, episodes.StatusRunning, ep.Status, "never silently failed")
			require.Equal(t, dead, ep.OwnerNode)
		}

		// The callback wins over everything, per episode.
		res, err = recovery.Sweep(ctx, b.db, &recovery.Options{
			ResolvePolicy: func(_ context.Context, ep *episodes.Episode) (recovery.Policy, error) {
				if ep.ID == bad {
					return recovery.Restart, nil
				}
				return "explode", nil
			},
		})
		require.NoError(t, err)
		require.Equal(t, 1, res.Restarted)
		require.Equal(t, 1, res.Skipped)
		require.ErrorIs(t, res.Errors[0].Err, recovery.ErrBadPolicy)
		require.Equal(t, badExp, res.Errors[0].EpisodeID)
		require.Equal(t, episodes.StatusRunning, b.get(t, badExp).Status)
	})
}

func TestScopeByStackAndEnv(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		b := setup(t, driver)
		ctx := context.Background()
		dead := b.deadNode(t, "", "")
		mk := func(stack, env string) uuid.UUID {
			return b.running(t, dead, episodes.CreateParams{SourceStack: stack, SourceEnv: env}).ID
		}
		webProd := mk("web", "prod")
		noStackProd := mk("", "prod")
		jobsProd := mk("jobs", "prod")
		webNoEnv := mk("web", "")
		webStaging := mk("web", "staging")

		plan := func(o recovery.Options) map[uuid.UUID]bool {
			t.Helper()
			o.DryRun = true
			res, err := recovery.Sweep(ctx, b.db, &o)
			require.NoError(t, err)
			got := map[uuid.UUID]bool{}
			for _, p := range res.Plans {
				got[p.EpisodeID] = true
			}
			return got
		}
		require.Equal(t, map[uuid.UUID]bool{webProd: true, noStackProd: true}, plan(recovery.Options{Stack: "web", Env: "prod"}),
			"rows with no stack match any stack; env is strict")
		require.Equal(t, map[uuid.UUID]bool{webNoEnv: true}, plan(recovery.Options{Stack: "web"}), "no env matches only no env")
		require.Equal(t, map[uuid.UUID]bool{webProd: true, noStackProd: true, jobsProd: true}, plan(recovery.Options{AllStacks: true, Env: "prod"}))
		require.Len(t, plan(recovery.Options{AllStacks: true, AllEnvs: true}), 5)
		require.Equal(t, map[uuid.UUID]bool{webStaging: true}, plan(recovery.Options{Node: fakeNode{stack: "web", env: "staging"}}),
			"defaults come from the node")

		// And for real: a scoped sweep recovers exactly what its plan said.
		res, err := recovery.Sweep(ctx, b.db, &recovery.Options{Stack: "web", Env: "prod", Registry: registry{"mailer": recovery.Restart}})
		require.NoError(t, err)
		require.Equal(t, 2, res.Restarted)
		require.Equal(t, episodes.StatusPending, b.get(t, webProd).Status)
		require.Equal(t, episodes.StatusPending, b.get(t, noStackProd).Status)
		require.Equal(t, episodes.StatusRunning, b.get(t, jobsProd).Status)
		require.Equal(t, episodes.StatusRunning, b.get(t, webNoEnv).Status)
	})
}

type fakeNode struct{ stack, env string }

func (n fakeNode) NodeID() string { return "fake" }
func (n fakeNode) Stack() string  { return n.stack }
func (n fakeNode) Env() string    { return n.env }
func (n fakeNode) RecoveryPolicy(string, string) (recovery.Policy, bool) {
	return recovery.Restart, true
}

func TestMaxAttemptsDeadLetters(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		b := setup(t, driver)
		ctx := context.Background()
		dead := b.deadNode(t, "", "")
		poison := b.running(t, dead, episodes.CreateParams{MaxAttempts: 1})
		healthy := b.running(t, dead, episodes.CreateParams{MaxAttempts: 2})
		var events []recovery.Event
		res, err := recovery.Sweep(ctx, b.db, &recovery.Options{
			Registry: registry{"mailer": recovery.Restart},
			OnEvent:  func(_ context.Context, ev recovery.Event) { events = append(events, ev) },
		})
		require.NoError(t, err)
		require.Equal(t, 1, res.DeadLettered)
		require.Equal(t, 1, res.Restarted)
		p := b.get(t, poison.ID)
		require.Equal(t, episodes.StatusFailed, p.Status)
		require.Equal(t, "max_attempts_exceeded", p.ErrorClass)
		require.Equal(t, episodes.StatusPending, b.get(t, healthy.ID).Status)
		types := []string{events[0].Type, events[1].Type}
		require.ElementsMatch(t, []string{recovery.EventDeadLettered, recovery.EventRecovered}, types)
	})
}

func TestEpisodeLeftRecoveringBySweeperThatDiedIsReclaimed(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		b := setup(t, driver)
		ctx := context.Background()
		// An older sweeper claimed the episode (owner = itself, phase
		// recovering) and died before finishing.
		deadSweeper := b.deadNode(t, "", "")
		ep := b.running(t, "crashed-worker", episodes.CreateParams{})
		_, err := b.db.Exec(`UPDATE revenant_episodes SET owner_node = $2, phase = 'recovering', claim_token = claim_token + 1 WHERE id = $1`, ep.ID, deadSweeper)
		require.NoError(t, err)
		res, err := recovery.Sweep(ctx, b.db, &recovery.Options{Registry: registry{"mailer": recovery.Restart}})
		require.NoError(t, err)
		require.Equal(t, 1, res.Restarted)
		got := b.get(t, ep.ID)
		require.Equal(t, episodes.StatusPending, got.Status)
		require.Empty(t, got.Phase)
	})
}

func TestFailingSweepLeavesEpisodesAsTheyWere(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		b := setup(t, driver)
		dead := b.deadNode(t, "", "")
		var ids []uuid.UUID
		for range 5 {
			ids = append(ids, b.running(t, dead, episodes.CreateParams{}).ID)
		}
		ctx, cancel := context.WithCancel(context.Background())
		calls := 0
		_, err := recovery.Sweep(ctx, b.db, &recovery.Options{
			ResolvePolicy: func(ctx context.Context, ep *episodes.Episode) (recovery.Policy, error) {
				calls++
				if calls == 3 {
					cancel() // the sweeping process goes away mid-batch
				}
				return recovery.Restart, nil
			},
		})
		require.Error(t, err)
		for _, id := range ids {
			ep := b.get(t, id)
			require.Equal(t, episodes.StatusRunning, ep.Status)
			require.Equal(t, dead, ep.OwnerNode)
			require.Equal(t, int64(1), ep.ClaimToken)
		}
		// The canceled statement's transaction ends on the server a moment
		// after the client gave up (lib/pq cancels asynchronously); until it
		// does, its row locks make the next sweep skip those rows.
		restarted := 0
		require.Eventually(t, func() bool {
			res, err := recovery.Sweep(context.Background(), b.db, &recovery.Options{Registry: registry{"mailer": recovery.Restart}})
			if err == nil {
				restarted += res.Restarted
			}
			return restarted >= 5
		}, 30*time.Second, 20*time.Millisecond)
		require.Equal(t, 5, restarted)
	})
}

func TestUnclaimableAndDeadOwners(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		b := setup(t, driver)
		ctx := context.Background()
		alive, err := backend.For(b.db).NodeDeadOwnersExist(ctx, b.db)
		require.NoError(t, err)
		require.False(t, alive)
		dead := b.deadNode(t, "", "")
		exists, err := backend.For(b.db).NodeDeadOwnersExist(ctx, b.db)
		require.NoError(t, err)
		require.False(t, exists, "a dead node owning nothing needs no sweep")
		b.running(t, dead, episodes.CreateParams{})
		exists, err = backend.For(b.db).NodeDeadOwnersExist(ctx, b.db)
		require.NoError(t, err)
		require.True(t, exists)

		for range 3 {
			_, err := b.store.Create(ctx, episodes.CreateParams{ActorID: "nobody-runs-me"})
			require.NoError(t, err)
		}
		backlog, err := recovery.Unclaimable(ctx, b.db, nil)
		require.NoError(t, err)
		require.Equal(t, []recovery.Backlog{{ActorID: "nobody-runs-me", Pending: 3}}, backlog)
	})
}

func TestBadInput(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		ctx := context.Background()
		_, err := recovery.Sweep(ctx, nil, nil)
		require.ErrorIs(t, err, recovery.ErrNilDB)
		_, err = recovery.NewSweeper(nil, nil)
		require.ErrorIs(t, err, recovery.ErrNilDB)
		b := setup(t, driver)
		_, err = recovery.Sweep(ctx, b.db, &recovery.Options{StaleAfter: -1})
		require.ErrorContains(t, err, "StaleAfter")
		_, err = recovery.Sweep(ctx, b.db, &recovery.Options{BatchSize: -5})
		require.ErrorContains(t, err, "BatchSize")
		_, err = recovery.NewSweeper(b.db, &recovery.SweeperConfig{Interval: -1})
		require.Error(t, err)
		_, err = recovery.ParsePolicy("reboot")
		require.ErrorIs(t, err, recovery.ErrBadPolicy)
		p, err := recovery.ParsePolicy("restart")
		require.NoError(t, err)
		require.Equal(t, recovery.Restart, p)
	})
}
