package workflow_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant/bus"
	"github.com/revenant-go/revenant/internal/testdb"
	"github.com/revenant-go/revenant/recovery"
	"github.com/revenant-go/revenant/runner"
	"github.com/revenant-go/revenant/workflow"
)

// service is the lifecycle every revenant service shares.
type service interface {
	Start(ctx context.Context) error
	Stop(ctx context.Context) error
}

var (
	_ service = (*runner.Runner)(nil)
	_ service = (*recovery.Sweeper)(nil)
	_ service = (*bus.Outbox)(nil)
	_ service = (*workflow.Engine)(nil)
)

// Every service starts and stops the same way: Stop is safe before Start
// and when repeated, Start twice is refused, and Stop waits for the loops.
func TestEveryServiceStartsAndStopsTheSameWay(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		s := testdb.New(t, &testdb.Options{Driver: driver, MaxOpenConns: 8})
		ctx := context.Background()
		b, err := bus.NewOutbox(s.DB, &bus.OutboxConfig{PollInterval: 50 * time.Millisecond})
		require.NoError(t, err)
		r, err := runner.New(s.DB, &runner.Config{Name: "n", Bus: b, PollInterval: 50 * time.Millisecond})
		require.NoError(t, err)
		sw, err := recovery.NewSweeper(s.DB, &recovery.SweeperConfig{Options: recovery.Options{Node: r}})
		require.NoError(t, err)
		eng, err := workflow.NewEngine(s.DB, &workflow.Config{Bus: b})
		require.NoError(t, err)
		services := map[string]service{"bus": b, "runner": r, "sweeper": sw, "engine": eng}
		for _, name := range []string{"bus", "runner", "sweeper", "engine"} {
			svc := services[name]
			require.NoError(t, svc.Stop(ctx), "%s: Stop before Start", name)
		}
		// Stopped before ever starting: the bus and Sweeper are done for
		// good (as after a Stop), the others may start. Fresh ones then.
		b, err = bus.NewOutbox(s.DB, &bus.OutboxConfig{PollInterval: 50 * time.Millisecond})
		require.NoError(t, err)
		r, err = runner.New(s.DB, &runner.Config{Name: "n", Bus: b, PollInterval: 50 * time.Millisecond})
		require.NoError(t, err)
		sw, err = recovery.NewSweeper(s.DB, &recovery.SweeperConfig{Options: recovery.Options{Node: r}})
		require.NoError(t, err)
		eng, err = workflow.NewEngine(s.DB, &workflow.Config{Bus: b})
		require.NoError(t, err)
		order := []service{b, r, sw, eng}
		for _, svc := range order {
			require.NoError(t, svc.Start(ctx))
			require.Error(t, svc.Start(ctx), "a second Start is refused")
		}
		for i := len(order) - 1; i >= 0; i-- {
			stopCtx, cancel := context.WithTimeout(ctx, time.Minute)
			require.NoError(t, order[i].Stop(stopCtx))
			require.NoError(t, order[i].Stop(stopCtx), "Stop again")
			cancel()
		}
	})
}
