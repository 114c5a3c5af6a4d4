package storetest

import (
	"context"
	"encoding/json"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant/internal/dbx"
	"github.com/revenant-go/revenant/internal/store"
	"github.com/revenant-go/revenant/internal/testdb"
)

var everywhere = store.Scope{AllStacks: true, AllEnvs: true}

// orphansOf registers node, claims n episodes of actor under it, and
// stops the node, so they are orphans (owner_stopped).
func (f *fixture) orphansOf(t *testing.T, node, actor string, n int, p store.EpisodeInsertParams) []uuid.UUID {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, f.st.NodeRegister(ctx, f.schema.DB, &store.NodeRegisterParams{ID: node, Name: node, Actors: []string{actor}, TTL: time.Minute}))
	p.ActorID = actor
	for range n {
		f.insert(t, p)
	}
	rows := f.claimMany(t, store.ClaimManyParams{Node: node, ActorID: actor, Limit: n, Scope: everywhere})
	require.Len(t, rows, n)
	ids := make([]uuid.UUID, n)
	for i, r := range rows {
		ids[i] = r.ID
	}
	require.NoError(t, f.st.NodeStop(ctx, f.schema.DB, node))
	return ids
}

func recoverAll(t *testing.T, f *fixture, q store.Querier, p *store.OrphanRecoverParams) []store.Recovered {
	t.Helper()
	var out []store.Recovered
	for !p.Done {
		batch, err := f.st.OrphanRecover(context.Background(), q, p)
		require.NoError(t, err)
		out = append(out, batch...)
	}
	return out
}

func TestOrphanRecoverAppliesEachPolicy(t *testing.T) {
	testdb.Each(t, testdb.Drivers, func(t *testing.T, driver string) {
		f := setup(t, driver)
		ctx := context.Background()
		restart := f.orphansOf(t, "n1", "restartme", 3, store.EpisodeInsertParams{})
		fail := f.orphansOf(t, "n2", "failme", 2, store.EpisodeInsertParams{Expectation: "x"})
		dead := f.orphansOf(t, "n3", "exhausted", 1, store.EpisodeInsertParams{MaxAttempts: 1})
		// A live node's running episode is not an orphan.
		require.NoError(t, f.st.NodeRegister(ctx, f.schema.DB, &store.NodeRegisterParams{ID: "live", Name: "live", TTL: time.Minute}))
		f.insert(t, store.EpisodeInsertParams{ActorID: "restartme"})
		require.Len(t, f.claimMany(t, store.ClaimManyParams{Node: "live", ActorID: "restartme", Limit: 1, Scope: everywhere}), 1)

		q := store.OrphanQuery{StaleAfter: time.Minute, Scope: everywhere}
		exists, err := f.st.NodeDeadOwnersExist(ctx, f.schema.DB)
		require.NoError(t, err)
		require.True(t, exists)
		groups, err := f.st.OrphanGroups(ctx, f.schema.DB, &q)
		require.NoError(t, err)
		pairs := map[string]bool{}
		for _, g := range groups {
			pairs[g.Owner+"/"+g.ActorID+"/"+g.Expectation] = true
		}
		require.Equal(t, map[string]bool{"n1/restartme/": true, "n2/failme/x": true, "n3/exhausted/": true}, pairs,
			"the live node's running episode is no orphan")

		p := &store.OrphanRecoverParams{Query: q, Groups: groups, Limit: 2, Policies: perOwner(groups, []store.PairPolicy{
			{ActorID: "restartme", Policy: "restart", Source: "registry"},
			{ActorID: "failme", Expectation: "x", Policy: "fail", Source: "actor_definitions"},
			{ActorID: "exhausted", Policy: "restart", Source: "registry"},
		})}
		got := recoverAll(t, f, f.schema.DB, p)
		actions := map[uuid.UUID]string{}
		for _, r := range got {
			actions[r.ID] = r.Action
			require.Equal(t, store.ReasonOwnerStopped, r.Reason)
			require.NotEmpty(t, r.PreviousOwner)
		}
		require.Len(t, actions, 6, "each orphan recovered once")
		for _, id := range restart {
			require.Equal(t, store.ActionRestart, actions[id])
			ep, err := f.st.EpisodeGet(ctx, f.schema.DB, id)
			require.NoError(t, err)
			require.Equal(t, store.StatusPending, ep.Status)
			require.Equal(t, int64(2), ep.ClaimToken, "the token is bumped: the old owner is fenced off")
			require.Empty(t, ep.OwnerNode)
		}
		for _, id := range fail {
			require.Equal(t, store.ActionFail, actions[id])
			ep, err := f.st.EpisodeGet(ctx, f.schema.DB, id)
			require.NoError(t, err)
			require.Equal(t, store.StatusFailed, ep.Status)
			require.Equal(t, "orphaned", ep.ErrorClass)
			var detail map[string]any
			require.NoError(t, json.Unmarshal(ep.ErrorDetail, &detail))
			require.Equal(t, "actor_definitions", detail["policy_source"])
			require.Equal(t, "n2", detail["previous_owner"])
		}
		require.Equal(t, store.ActionDeadLetter, actions[dead[0]])

		groups, err = f.st.OrphanGroups(ctx, f.schema.DB, &q)
		require.NoError(t, err)
		require.Empty(t, groups)
		marked, err := f.st.NodeMarkDead(ctx, f.schema.DB)
		require.NoError(t, err)
		require.Empty(t, marked, "stopped nodes are already marked")
	})
}

// Sweeps on many connections never recover one orphan twice.
func TestOrphanRecoverNeverOverlaps(t *testing.T) {
	testdb.Each(t, testdb.Drivers, func(t *testing.T, driver string) {
		f := setup(t, driver)
		ctx := context.Background()
		const total = 40
		f.orphansOf(t, "n1", "a", total/2, store.EpisodeInsertParams{})
		f.orphansOf(t, "n2", "a", total/2, store.EpisodeInsertParams{})
		q := store.OrphanQuery{StaleAfter: time.Minute, Scope: everywhere}
		var mu sync.Mutex
		seen := map[uuid.UUID]int{}
		errs := make(chan error, 6)
		var wg sync.WaitGroup
		for range 6 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				groups, err := f.st.OrphanGroups(ctx, f.schema.DB, &q)
				if err != nil {
					if !dbx.IsRetryable(err) {
						errs <- err
					}
					return
				}
				p := &store.OrphanRecoverParams{Query: q, Groups: groups, Limit: 3,
					Policies: perOwner(groups, []store.PairPolicy{{ActorID: "a", Policy: "restart", Source: "registry"}})}
				for !p.Done {
					batch, err := f.st.OrphanRecover(ctx, f.schema.DB, p)
					if err != nil {
						if !dbx.IsRetryable(err) {
							errs <- err
						}
						return
					}
					mu.Lock()
					for _, r := range batch {
						seen[r.ID]++
					}
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
		for id, n := range seen {
			require.Equal(t, 1, n, "orphan %s recovered %d times", id, n)
		}
		// Whatever a busy file left over, one more sweep takes the rest.
		groups, err := f.st.OrphanGroups(ctx, f.schema.DB, &q)
		require.NoError(t, err)
		for _, r := range recoverAll(t, f, f.schema.DB, &store.OrphanRecoverParams{Query: q, Groups: groups, Limit: 100,
			Policies: perOwner(groups, []store.PairPolicy{{ActorID: "a", Policy: "restart", Source: "registry"}})}) {
			seen[r.ID]++
		}
		require.Len(t, seen, total)
	})
}

func TestOrphanLockAndApply(t *testing.T) {
	testdb.Each(t, testdb.Drivers, func(t *testing.T, driver string) {
		f := setup(t, driver)
		ctx := context.Background()
		ids := f.orphansOf(t, "n1", "a", 3, store.EpisodeInsertParams{})
		q := store.OrphanQuery{StaleAfter: time.Minute, Scope: everywhere}

		tx, err := f.schema.DB.BeginTxx(ctx, nil)
		require.NoError(t, err)
		defer func() { _ = tx.Rollback() }()
		locked, err := f.st.OrphanLock(ctx, tx, &q, []uuid.UUID{ids[0]}, 10)
		require.NoError(t, err)
		require.Len(t, locked, 2, "excluded ids are left out")
		var ds []store.Decision
		for _, o := range locked {
			require.NotEqual(t, ids[0], o.Episode.ID)
			require.Equal(t, store.ReasonOwnerStopped, o.Reason)
			ds = append(ds, store.Decision{ID: o.Episode.ID, ClaimToken: o.Episode.ClaimToken, Policy: "fail", Source: "callback", Reason: o.Reason})
		}
		got, err := f.st.OrphanApply(ctx, tx, ds)
		require.NoError(t, err)
		require.Len(t, got, 2)
		for _, r := range got {
			require.Equal(t, store.ActionFail, r.Action)
			require.Equal(t, store.ReasonOwnerStopped, r.Reason)
		}
		require.NoError(t, tx.Commit())

		list, err := f.st.OrphanList(ctx, f.schema.DB, &q, 10)
		require.NoError(t, err)
		require.Len(t, list, 1)
		require.Equal(t, ids[0], list[0].Episode.ID)
	})
}

// An orphan whose owner is not a known node is one only after StaleAfter
// without activity.
func TestOrphanOfAnUnknownOwnerWaitsForStaleness(t *testing.T) {
	testdb.Each(t, testdb.Drivers, func(t *testing.T, driver string) {
		f := setup(t, driver)
		ctx := context.Background()
		ep := f.insert(t, store.EpisodeInsertParams{ActorID: "a"})
		_, err := f.move(t, store.TransitionParams{Move: store.TransitionClaim, ID: ep.ID, Node: "ghost"})
		require.NoError(t, err)
		q := store.OrphanQuery{StaleAfter: time.Hour, Scope: everywhere}
		list, err := f.st.OrphanList(ctx, f.schema.DB, &q, 10)
		require.NoError(t, err)
		require.Empty(t, list)
		_, err = f.schema.DB.Exec(`UPDATE revenant_episodes SET last_activity_at = `+f.schema.NowPlus(-2*time.Hour)+` WHERE id = $1`, ep.ID)
		require.NoError(t, err)
		list, err = f.st.OrphanList(ctx, f.schema.DB, &q, 10)
		require.NoError(t, err)
		require.Len(t, list, 1)
		require.Equal(t, store.ReasonNoActivity, list[0].Reason)
	})
}

// A node whose advisory lock is gone is dead at once (Postgres), and one
// whose TTL lapsed is dead on every backend.
func TestNodeDeathIsSeen(t *testing.T) {
	testdb.Each(t, testdb.Drivers, func(t *testing.T, driver string) {
		f := setup(t, driver)
		ctx := context.Background()
		require.NoError(t, f.st.NodeRegister(ctx, f.schema.DB, &store.NodeRegisterParams{ID: "expired", Name: "x", TTL: time.Millisecond}))
		want := map[string]string{"expired": store.ReasonOwnerExpired}
		if f.st.Capabilities().AdvisoryLocks {
			require.NoError(t, f.st.NodeRegister(ctx, f.schema.DB, &store.NodeRegisterParams{ID: "unlocked", Name: "u", LockKey: int64(987654321), TTL: time.Hour}))
			want["unlocked"] = store.ReasonOwnerLockGone
		}
		require.NoError(t, f.st.NodeRegister(ctx, f.schema.DB, &store.NodeRegisterParams{ID: "alive", Name: "a", TTL: time.Hour}))
		_, err := f.schema.DB.Exec(`UPDATE revenant_nodes SET expires_at = ` + f.schema.NowPlus(-time.Second) + ` WHERE node_id = 'expired'`)
		require.NoError(t, err)
		dead, err := f.st.NodeMarkDead(ctx, f.schema.DB)
		require.NoError(t, err)
		got := map[string]string{}
		for _, d := range dead {
			got[d.ID] = d.Reason
		}
		require.Equal(t, want, got)

		// Stopped over a day ago and owning nothing: pruned.
		_, err = f.schema.DB.Exec(`UPDATE revenant_nodes SET stopped_at = ` + f.schema.NowPlus(-25*time.Hour) + ` WHERE node_id = 'expired'`)
		require.NoError(t, err)
		n, err := f.st.NodePrune(ctx, f.schema.DB)
		require.NoError(t, err)
		require.Equal(t, int64(1), n)
	})
}

func TestExhaustedAndUnclaimableReports(t *testing.T) {
	testdb.Each(t, testdb.Drivers, func(t *testing.T, driver string) {
		f := setup(t, driver)
		ctx := context.Background()
		ids := f.orphansOf(t, "n1", "a", 2, store.EpisodeInsertParams{})
		_, err := f.schema.DB.Exec(`UPDATE revenant_episodes SET claim_token = $2 WHERE id = $1`, ids[0], int64(math.MaxInt64))
		require.NoError(t, err)
		q := store.OrphanQuery{StaleAfter: time.Minute, Scope: everywhere}
		refs, err := f.st.OrphanExhausted(ctx, f.schema.DB, &q, 10)
		require.NoError(t, err)
		require.Equal(t, []store.EpisodeRef{{ID: ids[0], ActorID: "a"}}, refs)
		refs, err = f.st.EpisodeExhausted(ctx, f.schema.DB, everywhere, 10)
		require.NoError(t, err)
		require.Len(t, refs, 1)
		list, err := f.st.OrphanList(ctx, f.schema.DB, &q, 10)
		require.NoError(t, err)
		require.Len(t, list, 1, "an exhausted orphan is not listed for recovery")

		// Pending work of an actor no live node registered.
		require.NoError(t, f.st.NodeRegister(ctx, f.schema.DB, &store.NodeRegisterParams{ID: "live", Name: "l", Actors: []string{"known"}, TTL: time.Hour}))
		f.insert(t, store.EpisodeInsertParams{ActorID: "known"})
		f.insert(t, store.EpisodeInsertParams{ActorID: "nobody"})
		f.insert(t, store.EpisodeInsertParams{ActorID: "nobody"})
		backlog, err := f.st.EpisodeUnclaimable(ctx, f.schema.DB, everywhere)
		require.NoError(t, err)
		require.Equal(t, []store.ActorBacklog{{ActorID: "nobody", Pending: 2}}, backlog)
	})
}

func TestActorDefinitionsAndConnPrep(t *testing.T) {
	testdb.Each(t, testdb.Drivers, func(t *testing.T, driver string) {
		f := setup(t, driver)
		ctx := context.Background()
		_, err := f.schema.DB.Exec(`INSERT INTO revenant_actor_definitions (actor_id, recovery_policy, expectation_policies, enabled)
VALUES ('a', 'restart', '{"x":"fail"}', true), ('b', NULL, '{}', false)`)
		require.NoError(t, err)
		defs, err := f.st.ActorDefinitions(ctx, f.schema.DB, []string{"a", "b", "c"})
		require.NoError(t, err)
		require.Len(t, defs, 2)
		byID := map[string]store.ActorDefinition{}
		for _, d := range defs {
			byID[d.ActorID] = d
		}
		require.Equal(t, "restart", *byID["a"].RecoveryPolicy)
		require.JSONEq(t, `{"x":"fail"}`, string(byID["a"].ExpectationPolicies))
		require.Nil(t, byID["b"].RecoveryPolicy)
		require.False(t, byID["b"].Enabled)

		conn, err := f.schema.DB.Conn(ctx)
		require.NoError(t, err)
		defer func() { _ = conn.Close() }()
		require.NoError(t, f.st.PrepareConn(ctx, conn, 1500*time.Millisecond))
		if f.st.Capabilities().RowLocks {
			var v string
			require.NoError(t, conn.QueryRowContext(ctx, "SHOW statement_timeout").Scan(&v))
			require.Equal(t, "1500ms", v)
		}
	})
}

// perOwner states each policy for every owner whose orphans the groups
// hold (the sweep resolves per owner).
func perOwner(groups []store.OrphanGroup, policies []store.PairPolicy) []store.PairPolicy {
	seen := map[store.PairPolicy]bool{}
	var out []store.PairPolicy
	for _, g := range groups {
		for _, p := range policies {
			if p.ActorID == g.ActorID && p.Expectation == g.Expectation {
				p.Owner = g.Owner
				if !seen[p] {
					seen[p] = true
					out = append(out, p)
				}
			}
		}
	}
	return out
}
