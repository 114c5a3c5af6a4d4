package main

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestHuman(t *testing.T) {
	t.Parallel()
	for d, want := range map[time.Duration]string{
		850 * time.Millisecond:                       "850ms",
		3200 * time.Millisecond:                      "3.2s",
		42 * time.Second:                             "42s",
		4*time.Minute + 12*time.Second:               "4m12s",
		3*time.Hour + 4*time.Minute:                  "3h04m",
		2*24*time.Hour + 3*time.Hour + 5*time.Minute: "2d03h",
		-1500 * time.Millisecond:                     "1.5s",
	} {
		require.Equal(t, want, human(d), "%s", d)
	}
}

func TestParseDatabaseURL(t *testing.T) {
	t.Parallel()
	for raw, want := range map[string]target{
		"postgres://u@h:5432/db?sslmode=disable": {backend: backendPostgres, dsn: "postgres://u@h:5432/db?sslmode=disable"},
		"postgresql://u@h/db":                    {backend: backendPostgres, dsn: "postgresql://u@h/db"},
		"sqlite:app.db":                          {backend: backendSQLite, path: "app.db"},
		"sqlite:///var/lib/app/revenant":         {backend: backendSQLite, path: "/var/lib/app/revenant"},
		"sqlite://data/revenant.sqlite":          {backend: backendSQLite, path: "data/revenant.sqlite"},
		"./revenant.sqlite3":                     {backend: backendSQLite, path: "./revenant.sqlite3"},
		"  /tmp/x.db ":                           {backend: backendSQLite, path: "/tmp/x.db"},
	} {
		got, err := parseDatabaseURL(raw)
		require.NoError(t, err, raw)
		require.Equal(t, want, got, raw)
	}
	for _, raw := range []string{"", "mysql://root:pw@db/app", "sqlite:", "app.txt", "postgres://u:p w@h:x/db"} {
		_, err := parseDatabaseURL(raw)
		require.Error(t, err, raw)
		require.Equal(t, exitUsage, exitCode(err), raw)
		if strings.Contains(raw, "://") {
			require.NotContains(t, err.Error(), raw, "a URL may hold a password")
		}
	}
}

// scrub takes the URL and its password out of an error, in any spelling.
func TestScrub(t *testing.T) {
	t.Parallel()
	dsn := "postgres://ops:p%40ss@db:5432/app"
	err := scrub(errorString("dial "+dsn+": password p@ss and p%40ss rejected"), dsn)
	require.NotContains(t, err.Error(), "p@ss")
	require.NotContains(t, err.Error(), "p%40ss")
	require.True(t, strings.Contains(err.Error(), "xxxxx"))
}

type errorString string

func (e errorString) Error() string { return string(e) }

// Neither a pipe nor the null device is a terminal to ask on.
func TestIsTerminal(t *testing.T) {
	t.Parallel()
	require.False(t, isTerminal(strings.NewReader("y\n")))
	null, err := os.Open(os.DevNull)
	require.NoError(t, err)
	defer func() { _ = null.Close() }()
	require.False(t, isTerminal(null))
}
