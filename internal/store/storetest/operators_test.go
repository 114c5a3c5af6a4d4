package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant/internal/store"
	"github.com/revenant-go/revenant/internal/testdb"
)

// A node declared dead reads as a sweep's dead node: stopped, with the
// rule as its reason, its running episodes orphans; its readiness says so;
// declaring it again changes nothing.
func TestNodeDeclareDeadAndReadiness(t *testing.T) {
	testdb.Each(t, testdb.Drivers, func(t *testing.T, driver string) {
		f := setup(t, driver)
		ctx := context.Background()
		db := f.schema.DB
		require.NoError(t, f.st.NodeRegister(ctx, db, &store.NodeRegisterParams{ID: "n-1", Name: "n", TTL: time.Minute}))

		r, err := f.st.NodeReadiness(ctx, db, "n-1")
		require.NoError(t, err)
		require.True(t, r.Found)
		require.False(t, r.Stopped)
		require.False(t, r.Expired)

		ok, err := f.st.NodeDeclareDead(ctx, db, "n-1", "owner_ttl_expired")
		require.NoError(t, err)
		require.True(t, ok)
		ok, err = f.st.NodeDeclareDead(ctx, db, "n-1", "owner_ttl_expired")
		require.NoError(t, err)
		require.False(t, ok, "already stopped")
		ok, err = f.st.NodeDeclareDead(ctx, db, "nobody", "owner_ttl_expired")
		require.NoError(t, err)
		require.False(t, ok)

		r, err = f.st.NodeReadiness(ctx, db, "n-1")
		require.NoError(t, err)
		require.True(t, r.Stopped)
		require.Equal(t, "owner_ttl_expired", r.StopReason)
		r, err = f.st.NodeReadiness(ctx, db, "nobody")
		require.NoError(t, err)
		require.False(t, r.Found)

		require.NoError(t, f.st.NodeRecordSweep(ctx, db, "n-1", []byte(`{"took_ms":3,"restarted":1}`)))
		nodes, err := f.st.NodeList(ctx, db)
		require.NoError(t, err)
		require.Len(t, nodes, 1)
		require.Equal(t, "owner_ttl_expired", nodes[0].StopReason)
		require.NotNil(t, nodes[0].LastSweepAt)
		require.JSONEq(t, `{"took_ms":3,"restarted":1}`, string(nodes[0].LastSweep))
	})
}
