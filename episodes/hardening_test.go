package episodes_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"math"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant"
	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/internal/testdb"
)

// A dedupe key names one episode per actor, stack and env: another scope's
// episode with the same key is never handed back.
func TestDedupeKeysAreScopedPerActorStackAndEnv(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		s := testdb.New(t, &testdb.Options{Driver: driver})
		ctx := context.Background()
		prod, err := episodes.New(s.DB, &episodes.Config{Stack: "shop", Env: "prod"})
		require.NoError(t, err)
		staging, err := episodes.New(s.DB, &episodes.Config{Stack: "shop", Env: "staging"})
		require.NoError(t, err)

		charge, err := prod.Create(ctx, episodes.CreateParams{ActorID: "charge-card", DedupeKey: "order-42", Input: map[string]string{"card": "4242"}})
		require.NoError(t, err)
		require.False(t, charge.Duplicate)

		// Another actor, same scope and key: its own episode.
		mail, err := prod.Create(ctx, episodes.CreateParams{ActorID: "send-email", DedupeKey: "order-42"})
		require.NoError(t, err)
		require.False(t, mail.Duplicate)
		require.NotEqual(t, charge.Episode.ID, mail.Episode.ID)

		// Same actor and key in another env: its own episode, never prod's.
		stg, err := staging.Create(ctx, episodes.CreateParams{ActorID: "charge-card", DedupeKey: "order-42"})
		require.NoError(t, err)
		require.False(t, stg.Duplicate)
		require.NotEqual(t, charge.Episode.ID, stg.Episode.ID)
		require.Nil(t, stg.Episode.Input)

		// Another stack, and no stack at all: their own episodes too.
		other, err := prod.Create(ctx, episodes.CreateParams{ActorID: "charge-card", DedupeKey: "order-42", SourceStack: "blog"})
		require.NoError(t, err)
		require.False(t, other.Duplicate)
		bare, err := episodes.New(s.DB, nil)
		require.NoError(t, err)
		none, err := bare.Create(ctx, episodes.CreateParams{ActorID: "charge-card", DedupeKey: "order-42"})
		require.NoError(t, err)
		require.False(t, none.Duplicate)

		// Within one scope the key still dedupes.
		again, err := staging.Create(ctx, episodes.CreateParams{ActorID: "charge-card", DedupeKey: "order-42", Input: 1})
		require.NoError(t, err)
		require.True(t, again.Duplicate)
		require.Equal(t, stg.Episode.ID, again.Episode.ID)
		again, err = bare.Create(ctx, episodes.CreateParams{ActorID: "charge-card", DedupeKey: "order-42"})
		require.NoError(t, err)
		require.True(t, again.Duplicate)
		require.Equal(t, none.Episode.ID, again.Episode.ID)
	})
}

// Bad input is refused in Go, with the same sentinel on every backend,
// before anything is written.
func TestValidationIsTheSameOnEveryBackend(t *testing.T) {
	testdb.Each(t, testdb.Drivers, func(t *testing.T, driver string) {
		b := setup(t, driver)
		ctx := context.Background()
		deep := strings.Repeat("[", 10_000) + strings.Repeat("]", 10_000)
		cases := map[string]struct {
			p    episodes.CreateParams
			want error
		}{
			"NUL in actor":           {episodes.CreateParams{ActorID: "a\x00b"}, revenant.ErrInvalidInput},
			"invalid UTF-8 actor":    {episodes.CreateParams{ActorID: "a\xffb"}, revenant.ErrInvalidInput},
			"long actor":             {episodes.CreateParams{ActorID: strings.Repeat("a", revenant.MaxNameBytes+1)}, revenant.ErrInvalidInput},
			"1 MB dedupe key":        {episodes.CreateParams{ActorID: "a", DedupeKey: strings.Repeat("k", 1<<20)}, revenant.ErrInvalidInput},
			"NUL in expectation":     {episodes.CreateParams{ActorID: "a", Expectation: "x\x00"}, revenant.ErrInvalidInput},
			"NUL in stack":           {episodes.CreateParams{ActorID: "a", SourceStack: "x\x00"}, revenant.ErrInvalidInput},
			"max attempts MaxInt":    {episodes.CreateParams{ActorID: "a", MaxAttempts: math.MaxInt}, revenant.ErrInvalidInput},
			"max attempts MaxInt32":  {episodes.CreateParams{ActorID: "a", MaxAttempts: math.MaxInt32}, revenant.ErrInvalidInput},
			"invalid UTF-8 JSON":     {episodes.CreateParams{ActorID: "a", Input: json.RawMessage("\"\xff\"")}, revenant.ErrNotJSON},
			"NUL escape in JSON":     {episodes.CreateParams{ActorID: "a", Input: map[string]string{"k": "a\x00b"}}, revenant.ErrNotJSON},
			"10k-deep JSON":          {episodes.CreateParams{ActorID: "a", Input: json.RawMessage(deep)}, revenant.ErrNotJSON},
			"metadata not an object": {episodes.CreateParams{ActorID: "a", Metadata: []int{1}}, revenant.ErrInvalidInput},
			"metadata a string":      {episodes.CreateParams{ActorID: "a", Metadata: json.RawMessage(` "x"`)}, revenant.ErrInvalidInput},
		}
		for name, c := range cases {
			_, err := b.store.Create(ctx, c.p)
			require.ErrorIs(t, err, c.want, name)
			require.NotContains(t, err.Error(), "SQLSTATE", name)
		}
		var n int
		require.NoError(t, b.schema.DB.Get(&n, `SELECT count(*) FROM revenant_episodes`))
		require.Zero(t, n, "nothing was written")

		// The limits themselves are accepted.
		ok := create(t, b.store, episodes.CreateParams{ActorID: strings.Repeat("a", revenant.MaxNameBytes),
			DedupeKey: strings.Repeat("k", revenant.MaxKeyBytes), MaxAttempts: revenant.MaxMaxAttempts,
			Input:    json.RawMessage(strings.Repeat("[", revenant.MaxJSONDepth) + strings.Repeat("]", revenant.MaxJSONDepth)),
			Metadata: map[string]string{"escaped": `\u0000 is only text here`}})
		require.Equal(t, revenant.MaxMaxAttempts, ok.MaxAttempts)

		// Transitions check their text too.
		c, err := b.store.Claim(ctx, ok.ID, "node")
		require.NoError(t, err)
		_, err = b.store.SetPhase(ctx, ok.ID, c.ClaimToken, "p\x00")
		require.ErrorIs(t, err, revenant.ErrInvalidInput)
		_, err = b.store.Fail(ctx, ok.ID, c.ClaimToken, "bad\xff", nil)
		require.ErrorIs(t, err, revenant.ErrInvalidInput)
		_, err = b.store.Cancel(ctx, ok.ID, "why\x00")
		require.ErrorIs(t, err, revenant.ErrInvalidInput)
		require.Equal(t, episodes.StatusRunning, get(t, b.store, ok.ID).Status)
	})
}

func get(t *testing.T, st *episodes.Store, id uuid.UUID) *episodes.Episode {
	t.Helper()
	ep, err := st.Get(context.Background(), id)
	require.NoError(t, err)
	return ep
}

// A nil transaction is an error, not a panic, whatever its static type.
func TestNilTxIsInvalidInput(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		b := setup(t, driver)
		ctx := context.Background()
		id := uuid.New()
		for name, tx := range map[string]revenant.Executor{
			"untyped nil": nil, "(*sql.Tx)(nil)": (*sql.Tx)(nil), "(*sqlx.Tx)(nil)": (*sqlx.Tx)(nil),
		} {
			calls := map[string]func() error{
				"CreateTx":   func() error { _, err := b.store.CreateTx(ctx, tx, episodes.CreateParams{ActorID: "a"}); return err },
				"GetTx":      func() error { _, err := b.store.GetTx(ctx, tx, id); return err },
				"ListTx":     func() error { _, err := b.store.ListTx(ctx, tx, episodes.ListParams{}); return err },
				"ClaimTx":    func() error { _, err := b.store.ClaimTx(ctx, tx, id, "n"); return err },
				"CompleteTx": func() error { _, err := b.store.CompleteTx(ctx, tx, id, 1, nil); return err },
				"FailTx":     func() error { _, err := b.store.FailTx(ctx, tx, id, 1, "x", nil); return err },
				"BlockTx":    func() error { _, err := b.store.BlockTx(ctx, tx, id, 1, ""); return err },
				"ReleaseTx":  func() error { _, err := b.store.ReleaseTx(ctx, tx, id, 1); return err },
				"SetPhaseTx": func() error { _, err := b.store.SetPhaseTx(ctx, tx, id, 1, ""); return err },
				"ResumeTx":   func() error { _, err := b.store.ResumeTx(ctx, tx, id); return err },
				"CancelTx":   func() error { _, err := b.store.CancelTx(ctx, tx, id, ""); return err },
				"ArchiveTx":  func() error { _, err := b.store.ArchiveTx(ctx, tx, id); return err },
			}
			for call, fn := range calls {
				require.NotPanics(t, func() { require.ErrorIs(t, fn(), revenant.ErrInvalidInput, "%s with %s", call, name) })
			}
		}
	})
}

// An unmigrated database says what to do.
func TestUnmigratedDatabaseSaysToMigrate(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		s := testdb.New(t, &testdb.Options{Driver: driver, NoMigrate: true})
		st, err := episodes.New(s.DB, nil)
		require.NoError(t, err)
		ctx := context.Background()
		_, err = st.Create(ctx, episodes.CreateParams{ActorID: "a"})
		require.ErrorIs(t, err, revenant.ErrNotMigrated)
		require.Contains(t, err.Error(), "migrations.Migrate")
		_, err = st.Get(ctx, uuid.New())
		require.ErrorIs(t, err, revenant.ErrNotMigrated)
		_, err = st.List(ctx, episodes.ListParams{})
		require.ErrorIs(t, err, revenant.ErrNotMigrated)
		_, err = st.Cancel(ctx, uuid.New(), "")
		require.ErrorIs(t, err, revenant.ErrNotMigrated)
	})
}

// A row that cannot be read is skipped and reported by id; the rest of the
// page, and the paging, go on.
func TestListSkipsUnreadableRows(t *testing.T) {
	testdb.Each(t, testdb.Drivers, func(t *testing.T, driver string) {
		b := setup(t, driver)
		ctx := context.Background()
		var ids []uuid.UUID
		for range 5 {
			ids = append(ids, create(t, b.store, episodes.CreateParams{}).ID)
		}
		bad := ids[1]
		corrupt := `UPDATE revenant_episodes SET cancel_requested_at = 'infinity' WHERE id = $1`
		if b.schema.IsSQLite() {
			corrupt = `UPDATE revenant_episodes SET attempts = 'many' WHERE id = $1`
		}
		_, err := b.schema.DB.Exec(corrupt, bad)
		require.NoError(t, err)

		_, err = b.store.Get(ctx, bad)
		require.ErrorIs(t, err, episodes.ErrCorruptRow)

		var seen []uuid.UUID
		var skipped []episodes.RowError
		p := episodes.ListParams{Limit: 2}
		for {
			page, err := b.store.List(ctx, p)
			require.NoError(t, err)
			for _, ep := range page.Episodes {
				seen = append(seen, ep.ID)
			}
			skipped = append(skipped, page.Skipped...)
			if page.Next == uuid.Nil {
				break
			}
			p.After = page.Next
		}
		require.Equal(t, []uuid.UUID{ids[0], ids[2], ids[3], ids[4]}, seen)
		require.Len(t, skipped, 1)
		require.Equal(t, bad, skipped[0].ID)
		require.ErrorIs(t, skipped[0].Err, episodes.ErrCorruptRow)
	})
}
