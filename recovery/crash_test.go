package recovery_test

// Cross-process crash tests: workers are the examples/cluster program,
// built once per test and killed with real signals.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/internal/clusterdemo"
	"github.com/revenant-go/revenant/internal/testdb"
)

// clusterBinaries caches the program built for each test (or benchmark).
var clusterBinaries sync.Map // testing.TB -> string

// clusterBinary builds examples/cluster into t's temporary directory, once
// per t, with the race detector when this test binary has it.
func clusterBinary(t testing.TB) string {
	t.Helper()
	if path, ok := clusterBinaries.Load(t); ok {
		return path.(string)
	}
	path := filepath.Join(t.TempDir(), "cluster")
	args := []string{"build", "-o", path}
	if raceEnabled() {
		args = append(args, "-race")
	}
	out, err := exec.Command("go", append(args, clusterdemo.Package)...).CombinedOutput()
	require.NoError(t, err, "building %s:\n%s", clusterdemo.Package, out)
	clusterBinaries.Store(t, path)
	t.Cleanup(func() { clusterBinaries.Delete(t) })
	return path
}

func raceEnabled() bool {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range info.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

type worker struct {
	cmd *exec.Cmd
	out *bytes.Buffer
	o   clusterdemo.Options
}

func startWorker(t testing.TB, o clusterdemo.Options) *worker {
	t.Helper()
	cmd := exec.Command(clusterBinary(t), o.Args()...)
	cmd.Env = append(os.Environ(), o.Env()...)
	w := &worker{cmd: cmd, out: &bytes.Buffer{}, o: o}
	cmd.Stdout, cmd.Stderr = w.out, w.out
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Signal(syscall.SIGCONT)
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return w
}

func (w *worker) kill() {
	_ = w.cmd.Process.Signal(syscall.SIGKILL)
	_ = w.cmd.Wait()
}

func (w *worker) stopGracefully(t testing.TB) {
	t.Helper()
	_ = w.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- w.cmd.Wait() }()
	select {
	case err := <-done:
		var exit *exec.ExitError
		if errors.As(err, &exit) && exit.Sys().(syscall.WaitStatus).Signal() == syscall.SIGTERM {
			return // terminated before it installed its handler: it had not started
		}
		require.NoError(t, err, "worker output:\n%s", w.out.String())
	case <-time.After(30 * time.Second):
		_ = w.cmd.Process.Kill()
		t.Fatalf("worker did not stop; output:\n%s", w.out.String())
	}
}

func enqueueDemo(t testing.TB, s *testdb.Schema, n, maxAttempts int) {
	t.Helper()
	db := s.DB
	schema := clusterdemo.Schema
	if s.IsSQLite() {
		schema = clusterdemo.SQLiteSchema
	}
	_, err := db.Exec(schema)
	require.NoError(t, err)
	store, err := episodes.New(db, nil)
	require.NoError(t, err)
	for i := range n {
		_, err := store.Create(context.Background(), episodes.CreateParams{ActorID: clusterdemo.ActorID, Input: i, MaxAttempts: maxAttempts})
		require.NoError(t, err)
	}
}

func countByStatus(t testing.TB, db *sqlx.DB) map[string]int {
	t.Helper()
	rows, err := db.Query(`SELECT status, count(*) FROM revenant_episodes GROUP BY 1`)
	require.NoError(t, err)
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var s string
		var n int
		require.NoError(t, rows.Scan(&s, &n))
		out[s] = n
	}
	return out
}

// assertExactlyOnce checks the side effects: one per (episode, step), each
// written under the claim token that recorded the step in the journal, and
// no (episode, token) pair used by two nodes.
func assertExactlyOnce(t testing.TB, db *sqlx.DB, episodesN, steps int) {
	t.Helper()
	var effects, distinct int
	require.NoError(t, db.QueryRow(`SELECT count(*), (SELECT count(*) FROM (SELECT DISTINCT episode_id, step FROM cluster_effects) d) FROM cluster_effects`).Scan(&effects, &distinct))
	require.Equal(t, episodesN*steps, effects, "one side effect per step")
	require.Equal(t, effects, distinct, "no side effect happened twice")
	var mismatched int
	require.NoError(t, db.Get(&mismatched, `SELECT count(*) FROM cluster_effects c
		LEFT JOIN revenant_steps s ON s.episode_id = c.episode_id AND s.seq = c.step
		WHERE s.claim_token IS NULL OR s.claim_token <> c.claim_token`))
	require.Zero(t, mismatched, "every effect was committed with its journal entry, under the same token")
	var shared int
	require.NoError(t, db.Get(&shared, `SELECT count(*) FROM (
		SELECT episode_id, claim_token FROM cluster_effects GROUP BY 1, 2 HAVING count(DISTINCT node_id) > 1) x`))
	require.Zero(t, shared, "no episode was run by two owners with the same claim token")
}

// Three worker processes share the database; one of them is killed with
// SIGKILL (and restarted) every second or so. On SQLite the workers share
// one file, whose single write lock serialises their transactional steps,
// so the run is smaller and a killed worker's work is found by its TTL.
func TestCrashClusterSIGKILL(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		s := testdb.New(t, &testdb.Options{Driver: driver})
		episodesN, steps, sleep := 500, 5, 25*time.Millisecond
		var hb, ttl time.Duration
		if s.IsSQLite() {
			episodesN, steps, sleep = 300, 4, 2*time.Millisecond
			hb, ttl = 200*time.Millisecond, time.Second
		}
		enqueueDemo(t, s, episodesN, 50)
		opts := func(name string) clusterdemo.Options {
			return clusterdemo.Options{DSN: s.DSN, SQLite: s.IsSQLite(), Name: name, Concurrency: 4, Steps: steps, StepSleep: sleep, MaxAttempts: 50,
				HeartbeatInterval: hb, NodeTTL: ttl}
		}
		workers := []*worker{startWorker(t, opts("w0")), startWorker(t, opts("w1")), startWorker(t, opts("w2"))}
		killed := []*worker{}

		deadline := time.Now().Add(3 * time.Minute)
		kills := 0
		for {
			st := countByStatus(t, s.DB)
			if st["done"] == episodesN {
				break
			}
			require.Zero(t, st["failed"], "no episode may fail: %v", st)
			if !time.Now().Before(deadline) {
				var open []string
				_ = s.DB.Select(&open, `SELECT id || ' ' || status || ' owner=' || coalesce(owner_node, '') || ' token=' || claim_token || ' attempts=' || attempts
				FROM revenant_episodes WHERE status <> 'done'`)
				var nodes []string
				_ = s.DB.Select(&nodes, `SELECT node_id || ' stopped=' || coalesce(CAST(stopped_at AS text), '') || ' expires=' || CAST(expires_at AS text) FROM revenant_nodes`)
				var outs []string
				for _, w := range workers {
					outs = append(outs, w.out.String())
				}
				t.Fatalf("not done in time: %v\nopen: %v\nnodes: %v\nworkers: %v", st, open, nodes, outs)
			}
			time.Sleep(time.Duration(500+rand.IntN(700)) * time.Millisecond)
			if kills < 12 {
				i := rand.IntN(len(workers))
				workers[i].kill()
				killed = append(killed, workers[i])
				kills++
				workers[i] = startWorker(t, opts(fmt.Sprintf("w%d", i)))
			}
		}
		for _, w := range workers {
			w.stopGracefully(t)
		}
		require.Equal(t, map[string]int{"done": episodesN}, countByStatus(t, s.DB))
		assertExactlyOnce(t, s.DB, episodesN, steps)
		var restarted int
		require.NoError(t, s.DB.Get(&restarted, `SELECT count(*) FROM revenant_episodes WHERE attempts > 1`))
		t.Logf("%d SIGKILLs; %d episodes were recovered and resumed at least once", kills, restarted)
		require.GreaterOrEqual(t, kills, 3, "the run must outlast several kills")
		require.Positive(t, restarted, "kills must have hit episodes mid-run")
		var outs strings.Builder
		for _, w := range append(killed, workers...) {
			outs.WriteString(w.out.String())
		}
		require.Regexp(t, `#\d+ resumed \(claim \d+\)`, outs.String(), "the workers print the episodes they resume from a dead node's journal")
	})
}

func TestPausedWorkerIsFencedAfterResume(t *testing.T) {
	t.Parallel()
	s := testdb.New(t, nil)
	const episodesN, steps = 20, 5
	enqueueDemo(t, s, episodesN, 50)
	a := startWorker(t, clusterdemo.Options{DSN: s.DSN, Name: "paused", Concurrency: 10, Steps: steps,
		StepSleep: 150 * time.Millisecond, MaxAttempts: 50, HeartbeatInterval: 300 * time.Millisecond, NodeTTL: 2 * time.Second})
	var aNode string
	require.Eventually(t, func() bool {
		return s.DB.Get(&aNode, `SELECT DISTINCT node_id FROM cluster_effects LIMIT 1`) == nil
	}, 30*time.Second, 20*time.Millisecond, "worker A never started: %s", a.out)
	require.NoError(t, a.cmd.Process.Signal(syscall.SIGSTOP))
	paused := time.Now()

	b := startWorker(t, clusterdemo.Options{DSN: s.DSN, Name: "rescuer", Concurrency: 10, Steps: steps,
		StepSleep: 10 * time.Millisecond, MaxAttempts: 50})
	require.Eventually(t, func() bool { return countByStatus(t, s.DB)["done"] == episodesN },
		60*time.Second, 50*time.Millisecond, "B did not finish A's work: %s", b.out)
	t.Logf("SIGSTOP to all work done elsewhere: %s", time.Since(paused).Round(time.Millisecond))

	snapshot := func() (int, int) {
		var byA, journal int
		require.NoError(t, s.DB.Get(&byA, `SELECT count(*) FROM cluster_effects WHERE node_id = $1`, aNode))
		require.NoError(t, s.DB.Get(&journal, `SELECT count(*) FROM revenant_steps`))
		return byA, journal
	}
	byA, journal := snapshot()
	require.NoError(t, a.cmd.Process.Signal(syscall.SIGCONT))
	// A wakes, heartbeats, finds itself declared dead and re-registers under
	// a new id; by the time that node has beaten for a second, the steps A
	// was inside when paused (150 ms each) have tried their writes.
	require.Eventually(t, func() bool {
		var beating bool
		err := s.DB.Get(&beating, `SELECT EXISTS (SELECT 1 FROM revenant_nodes
			WHERE node_id LIKE 'paused-%' AND node_id <> $1 AND stopped_at IS NULL
			AND heartbeat_at > started_at + interval '1 second')`, aNode)
		return err == nil && beating
	}, 30*time.Second, 20*time.Millisecond, "A never came back as a new node: %s", a.out)
	byA2, journal2 := snapshot()
	require.Equal(t, byA, byA2, "the resumed zombie's side effects did not land")
	require.Equal(t, journal, journal2, "nor did its journal writes")
	require.Equal(t, map[string]int{"done": episodesN}, countByStatus(t, s.DB))
	assertExactlyOnce(t, s.DB, episodesN, steps)
	a.stopGracefully(t)
	b.stopGracefully(t)
}
