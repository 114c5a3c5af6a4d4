package actors_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant/actors"
	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/internal/store"
	"github.com/revenant-go/revenant/internal/store/backend"
	"github.com/revenant-go/revenant/internal/testdb"
	"github.com/revenant-go/revenant/recovery"
)

func TestMain(m *testing.M) { testdb.Main(m) }

func setup(t *testing.T, driver string) (*testdb.Schema, *actors.Store) {
	t.Helper()
	s := testdb.New(t, &testdb.Options{Driver: driver})
	defs, err := actors.New(s.DB, nil)
	require.NoError(t, err)
	return s, defs
}

func TestDefineGetRoundTripAndUpsert(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		_, defs := setup(t, driver)
		ctx := context.Background()
		want := actors.Definition{ID: "importer", Recovery: recovery.Restart,
			ExpectationRecovery: map[string]recovery.Policy{"charge-card": recovery.Fail, "resumable": recovery.Restart}}
		require.NoError(t, defs.Define(ctx, want))
		got, err := defs.Get(ctx, "importer")
		require.NoError(t, err)
		require.WithinDuration(t, time.Now(), got.UpdatedAt, 5*time.Minute, "set by the database clock")
		first := got.UpdatedAt
		got.UpdatedAt = time.Time{}
		require.Equal(t, want, *got)

		// Define replaces every field, including Disabled.
		want = actors.Definition{ID: "importer", ExpectationRecovery: map[string]recovery.Policy{"other": recovery.Fail}, Disabled: true}
		require.NoError(t, defs.Define(ctx, want))
		got, err = defs.Get(ctx, "importer")
		require.NoError(t, err)
		require.False(t, got.UpdatedAt.Before(first), "updated_at moves forward on upsert")
		got.UpdatedAt = time.Time{}
		require.Equal(t, want, *got)

		// Recovery alone; no expectations read back as a nil map.
		require.NoError(t, defs.Define(ctx, actors.Definition{ID: "importer", Recovery: recovery.Fail}))
		got, err = defs.Get(ctx, "importer")
		require.NoError(t, err)
		require.Equal(t, recovery.Fail, got.Recovery)
		require.Nil(t, got.ExpectationRecovery)
		require.False(t, got.Disabled)
	})
}

func TestListDisableEnableDelete(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		_, defs := setup(t, driver)
		ctx := context.Background()
		list, err := defs.List(ctx)
		require.NoError(t, err)
		require.Empty(t, list)
		for _, id := range []string{"zeta", "alpha", "mid"} {
			require.NoError(t, defs.Define(ctx, actors.Definition{ID: id, Recovery: recovery.Restart}))
		}
		list, err = defs.List(ctx)
		require.NoError(t, err)
		require.Equal(t, []string{"alpha", "mid", "zeta"}, ids(list))

		require.NoError(t, defs.Disable(ctx, "mid"))
		got, err := defs.Get(ctx, "mid")
		require.NoError(t, err)
		require.True(t, got.Disabled)
		require.Equal(t, recovery.Restart, got.Recovery, "disabling keeps the policy")
		require.NoError(t, defs.Disable(ctx, "mid"), "disabling twice is fine")
		list, err = defs.List(ctx)
		require.NoError(t, err)
		require.Len(t, list, 3, "List includes disabled definitions")
		require.True(t, list[1].Disabled)

		require.NoError(t, defs.Enable(ctx, "mid"))
		got, err = defs.Get(ctx, "mid")
		require.NoError(t, err)
		require.False(t, got.Disabled)

		require.NoError(t, defs.Delete(ctx, "mid"))
		_, err = defs.Get(ctx, "mid")
		require.ErrorIs(t, err, actors.ErrNotFound)
		list, err = defs.List(ctx)
		require.NoError(t, err)
		require.Equal(t, []string{"alpha", "zeta"}, ids(list))
	})
}

func TestNotFound(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		_, defs := setup(t, driver)
		ctx := context.Background()
		_, err := defs.Get(ctx, "ghost")
		require.ErrorIs(t, err, actors.ErrNotFound)
		require.ErrorContains(t, err, `"ghost"`)
		for name, op := range map[string]func(context.Context, string) error{
			"Disable": defs.Disable, "Enable": defs.Enable, "Delete": defs.Delete,
		} {
			err := op(ctx, "ghost")
			require.ErrorIs(t, err, actors.ErrNotFound, name)
			require.ErrorContains(t, err, `"ghost"`, name)
		}
	})
}

func TestValidation(t *testing.T) {
	t.Parallel()
	_, err := actors.New(nil, nil)
	require.ErrorIs(t, err, actors.ErrInvalidInput)
	require.ErrorContains(t, err, "pass the *sqlx.DB your application opened")

	_, defs := setup(t, testdb.SQLite)
	ctx := context.Background()
	long := strings.Repeat("x", 257)
	for _, tc := range []struct {
		name string
		def  actors.Definition
		hint string
	}{
		{"no id", actors.Definition{Recovery: recovery.Restart}, "Definition.ID is required; set it to the actor's id"},
		{"long id", actors.Definition{ID: long, Recovery: recovery.Restart}, "at most 256 are allowed"},
		{"NUL in id", actors.Definition{ID: "a\x00b", Recovery: recovery.Restart}, "contains a NUL byte"},
		{"bad recovery", actors.Definition{ID: "a", Recovery: "reboot"}, `is "reboot"; use recovery.Restart, recovery.Fail, or "" to state none`},
		{"skip", actors.Definition{ID: "a", Recovery: recovery.Skip}, "recovery.Skip is only a recovery.Options.DefaultPolicy"},
		{"empty expectation", actors.Definition{ID: "a", ExpectationRecovery: map[string]recovery.Policy{"": recovery.Fail}},
			"key each entry by an expectation name"},
		{"long expectation", actors.Definition{ID: "a", ExpectationRecovery: map[string]recovery.Policy{long: recovery.Fail}},
			"at most 256 are allowed"},
		{"bad expectation policy", actors.Definition{ID: "a", Recovery: recovery.Restart, ExpectationRecovery: map[string]recovery.Policy{"x": "later"}},
			"use recovery.Restart or recovery.Fail, or remove the entry to fall back to Definition.Recovery"},
		{"empty expectation policy", actors.Definition{ID: "a", ExpectationRecovery: map[string]recovery.Policy{"x": ""}},
			"use recovery.Restart or recovery.Fail, or remove the entry"},
		{"no policy", actors.Definition{ID: "a"}, "states no policy; set Recovery or ExpectationRecovery, or Delete the definition"},
		{"empty expectations", actors.Definition{ID: "a", ExpectationRecovery: map[string]recovery.Policy{}}, "states no policy"},
	} {
		err := defs.Define(ctx, tc.def)
		require.ErrorIs(t, err, actors.ErrInvalidInput, tc.name)
		require.ErrorContains(t, err, tc.hint, tc.name)
	}
	list, err := defs.List(ctx)
	require.NoError(t, err)
	require.Empty(t, list, "nothing refused was written")

	for name, op := range map[string]func(context.Context, string) error{
		"Disable": defs.Disable, "Enable": defs.Enable, "Delete": defs.Delete,
		"Get": func(ctx context.Context, id string) error { _, err := defs.Get(ctx, id); return err },
	} {
		err := op(ctx, "")
		require.ErrorIs(t, err, actors.ErrInvalidInput, name)
		require.ErrorContains(t, err, "is required; set it to the actor's id", name)
	}
	err = defs.DefineTx(ctx, nil, actors.Definition{ID: "a", Recovery: recovery.Fail})
	require.ErrorIs(t, err, actors.ErrInvalidInput)
	require.ErrorContains(t, err, "tx is nil; pass the *sql.Tx or *sqlx.Tx")
}

// Hand-edited rows come back as errors naming the actor, never guessed at;
// List still returns the readable ones.
func TestCorruptRows(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		s, defs := setup(t, driver)
		ctx := context.Background()
		for _, id := range []string{"good", "bad-policy", "bad-shape", "bad-value", "bad-exp-policy"} {
			require.NoError(t, defs.Define(ctx, actors.Definition{ID: id, Recovery: recovery.Restart}))
		}
		for _, q := range []string{
			`UPDATE revenant_actor_definitions SET recovery_policy = 'reboot' WHERE actor_id = 'bad-policy'`,
			`UPDATE revenant_actor_definitions SET expectation_policies = '["fail"]' WHERE actor_id = 'bad-shape'`,
			`UPDATE revenant_actor_definitions SET expectation_policies = '{"x": 42}' WHERE actor_id = 'bad-value'`,
			`UPDATE revenant_actor_definitions SET expectation_policies = '{"x": "explode"}' WHERE actor_id = 'bad-exp-policy'`,
		} {
			_, err := s.DB.ExecContext(ctx, q)
			require.NoError(t, err)
		}
		bad := map[string]string{"bad-policy": `"reboot"`, "bad-shape": "not a JSON object", "bad-value": "not a string", "bad-exp-policy": `"explode"`}
		for id, detail := range bad {
			got, err := defs.Get(ctx, id)
			require.Nil(t, got, id)
			require.ErrorIs(t, err, actors.ErrCorruptRow, id)
			require.ErrorIs(t, err, recovery.ErrBadPolicy, id)
			require.ErrorContains(t, err, `actor "`+id+`"`)
			require.ErrorContains(t, err, detail, id)
			require.ErrorContains(t, err, "rewrite it with actors.Store.Define or remove it with Delete", id)
		}

		list, err := defs.List(ctx)
		require.ErrorIs(t, err, actors.ErrCorruptRow)
		require.Equal(t, []string{"good"}, ids(list), "readable rows still come back")
		for id := range bad {
			require.ErrorContains(t, err, `actor "`+id+`"`)
		}

		// Define repairs a row; Delete removes one.
		require.NoError(t, defs.Define(ctx, actors.Definition{ID: "bad-policy", Recovery: recovery.Fail}))
		for _, id := range []string{"bad-shape", "bad-value", "bad-exp-policy"} {
			require.NoError(t, defs.Delete(ctx, id))
		}
		list, err = defs.List(ctx)
		require.NoError(t, err)
		require.Equal(t, []string{"bad-policy", "good"}, ids(list))
	})
}

func TestTxVariantsRollBack(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		s, defs := setup(t, driver)
		ctx := context.Background()
		require.NoError(t, defs.Define(ctx, actors.Definition{ID: "kept", Recovery: recovery.Fail}))

		tx, err := s.DB.BeginTxx(ctx, nil)
		require.NoError(t, err)
		require.NoError(t, defs.DefineTx(ctx, tx, actors.Definition{ID: "dyn", Recovery: recovery.Restart}))
		got, err := defs.GetTx(ctx, tx, "dyn")
		require.NoError(t, err, "visible inside the transaction")
		require.Equal(t, recovery.Restart, got.Recovery)
		require.NoError(t, defs.DisableTx(ctx, tx, "kept"))
		require.NoError(t, defs.DeleteTx(ctx, tx, "kept"))
		require.NoError(t, tx.Rollback())

		_, err = defs.Get(ctx, "dyn")
		require.ErrorIs(t, err, actors.ErrNotFound, "a rolled-back DefineTx leaves nothing")
		list, err := defs.List(ctx)
		require.NoError(t, err)
		require.Len(t, list, 1)
		require.Equal(t, "kept", list[0].ID)
		require.False(t, list[0].Disabled)

		tx, err = s.DB.BeginTxx(ctx, nil)
		require.NoError(t, err)
		require.NoError(t, defs.DefineTx(ctx, tx, actors.Definition{ID: "dyn", Recovery: recovery.Restart}))
		require.NoError(t, defs.EnableTx(ctx, tx, "dyn"))
		list, err = defs.ListTx(ctx, tx)
		require.NoError(t, err)
		require.Equal(t, []string{"dyn", "kept"}, ids(list))
		require.NoError(t, tx.Commit())
		_, err = defs.Get(ctx, "dyn")
		require.NoError(t, err, "a committed DefineTx stays")
	})
}

// noPolicy registers every actor without a policy, as a runner does for
// runner.Actor{Recovery: ""}.
type noPolicy struct{}

func (noPolicy) RecoveryPolicy(string, string) (recovery.Policy, bool) { return "", false }

// A sweep recovers orphans of an actor it does not know by the actor's
// definition; an actor registered without a policy does not mask it.
func TestSweepHonoursDefinition(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		s, defs := setup(t, driver)
		ctx := context.Background()
		eps, err := episodes.New(s.DB, nil)
		require.NoError(t, err)

		// An episode of "dyn" claimed by a node that then stopped: an orphan
		// whose owner registered "dyn" without publishing a policy.
		st := backend.For(s.DB)
		require.NoError(t, st.NodeRegister(ctx, s.DB, &store.NodeRegisterParams{ID: "dead", Name: "dead", Actors: []string{"dyn"}, TTL: time.Minute}))
		res, err := eps.Create(ctx, episodes.CreateParams{ActorID: "dyn"})
		require.NoError(t, err)
		ep, err := eps.Claim(ctx, res.Episode.ID, "dead")
		require.NoError(t, err)
		require.NoError(t, st.NodeStop(ctx, s.DB, "dead"))

		plan := func() recovery.Plan {
			t.Helper()
			dry, err := recovery.Sweep(ctx, s.DB, &recovery.Options{AllStacks: true, AllEnvs: true, DryRun: true, Registry: noPolicy{}})
			require.NoError(t, err)
			require.Len(t, dry.Plans, 1)
			require.Equal(t, ep.ID, dry.Plans[0].EpisodeID)
			return dry.Plans[0]
		}
		require.Equal(t, recovery.SourceDefault, plan().PolicySource, "no definition yet")

		require.NoError(t, defs.Define(ctx, actors.Definition{ID: "dyn", Recovery: recovery.Restart, Disabled: true}))
		p := plan()
		require.Equal(t, recovery.SourceDefault, p.PolicySource, "a disabled definition is ignored")
		require.Equal(t, recovery.ActionFail, p.Action)

		require.NoError(t, defs.Enable(ctx, "dyn"))
		p = plan()
		require.Equal(t, recovery.SourceDefinitions, p.PolicySource)
		require.Equal(t, recovery.Restart, p.Policy)
		require.Equal(t, recovery.ActionRestart, p.Action)

		out, err := recovery.Sweep(ctx, s.DB, &recovery.Options{AllStacks: true, AllEnvs: true})
		require.NoError(t, err)
		require.Equal(t, 1, out.Restarted)
		require.Zero(t, out.Failed)
		require.Empty(t, out.Errors)
		got, err := eps.Get(ctx, ep.ID)
		require.NoError(t, err)
		require.Equal(t, episodes.StatusPending, got.Status)
	})
}

func ids(defs []actors.Definition) []string {
	out := make([]string, len(defs))
	for i, d := range defs {
		out[i] = d.ID
	}
	return out
}
