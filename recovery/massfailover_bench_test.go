package recovery_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/lib/pq"
	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/internal/clusterdemo"
	"github.com/revenant-go/revenant/internal/testdb"
)

// BenchmarkMassFailover: a node running 10,000 episodes (CI shrinks it
// with REVENANT_BENCH_MASS_EPISODES), each with one step recorded and
// waiting in its second, is SIGKILLed; one survivor with room for all of
// them, default settings, takes them over. An iteration times SIGKILL →
// every episode's run started again on the survivor: claimed, its journal
// loaded and its recorded step replayed (the survivor prints a line per
// resumed run, counted here). The raw baseline, in the same iteration: the
// least SQL that moves the same episodes over, one UPDATE … RETURNING of
// the dead node's running episodes and one read of their steps.
// Use -benchtime 5x.
func BenchmarkMassFailover(b *testing.B) {
	n := 10_000
	if v, err := strconv.Atoi(os.Getenv("REVENANT_BENCH_MASS_EPISODES")); err == nil && v > 0 {
		n = v
	}
	s := testdb.New(b, nil)
	db := s.DB
	ctx := context.Background()
	enqueueDemo(b, s, 0, 5)
	st, err := episodes.New(db, nil)
	require.NoError(b, err)
	opts := func(name string) clusterdemo.Options {
		// Runs wait outside any transaction: a small pool serves them all.
		return clusterdemo.Options{DSN: s.DSN, Name: name, Concurrency: n, MaxConns: 24, Steps: 2, StepTime: time.Hour, MaxAttempts: 50,
			QuietRecoveries: true}
	}
	var libT, rawT time.Duration
	var samples []time.Duration
	for b.Loop() {
		b.StopTimer()
		_, err := db.Exec(`UPDATE revenant_episodes SET status = 'canceled', finished_at = now() WHERE status IN ('pending', 'running')`)
		require.NoError(b, err)
		_, err = db.Exec(`DELETE FROM revenant_events`)
		require.NoError(b, err)
		victim := startWorker(b, opts("victim"))
		ps := make([]episodes.CreateParams, n)
		for i := range ps {
			ps[i] = episodes.CreateParams{ActorID: clusterdemo.ActorID, Input: i, MaxAttempts: 50}
		}
		_, err = st.CreateMany(ctx, ps)
		require.NoError(b, err)
		require.Eventually(b, func() bool {
			var c int
			require.NoError(b, db.Get(&c, `SELECT count(*) FROM revenant_episodes WHERE status = 'running'`))
			return c == n
		}, 2*time.Minute, 20*time.Millisecond, "the victim never claimed its work: %s", victim.out)
		// Each run waits in its first step's work (an hour); give each a
		// recorded first step, as if it had done it, so that the
		// survivor has a journal to load and a step to replay.
		_, err = db.Exec(`INSERT INTO revenant_steps (episode_id, seq, name, status, output, claim_token, started_at)
			SELECT id, 0, 'step-0', 'done', '0', claim_token, now() FROM revenant_episodes WHERE status = 'running'`)
		require.NoError(b, err)
		out := &lineCounter{match: []byte(" resumed (claim ")}
		survivor := startWorkerTo(b, opts("survivor"), out)
		var survivorNode string
		require.Eventually(b, func() bool {
			return db.Get(&survivorNode, `SELECT node_id FROM revenant_nodes WHERE name = 'survivor' AND stopped_at IS NULL ORDER BY started_at DESC LIMIT 1`) == nil
		}, 30*time.Second, 10*time.Millisecond)
		// The survivor is up: its failure watcher waits on the victim.
		var victimID string
		require.NoError(b, db.Get(&victimID, `SELECT node_id FROM revenant_nodes WHERE name = 'victim' AND stopped_at IS NULL ORDER BY started_at DESC LIMIT 1`))
		// Detection is the watcher's wait, not a timer: the kill needs no
		// random phase against the survivor's timers.
		waitLockWaiter(b, db, victimID)

		b.StartTimer()
		start := time.Now()
		require.NoError(b, victim.cmd.Process.Signal(syscall.SIGKILL))
		require.Eventually(b, func() bool { return out.count() >= n }, 2*time.Minute, 2*time.Millisecond,
			"the survivor resumed %d of %d", out.count(), n)
		took := time.Since(start)
		b.StopTimer()
		libT += took
		samples = append(samples, took)
		var moved int
		require.NoError(b, db.Get(&moved, `SELECT count(*) FROM revenant_episodes WHERE status = 'running' AND owner_node = $1`, survivorNode))
		require.Equal(b, n, moved, "every episode runs on the survivor")
		survivor.kill()
		victim.kill()

		// Raw: the same episodes moved to another owner, and their steps read.
		start = time.Now()
		rows, err := db.Query(`UPDATE revenant_episodes SET owner_node = 'raw', claim_token = claim_token + 1, attempts = attempts + 1,
			started_at = now(), last_activity_at = now() WHERE status = 'running' AND owner_node = $1 RETURNING id`, survivorNode)
		require.NoError(b, err)
		ids := make([]uuid.UUID, 0, n)
		for rows.Next() {
			var id uuid.UUID
			require.NoError(b, rows.Scan(&id))
			ids = append(ids, id)
		}
		require.NoError(b, rows.Err())
		rows.Close()
		steps := 0
		srows, err := db.Query(`SELECT episode_id, seq, name, status, output, error FROM revenant_steps WHERE episode_id = ANY($1) ORDER BY episode_id, seq`, pq.Array(ids))
		require.NoError(b, err)
		for srows.Next() {
			var id uuid.UUID
			var seq int
			var name, status string
			var output, errJSON []byte
			require.NoError(b, srows.Scan(&id, &seq, &name, &status, &output, &errJSON))
			steps++
		}
		require.NoError(b, srows.Err())
		srows.Close()
		rawT += time.Since(start)
		require.Equal(b, n, steps)
		_, err = db.Exec(`UPDATE revenant_nodes SET stopped_at = now() WHERE stopped_at IS NULL`)
		require.NoError(b, err)
		b.StartTimer()
	}
	b.StopTimer()
	reportPercentiles(b, samples)
	b.ReportMetric(libT.Seconds()/rawT.Seconds(), "x_raw")
	b.ReportMetric(float64(rawT.Milliseconds())/float64(b.N), "raw_ms")
}

// reportPercentiles reports the samples' p50, p99 and max in milliseconds.
func reportPercentiles(b *testing.B, samples []time.Duration) {
	sorted := slices.Clone(samples)
	slices.Sort(sorted)
	p := func(q float64) float64 {
		return float64(sorted[int(q*float64(len(sorted)-1)+0.5)].Milliseconds())
	}
	b.ReportMetric(p(0.5), "p50_ms")
	b.ReportMetric(p(0.99), "p99_ms")
	b.ReportMetric(float64(sorted[len(sorted)-1].Milliseconds()), "max_ms")
}

// startWorkerTo starts a worker whose output goes to w (safe to read while
// the worker runs) instead of a buffer.
func startWorkerTo(t testing.TB, o clusterdemo.Options, w *lineCounter) *worker {
	t.Helper()
	cmd := exec.Command(clusterBinary(t), o.Args()...)
	cmd.Env = append(os.Environ(), o.Env()...)
	cmd.Stdout, cmd.Stderr = w, w
	require.NoError(t, cmd.Start())
	wk := &worker{cmd: cmd, out: &bytes.Buffer{}, o: o}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return wk
}

// lineCounter counts the complete output lines that contain match.
type lineCounter struct {
	match   []byte
	mu      sync.Mutex
	partial []byte
	n       int
}

func (c *lineCounter) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.partial = append(c.partial, p...)
	for {
		i := bytes.IndexByte(c.partial, '\n')
		if i < 0 {
			break
		}
		if bytes.Contains(c.partial[:i], c.match) {
			c.n++
		}
		c.partial = c.partial[i+1:]
	}
	return len(p), nil
}

func (c *lineCounter) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}
