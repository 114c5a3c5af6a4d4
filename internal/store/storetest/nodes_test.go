package storetest

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/lib/pq"
	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant/internal/store"
	"github.com/revenant-go/revenant/internal/testdb"
)

func TestNodeRegisterHeartbeatAndStop(t *testing.T) {
	testdb.Each(t, testdb.Drivers, func(t *testing.T, driver string) {
		f := setup(t, driver)
		ctx := context.Background()
		require.NoError(t, f.st.NodeRegister(ctx, f.schema.DB, &store.NodeRegisterParams{ID: "n1-abc", Name: "n1",
			Stack: "web", Env: "prod", Actors: []string{"a", "b"}, TTL: 10 * time.Second}))
		var name string
		var live bool
		require.NoError(t, f.schema.DB.QueryRow(`SELECT name, expires_at > `+f.schema.NowPlus(9*time.Second)+` FROM revenant_nodes WHERE node_id = $1`, "n1-abc").Scan(&name, &live))
		require.Equal(t, "n1", name)
		require.True(t, live, "expiry is the database clock plus the TTL")

		// Three runs: one still held, one canceled under the token, one
		// claimed by someone else; and one the node owns but does not track.
		held := f.insert(t, store.EpisodeInsertParams{ActorID: "a"})
		canceled := f.insert(t, store.EpisodeInsertParams{ActorID: "a"})
		stolen := f.insert(t, store.EpisodeInsertParams{ActorID: "a"})
		untracked := f.insert(t, store.EpisodeInsertParams{ActorID: "a"})
		rows := f.claimMany(t, store.ClaimManyParams{Node: "n1-abc", ActorID: "a", Limit: 4, Scope: store.Scope{AllStacks: true, AllEnvs: true}})
		require.Len(t, rows, 4)
		_, err := f.move(t, store.TransitionParams{Move: store.TransitionCancel, ID: canceled.ID})
		require.NoError(t, err)
		_, err = f.move(t, store.TransitionParams{Move: store.TransitionRelease, ID: stolen.ID, ClaimToken: 1})
		require.NoError(t, err)
		_, err = f.move(t, store.TransitionParams{Move: store.TransitionClaim, ID: stolen.ID, Node: "n2"})
		require.NoError(t, err)
		_, err = f.schema.DB.Exec(`UPDATE revenant_episodes SET started_at = `+f.schema.NowPlus(-time.Minute)+` WHERE id = $1`, untracked.ID)
		require.NoError(t, err)

		hb, err := f.st.NodeHeartbeat(ctx, f.schema.DB, &store.NodeHeartbeatParams{NodeID: "n1-abc", TTL: 10 * time.Second,
			Runs:           []store.RunLease{{ID: held.ID, Token: 1}, {ID: canceled.ID, Token: 1}, {ID: stolen.ID, Token: 1}},
			UntrackedAfter: 2 * time.Second})
		require.NoError(t, err)
		require.True(t, hb.Alive)
		kinds := map[string]string{}
		for _, l := range hb.Leases {
			kinds[l.ID.String()] = l.Kind
		}
		require.Equal(t, map[string]string{canceled.ID.String(): store.LeaseCanceled, stolen.ID.String(): store.LeaseLost,
			untracked.ID.String(): store.LeaseUntracked}, kinds)

		require.NoError(t, f.st.NodeStop(ctx, f.schema.DB, "n1-abc"))
		hb, err = f.st.NodeHeartbeat(ctx, f.schema.DB, &store.NodeHeartbeatParams{NodeID: "n1-abc", TTL: time.Second})
		require.NoError(t, err)
		require.False(t, hb.Alive, "a stopped node must re-register")
	})
}

func TestNodeAdvisoryLockIsExclusive(t *testing.T) {
	testdb.Each(t, []string{"postgres", "pgx"}, func(t *testing.T, driver string) {
		f := setup(t, driver)
		ctx := context.Background()
		c1, err := f.schema.DB.Conn(ctx)
		require.NoError(t, err)
		defer func() { _ = c1.Close() }()
		c2, err := f.schema.DB.Conn(ctx)
		require.NoError(t, err)
		defer func() { _ = c2.Close() }()
		// Advisory locks belong to the database, not the schema: a fixed
		// key would be shared with the other driver's subtest and with any
		// other test process on the same database.
		key := rand.Int64()
		ok, err := f.st.NodeLock(ctx, c1, key)
		require.NoError(t, err)
		require.True(t, ok)
		ok, err = f.st.NodeLock(ctx, c2, key)
		require.NoError(t, err)
		require.False(t, ok, "another session cannot take a held lock")
		require.NoError(t, f.st.NodeUnlock(ctx, c1, key))
		ok, err = f.st.NodeLock(ctx, c2, key)
		require.NoError(t, err)
		require.True(t, ok)
		require.NoError(t, f.st.NodeUnlock(ctx, c2, key))
	})
}

func TestNotifyIsSentOnCommit(t *testing.T) {
	t.Parallel()
	f := setup(t, "postgres")
	l := pq.NewListener(f.schema.DSN, time.Second, time.Second, nil)
	defer func() { _ = l.Close() }()
	const channel = "revenant_store_test"
	require.NoError(t, l.Listen(channel))
	ctx := context.Background()
	tx, err := f.schema.DB.BeginTxx(ctx, nil)
	require.NoError(t, err)
	require.NoError(t, f.st.Notify(ctx, tx, channel, "hello"))
	select {
	case n := <-l.Notify:
		t.Fatalf("notification before commit: %+v", n)
	default:
	}
	require.NoError(t, tx.Commit())
	select {
	case n := <-l.Notify:
		require.Equal(t, "hello", n.Extra)
	case <-time.After(30 * time.Second):
		t.Fatal("no notification within 30 s of commit")
	}
}

func TestSQLiteHasNoLocksAndNotifyIsANoOp(t *testing.T) {
	t.Parallel()
	f := setup(t, testdb.SQLite)
	ctx := context.Background()
	_, err := f.st.NodeLock(ctx, f.schema.DB, 1)
	require.Error(t, err)
	require.NoError(t, f.st.Notify(ctx, f.schema.DB, "ch", "x"))
}
