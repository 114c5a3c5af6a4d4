package workflow_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant/bus"
	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/internal/testdb"
	"github.com/revenant-go/revenant/workflow"
)

// BenchmarkWorkflowAdvance measures one transition: the engine applying a
// step's completion and creating the next step's episode, claimable on
// commit (the Postgres bus's event delivery is not included). 8 instances
// of a linear workflow advance concurrently. It reports the statements the
// engine sends per transition (BEGIN and COMMIT included) and transitions
// per second.
func BenchmarkWorkflowAdvance(b *testing.B) {
	const concurrent, chain = 8, 64
	s := testdb.New(b, &testdb.Options{MaxOpenConns: 4})
	db, statements := testdb.Counting(b, s.DSN, concurrent+2)
	pub, err := bus.NewOutbox(db, nil) // events go to the outbox in the flush statement
	require.NoError(b, err)
	eng, err := workflow.NewEngine(db, &workflow.Config{Bus: pub})
	require.NoError(b, err)
	def := workflow.Definition{ID: "chain"}
	for i := range chain {
		st := workflow.Step{ID: fmt.Sprintf("s%02d", i), Actor: "noop"}
		if i > 0 {
			st.DependsOn = []string{fmt.Sprintf("s%02d", i-1)}
		}
		def.Steps = append(def.Steps, st)
	}
	require.NoError(b, eng.Register(def))
	store, err := episodes.New(s.DB, nil) // the runner's side, on an uncounted pool
	require.NoError(b, err)
	ctx := context.Background()

	type lane struct {
		inst uuid.UUID
		step int
	}
	newLane := func() *lane {
		id, err := eng.StartInstance(ctx, "chain", nil, nil)
		require.NoError(b, err)
		return &lane{inst: id}
	}
	// complete finishes the lane's current step's episode as a runner
	// would, and returns the event the engine receives.
	complete := func(l *lane) bus.Event {
		inst, err := eng.Get(ctx, l.inst)
		require.NoError(b, err)
		st := inst.Step(fmt.Sprintf("s%02d", l.step))
		ep, err := store.Claim(ctx, st.EpisodeID, "bench")
		require.NoError(b, err)
		ep, err = store.Complete(ctx, ep.ID, ep.ClaimToken, "ok")
		require.NoError(b, err)
		return bus.Event{Type: bus.EpisodeCompleted, EpisodeID: ep.ID, ActorID: ep.ActorID, WorkflowInstanceID: ep.WorkflowInstanceID,
			WorkflowStepID: ep.WorkflowStepID, Status: string(ep.Status)}
	}
	lanes := make([]*lane, concurrent)
	for i := range lanes {
		lanes[i] = newLane()
	}
	var engineTime time.Duration
	var mu sync.Mutex
	transitions := 0
	var counted int64
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		evs := make([]bus.Event, concurrent)
		for i, l := range lanes {
			if l.step == chain-1 {
				lanes[i] = newLane()
				l = lanes[i]
			}
			evs[i] = complete(l)
		}
		before := statements.Load()
		b.StartTimer()
		start := time.Now()
		var wg sync.WaitGroup
		for i, l := range lanes {
			wg.Go(func() {
				require.NoError(b, eng.HandleEvent(ctx, evs[i]))
				mu.Lock()
				l.step++
				transitions++
				mu.Unlock()
			})
		}
		wg.Wait()
		engineTime += time.Since(start)
		b.StopTimer()
		counted += statements.Load() - before
		// The next step's episode exists and is claimable.
		for _, l := range lanes {
			inst, err := eng.Get(ctx, l.inst)
			require.NoError(b, err)
			st := inst.Step(fmt.Sprintf("s%02d", l.step))
			require.Equal(b, workflow.StepRunning, st.Status)
			ep, err := store.Get(ctx, st.EpisodeID)
			require.NoError(b, err)
			require.Equal(b, episodes.StatusPending, ep.Status)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(counted)/float64(transitions), "statements_per_transition")
	b.ReportMetric(float64(transitions)/engineTime.Seconds(), "transitions_per_sec")
}
