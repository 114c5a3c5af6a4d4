package main

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant/internal/store"
	"github.com/revenant-go/revenant/internal/testdb"
)

// actors define, list (with the live nodes that registered them) and
// disable.
func TestActors(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		f := newFixture(t, driver)
		f.node("web-1", time.Minute, []string{"mailer"}, map[string]store.ActorPolicy{"mailer": {Recovery: "restart"}})

		r := cli(t, f.dsn(), "actors", "define", "importer", "--recovery", "restart", "--expectation", "bulk=fail")
		requireExit(t, exitDeclined, r)

		var def actorJSON
		requireExit(t, 0, cliJSON(t, f.dsn(), &def, "actors", "define", "importer", "--recovery", "restart", "--expectation", "bulk=fail", "--yes"))
		require.Equal(t, "importer", def.ID)
		require.Equal(t, "restart", def.Definition.Recovery)
		require.Equal(t, map[string]string{"bulk": "fail"}, def.Definition.Expectations)
		require.False(t, def.Definition.Disabled)

		var list struct {
			Actors []actorJSON `json:"actors"`
		}
		requireExit(t, 0, cliJSON(t, f.dsn(), &list, "actors", "list"))
		require.Len(t, list.Actors, 2)
		require.Equal(t, "importer", list.Actors[0].ID)
		require.NotNil(t, list.Actors[0].Definition)
		require.Equal(t, "mailer", list.Actors[1].ID)
		require.Nil(t, list.Actors[1].Definition)
		require.Equal(t, []string{"web-1"}, list.Actors[1].LiveNodes)
		require.Equal(t, "restart", list.Actors[1].Published["web-1"].Recovery)

		text := cli(t, f.dsn(), "actors", "list")
		requireExit(t, 0, text)
		require.Regexp(t, `importer\s+restart\s+bulk=fail\s+true`, text.stdout)

		requireExit(t, exitDeclined, cli(t, f.dsn(), "actors", "disable", "importer"))
		text = cli(t, f.dsn(), "actors", "disable", "importer", "--yes")
		requireExit(t, 0, text)
		require.Contains(t, text.stdout, "disabled actor importer")
		list.Actors = nil
		requireExit(t, 0, cliJSON(t, f.dsn(), &list, "actors", "list"))
		require.True(t, list.Actors[0].Definition.Disabled)
		requireExit(t, 0, cli(t, f.dsn(), "actors", "enable", "importer", "--yes"))

		r = cli(t, f.dsn(), "actors", "disable", "nobody", "--yes")
		requireExit(t, exitNotFound, r)
		require.Contains(t, r.stderr, `actor "nobody"`)
	})
}
