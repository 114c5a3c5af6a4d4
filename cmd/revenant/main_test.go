package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/internal/store"
	"github.com/revenant-go/revenant/internal/store/backend"
	"github.com/revenant-go/revenant/internal/testdb"
)

// binary is the CLI, built once for the package's tests, which run it as
// a subprocess against Postgres and SQLite.
var binary string

// TestMain builds the binary, runs the tests, and removes the binary; as
// a child process (killVictim) it is the node that gets killed instead.
// (testdb.Main would exit before the removal; this package has no
// Example functions for it to skip.)
func TestMain(m *testing.M) {
	if dsn := os.Getenv(victimEnv); dsn != "" {
		if err := victimMain(dsn); err != nil {
			fmt.Fprintln(os.Stderr, "victim:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	dir, err := os.MkdirTemp("", "revenant-cli-test-*")
	if err != nil {
		fmt.Fprintln(os.Stderr, "creating a directory for the CLI:", err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "revenant")
	build := exec.Command("go", "build", "-o", binary, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building the CLI:", err)
		_ = os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// result is one run of the CLI.
type result struct {
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// cli runs the CLI with DATABASE_URL=dsn (unset when ""), and stdin a
// pipe (not a terminal).
func cli(t *testing.T, dsn string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = cliEnv(dsn)
	cmd.Stdin = strings.NewReader("")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		require.NoError(t, err, "running the CLI: %s", r)
	}
	return r
}

func cliEnv(dsn string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DATABASE_URL=") {
			env = append(env, kv)
		}
	}
	if dsn != "" {
		env = append(env, "DATABASE_URL="+dsn)
	}
	return env
}

// cliJSON runs the CLI with --json and decodes its stdout into v.
func cliJSON(t *testing.T, dsn string, v any, args ...string) result {
	t.Helper()
	r := cli(t, dsn, append(args, "--json")...)
	if r.stdout != "" {
		require.NoError(t, json.Unmarshal([]byte(r.stdout), v), "decoding the JSON output: %s", r)
	}
	return r
}

// requireExit checks a run's exit code, showing its output otherwise.
func requireExit(t *testing.T, code int, r result) {
	t.Helper()
	require.Equal(t, code, r.code, "%s", r)
}

// fixture is a fresh database with helpers that write what the tests
// inspect: nodes (alive, or dead by an expired TTL), episodes in every
// state.
type fixture struct {
	t   *testing.T
	s   *testdb.Schema
	ctx context.Context
	st  store.Store
	eps *episodes.Store
}

func newFixture(t *testing.T, driver string) *fixture {
	t.Helper()
	s := testdb.New(t, &testdb.Options{Driver: driver})
	eps, err := episodes.New(s.DB, nil)
	require.NoError(t, err)
	return &fixture{t: t, s: s, ctx: context.Background(), st: backend.For(s.DB), eps: eps}
}

// dsn is what the CLI is given: the Postgres URL with the schema in its
// search_path, or the SQLite file's path.
func (f *fixture) dsn() string { return f.s.DSN }

// node registers a node; a negative ttl makes it dead (its heartbeat
// lapsed), which works on both backends.
func (f *fixture) node(id string, ttl time.Duration, actors []string, policies map[string]store.ActorPolicy) {
	f.t.Helper()
	require.NoError(f.t, f.st.NodeRegister(f.ctx, f.s.DB, &store.NodeRegisterParams{ID: id, Name: id, Actors: actors, Policies: policies, TTL: ttl}))
}

func (f *fixture) create(p episodes.CreateParams) uuid.UUID {
	f.t.Helper()
	res, err := f.eps.Create(f.ctx, p)
	require.NoError(f.t, err)
	return res.Episode.ID
}

// running creates an episode of actor and claims it as node.
func (f *fixture) running(p episodes.CreateParams, node string) uuid.UUID {
	f.t.Helper()
	id := f.create(p)
	_, err := f.eps.Claim(f.ctx, id, node)
	require.NoError(f.t, err)
	return id
}

// failed creates a dead letter of actor with errorClass.
func (f *fixture) failed(actor, errorClass string) uuid.UUID {
	f.t.Helper()
	id := f.create(episodes.CreateParams{ActorID: actor, MaxAttempts: 1})
	ep, err := f.eps.Claim(f.ctx, id, "worker-0")
	require.NoError(f.t, err)
	_, err = f.eps.Fail(f.ctx, id, ep.ClaimToken, errorClass, map[string]string{"message": "it broke"})
	require.NoError(f.t, err)
	return id
}

func (f *fixture) get(id uuid.UUID) *episodes.Episode {
	f.t.Helper()
	ep, err := f.eps.Get(f.ctx, id)
	require.NoError(f.t, err)
	return ep
}
