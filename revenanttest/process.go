package revenanttest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"

	"github.com/revenant-go/revenant"
	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/inspect"
	"github.com/revenant-go/revenant/internal/store/backend"
	"github.com/revenant-go/revenant/recovery"
	"github.com/revenant-go/revenant/runner"
)

// Process mode: each crashed attempt runs in a child process, the test
// binary started again with childEnv set, which Main turns into a node
// running the registered actor. At the planned boundary the child says so
// on stdout and blocks; the parent SIGKILLs it, lets the real sweep find
// the dead node (its advisory lock gone on Postgres, its TTL lapsed on
// SQLite) and restart the episode, and finishes it on a node of its own.

// childEnv carries a child's orders (JSON) from the parent.
const childEnv = "REVENANTTEST_CHILD"

// Child timings: on SQLite the sweep finds the killed child once its TTL
// lapses, so it is short; the heartbeat keeps it comfortably alive until
// then.
const (
	childHeartbeat = 25 * time.Millisecond
	childTTL       = time.Second
)

// processAttemptSlack: on a loaded machine a child's heartbeat can be late
// past its TTL before it reaches its crash point; the sweep then takes it
// for dead and restarts the episode once more (the child's later writes
// are fenced). That extra attempt is the machine's, not the actor's fault,
// so it must not exhaust the episode.
const processAttemptSlack = 3

// Lines a child writes on stdout.
const (
	lineCrashed = "revenanttest-child: at the crash point"
	lineDone    = "revenanttest-child: episode finished"
)

var (
	registryMu sync.Mutex
	registry   = map[string]func(db *sqlx.DB) runner.Actor{}
)

// RegisterActor makes actor id available to the child processes of
// Process mode: call it from an init function or from TestMain, before
// Main. A child calls build with its own handle on the test's database, to
// build the actor as your program would (with its own clients and caches).
// Registering an id twice replaces the first.
func RegisterActor(id string, build func(db *sqlx.DB) runner.Actor) {
	registryMu.Lock()
	defer registryMu.Unlock()
	registry[id] = build
}

func registered(id string) (func(db *sqlx.DB) runner.Actor, bool) {
	registryMu.Lock()
	defer registryMu.Unlock()
	b, ok := registry[id]
	return b, ok
}

// M is what Main runs: *testing.M.
type M interface{ Run() int }

// Main runs a test binary's tests, or, in a child process started by
// Process mode, the child's node. Call it from TestMain:
//
//	func TestMain(m *testing.M) {
//		revenanttest.RegisterActor("fulfilment", newFulfilment)
//		revenanttest.Main(m)
//	}
func Main(m M) {
	if spec := os.Getenv(childEnv); spec != "" {
		os.Exit(runChild(spec))
	}
	os.Exit(m.Run())
}

// childSpec is a child's orders.
type childSpec struct {
	Driver  string        `json:"driver"`
	DSN     string        `json:"dsn"`
	Actor   string        `json:"actor"`
	Env     string        `json:"env"`
	Episode uuid.UUID     `json:"episode"`
	Step    int           `json:"step"`
	Point   Point         `json:"point"`
	Timeout time.Duration `json:"timeout"`
}

// processCrasher runs crashed attempts in child processes.
type processCrasher struct {
	t      TB
	o      *CrashOptions
	db     *sqlx.DB
	in     *inspect.Inspector
	actor  runner.Actor
	env    string
	driver string
	dsn    string
	exe    string
	admin  *revenant.Client // unstarted: enqueues and sweeps
}

func newProcessCrasher(t TB, o *CrashOptions, actor runner.Actor) crasher {
	t.Helper()
	if _, ok := registered(actor.ID); !ok {
		t.Fatalf("revenanttest: Process mode: actor %q is not registered for child processes; call revenanttest.RegisterActor "+
			"with a function that builds it, from init or TestMain, and revenanttest.Main(m) from TestMain", actor.ID)
	}
	c := &processCrasher{t: t, o: o, db: o.DB, env: kitEnv(), driver: backend.For(o.DB).Name(), dsn: o.DSN}
	if c.dsn == "" {
		src, ok := opened.Load(o.DB)
		if !ok {
			t.Fatalf("revenanttest: Process mode: set CrashOptions.DSN, so that child processes can open the database " +
				"(the kit knows the DSN only of databases revenanttest.DB opened)")
		}
		c.dsn = src.(dbSource).dsn
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatalf("revenanttest: Process mode: finding the test binary: %v", err)
	}
	c.exe = exe
	in, err := inspect.New(o.DB, nil)
	if err != nil {
		t.Fatalf("revenanttest: %v", err)
	}
	c.in = in
	actor.Recovery = recovery.Restart
	actor.ExpectationRecovery = nil
	c.actor = actor
	c.admin, err = revenant.New(o.DB, &revenant.Config{Name: "revenanttest", Env: c.env, SkipMigrate: true})
	if err == nil {
		err = c.admin.Register(actor)
	}
	if err != nil {
		t.Fatalf("revenanttest: %v", err)
	}
	return c
}

func (c *processCrasher) close() {}

// run runs each planned crash in a child, then finishes the episode here.
func (c *processCrasher) run(ctx context.Context, schedule []Boundary, input any) (*scenarioRun, error) {
	ctx, cancel := context.WithTimeout(ctx, c.o.Timeout*time.Duration(len(schedule)+1))
	defer cancel()
	id := uuid.Must(uuid.NewV7())
	if _, err := c.admin.Enqueue(ctx, episodes.CreateParams{ID: id, ActorID: c.actor.ID, Input: input,
		MaxAttempts: len(schedule) + 1 + processAttemptSlack, Retry: &episodes.RetryPolicy{Disabled: true}}); err != nil {
		return nil, fmt.Errorf("enqueuing: %w", err)
	}
	sr := &scenarioRun{id: id}
	st := c.admin.Episodes()
	for _, b := range schedule {
		crashed, token, err := c.child(ctx, id, b)
		if err != nil {
			return nil, err
		}
		if !crashed {
			break // the child finished the episode without reaching the boundary
		}
		sr.crashed++
		steps, err := journalOf(ctx, c.in, id)
		if err != nil {
			return nil, err
		}
		sr.atCrash = append(sr.atCrash, steps)
		if prob := c.sweepRestarts(ctx, st, id, token); prob != "" {
			sr.problems = append(sr.problems, prob)
			return sr, c.finish(ctx, sr)
		}
	}
	ep, err := st.Get(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("reading episode %s: %w", id, err)
	}
	if !ep.Status.Terminal() {
		node := Client(c.t, c.db, &ClientOptions{Config: &revenant.Config{Name: "revenanttest", Env: c.env}, Actors: []runner.Actor{c.actor}})
		_, err := waitTerminal(ctx, st, id)
		stopClient(c.t, node)
		if err != nil {
			sr.problems = append(sr.problems, fmt.Sprintf("the restarted run did not finish: %v", err))
		}
	}
	return sr, c.finish(ctx, sr)
}

func (c *processCrasher) finish(ctx context.Context, sr *scenarioRun) error {
	ep, err := c.admin.Episodes().Get(ctx, sr.id)
	if err != nil {
		return fmt.Errorf("reading episode %s: %w", sr.id, err)
	}
	out, err := outcomeOf(ctx, c.db, ep)
	if err != nil {
		return fmt.Errorf("reading episode %s: %w", sr.id, err)
	}
	sr.outcome = out
	return nil
}

// child runs one attempt in a child process, and SIGKILLs it at the
// boundary. crashed is false when the child finished the episode instead;
// token is the killed attempt's claim token.
func (c *processCrasher) child(ctx context.Context, id uuid.UUID, b Boundary) (crashed bool, token int64, err error) {
	spec, err := json.Marshal(childSpec{Driver: c.driver, DSN: c.dsn, Actor: c.actor.ID, Env: c.env, Episode: id,
		Step: b.Step, Point: b.Point, Timeout: c.o.Timeout})
	if err != nil {
		return false, 0, err
	}
	cmd := exec.CommandContext(ctx, c.exe, "-test.run=^$", "-test.bench=^$") //nolint:gosec // G204: the test binary itself
	cmd.Env = append(os.Environ(), childEnv+"="+string(spec))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return false, 0, err
	}
	if err := cmd.Start(); err != nil {
		return false, 0, fmt.Errorf("starting a child process: %w", err)
	}
	// The reader ends with the pipe (Wait closes it), and never blocks on
	// lines once this function returned: a child that writes more after
	// its crash line must not leak it.
	lines, stop := make(chan string, 4), make(chan struct{})
	defer close(stop)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-stop:
				return
			}
		}
	}()
	var last []string
	for {
		select {
		case <-ctx.Done():
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			return false, 0, fmt.Errorf("the child process neither reached %s nor finished in time; its output: %s",
				lowerFirst(b.String()), childOutput(last, &stderr))
		case line, ok := <-lines:
			switch {
			case !ok:
				werr := cmd.Wait()
				return false, 0, fmt.Errorf("the child process ended (%v) before the crash point; if its output does not say why, "+
					"check that TestMain calls revenanttest.Main(m); its output: %s", werr, childOutput(last, &stderr))
			case line == lineCrashed:
				// The real crash: no defer, no deferred rollback, nothing
				// flushed. The database rolls back what was open.
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
				ep, err := c.admin.Episodes().Get(ctx, id)
				if err != nil {
					return false, 0, fmt.Errorf("reading episode %s: %w", id, err)
				}
				return true, ep.ClaimToken, nil
			case line == lineDone:
				_ = cmd.Wait()
				return false, 0, nil
			default:
				last = append(last, line)
			}
		}
	}
}

func childOutput(lines []string, stderr *bytes.Buffer) string {
	s := strings.TrimSpace(strings.Join(lines, "\n") + "\n" + stderr.String())
	if len(s) > 2000 {
		s = "…" + s[len(s)-2000:]
	}
	if s == "" {
		return "(none)"
	}
	return s
}

// sweepRestarts runs the real sweep until it finds the killed child's node
// dead and restarts its episode.
func (c *processCrasher) sweepRestarts(ctx context.Context, st *episodes.Store, id uuid.UUID, token int64) string {
	tick := time.NewTicker(5 * pollEvery)
	defer tick.Stop()
	for {
		if _, err := c.admin.Sweep(ctx, false); err != nil && ctx.Err() == nil {
			c.t.Logf("revenanttest: a sweep failed (tried again): %v", err)
		}
		ep, err := st.Get(ctx, id)
		if err == nil && (ep.ClaimToken != token || ep.Status != episodes.StatusRunning) {
			return restartProblem(ep)
		}
		select {
		case <-ctx.Done():
			return fmt.Sprintf("no sweep took the killed child's episode %s over in time", id)
		case <-tick.C:
		}
	}
}

// errNoActor is a child's answer when the actor it is asked for is not
// registered.
var errNoActor = errors.New("not registered in this binary; call revenanttest.RegisterActor from init or TestMain")
