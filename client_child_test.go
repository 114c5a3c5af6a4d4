package revenant_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant"
	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/journal"
	"github.com/revenant-go/revenant/recovery"
	"github.com/revenant-go/revenant/runner"
	"github.com/revenant-go/revenant/sqlite"
)

// The victim: a real process that runs two episodes forever, until the
// test SIGKILLs it.

const childEnv = "REVENANT_TEST_CLIENT_CHILD"

type childSpec struct {
	Driver, DSN string
}

func runChild(spec string) {
	if err := victim(spec); err != nil {
		fmt.Fprintln(os.Stderr, "victim:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func victim(raw string) error {
	ctx := context.Background()
	db, err := openChildDB(ctx, raw)
	if err != nil {
		return err
	}
	c, err := revenant.New(db, fast(revenant.Config{Name: "victim", SkipMigrate: true}))
	if err != nil {
		return err
	}
	started := make(chan string, 2)
	hang := func(ctx context.Context, ep *episodes.Episode, _ *journal.Journal) (any, error) {
		started <- ep.ActorID + "=" + ep.ID.String()
		<-ctx.Done()
		return nil, ctx.Err()
	}
	for id, p := range map[string]recovery.Policy{"owned-restart": recovery.Restart, "owned-fail": recovery.Fail} {
		if err := c.Register(runner.Actor{ID: id, Run: hang, Recovery: p}); err != nil {
			return err
		}
	}
	if err := c.Start(ctx); err != nil {
		return err
	}
	for _, a := range []string{"owned-restart", "owned-fail"} {
		if _, err := c.Enqueue(ctx, episodes.CreateParams{ActorID: a}); err != nil {
			return err
		}
	}
	for range 2 {
		fmt.Println("running", <-started)
	}
	fmt.Println("ready")
	select {} // until SIGKILL
}

// openChildDB opens the database a child process is given in its spec.
func openChildDB(ctx context.Context, raw string) (*sqlx.DB, error) {
	var spec childSpec
	if err := json.Unmarshal([]byte(raw), &spec); err != nil {
		return nil, err
	}
	if spec.Driver == "sqlite" {
		return sqlite.Open(ctx, spec.DSN, nil)
	}
	return sqlx.Open(spec.Driver, spec.DSN)
}

// runVictim starts the victim, waits until both its episodes run, kills
// it with SIGKILL and returns the episodes' ids by actor.
func runVictim(t *testing.T, spec string) map[string]uuid.UUID {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+spec)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	ids := map[string]uuid.UUID{}
	lines := bufio.NewScanner(out)
	deadline := time.AfterFunc(60*time.Second, func() { _ = cmd.Process.Kill() })
	defer deadline.Stop()
	for lines.Scan() {
		line := lines.Text()
		if line == "ready" {
			break
		}
		if rest, ok := strings.CutPrefix(line, "running "); ok {
			actor, id, _ := strings.Cut(rest, "=")
			ids[actor] = uuid.MustParse(id)
		}
	}
	require.Len(t, ids, 2, "the victim did not get both episodes running")
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	_ = cmd.Wait()
	return ids
}
