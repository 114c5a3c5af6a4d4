package main

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant/internal/testdb"
)

// breakers list, open (which status then reports) and close.
func TestBreakers(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		f := newFixture(t, driver)
		r := cli(t, f.dsn(), "breakers", "list")
		requireExit(t, 0, r)
		require.Contains(t, r.stdout, "every breaker is closed")

		requireExit(t, exitDeclined, cli(t, f.dsn(), "breakers", "open", "mailer"))
		var set struct {
			Breaker breakerJSON `json:"breaker"`
		}
		requireExit(t, 0, cliJSON(t, f.dsn(), &set, "breakers", "open", "mailer", "--reason", "smtp maintenance", "--stack", "shop", "--env", "prod", "--yes"))
		require.Equal(t, "open", set.Breaker.State)
		require.True(t, set.Breaker.Manual)
		require.Equal(t, "shop", set.Breaker.Stack)

		var list struct {
			Breakers []breakerJSON `json:"breakers"`
		}
		requireExit(t, 0, cliJSON(t, f.dsn(), &list, "breakers", "list"))
		require.Len(t, list.Breakers, 1)
		require.Equal(t, "smtp maintenance", list.Breakers[0].Reason)
		text := cli(t, f.dsn(), "breakers", "list")
		requireExit(t, 0, text)
		require.Regexp(t, `mailer\s+shop/prod\s+open\s+operator`, text.stdout)

		var st statusJSON
		requireExit(t, exitAttention, cliJSON(t, f.dsn(), &st, "status"))
		require.Len(t, st.OpenBreakers, 1)
		require.Contains(t, strings.Join(st.Attention, "\n"), `the breaker of actor "mailer" (stack shop, env prod) is open: smtp maintenance`)

		set.Breaker = breakerJSON{}
		requireExit(t, 0, cliJSON(t, f.dsn(), &set, "breakers", "close", "mailer", "--stack", "shop", "--env", "prod", "--yes"))
		require.Equal(t, "closed", set.Breaker.State)
		requireExit(t, 0, cli(t, f.dsn(), "status"))
	})
}
