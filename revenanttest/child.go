package revenanttest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/revenant-go/revenant"
	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/internal/crashpoint"
	"github.com/revenant-go/revenant/journal"
	"github.com/revenant-go/revenant/recovery"
	"github.com/revenant-go/revenant/sqlite"
)

// runChild is a Process-mode child: a node that runs the episode it is
// given and stops it dead at the boundary. It returns the exit code.
func runChild(specJSON string) int {
	var spec childSpec
	if err := json.Unmarshal([]byte(specJSON), &spec); err != nil {
		fmt.Fprintf(os.Stderr, "revenanttest child: reading its orders from %s: %v\n", childEnv, err)
		return 2
	}
	if err := child(&spec); err != nil {
		fmt.Fprintf(os.Stderr, "revenanttest child: %v\n", err)
		return 1
	}
	return 0
}

func child(spec *childSpec) error {
	build, ok := registered(spec.Actor)
	if !ok {
		return fmt.Errorf("actor %q is %w", spec.Actor, errNoActor)
	}
	ctx, cancel := context.WithTimeout(context.Background(), spec.Timeout)
	defer cancel()
	var db *sqlx.DB
	var err error
	if spec.Driver == sqlite.DriverName {
		db, err = sqlite.Open(ctx, spec.DSN, nil)
	} else {
		db, err = sqlx.Open("postgres", spec.DSN)
	}
	if err != nil {
		return fmt.Errorf("opening the database: %w", err)
	}
	defer func() { _ = db.Close() }()

	actor := build(db)
	if actor.ID != spec.Actor {
		return fmt.Errorf("the function registered for actor %q builds actor %q; register each actor under its own ID", spec.Actor, actor.ID)
	}
	user := actor.Run
	actor.Recovery = recovery.Restart
	actor.ExpectationRecovery = nil
	actor.Run = func(ctx context.Context, ep *episodes.Episode, j *journal.Journal) (any, error) {
		if ep.ID == spec.Episode {
			ctx = crashpoint.With(ctx, func(p crashpoint.Point, seq int, _ string) {
				if int(p) == int(spec.Point) && seq == spec.Step {
					fmt.Println(lineCrashed)
					select {} // until the parent's SIGKILL
				}
			})
		}
		return user(ctx, ep, j)
	}
	c, err := revenant.New(db, &revenant.Config{Name: "revenanttest-child", Env: spec.Env, SkipMigrate: true,
		HeartbeatInterval: childHeartbeat, NodeTTL: childTTL, PollInterval: PollIntervalDefault, ShutdownTimeout: ShutdownTimeoutDefault})
	if err != nil {
		return err
	}
	if err := c.Register(actor); err != nil {
		return err
	}
	if err := c.Start(ctx); err != nil {
		return err
	}
	defer func() {
		sctx, scancel := context.WithTimeout(context.Background(), ShutdownTimeoutDefault)
		defer scancel()
		_ = c.Stop(sctx)
	}()
	// The episode ends here only when the run never reaches the boundary.
	tick := time.NewTicker(5 * pollEvery)
	defer tick.Stop()
	for {
		ep, err := c.Episodes().Get(ctx, spec.Episode)
		if err == nil && ep.Status.Terminal() {
			fmt.Println(lineDone)
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("episode %s neither reached the crash point nor finished in %s", spec.Episode, spec.Timeout)
		case <-tick.C:
		}
	}
}
