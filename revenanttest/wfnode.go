package revenanttest

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/revenant-go/revenant/bus"
	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/internal/store/backend"
	"github.com/revenant-go/revenant/journal"
	"github.com/revenant-go/revenant/recovery"
	"github.com/revenant-go/revenant/runner"
	"github.com/revenant-go/revenant/workflow"
)

// wfNode is the node that crashes in CrashAtEveryTransition, wired by hand
// as a Client would be (runner, outbox bus, workflow engine) so that the
// kit sits between the bus and the engine: it counts the step outcomes the
// engine applies, and at the crash the engine hears nothing more.
type wfNode struct {
	w          *wfKit
	crashAfter int
	outbox     *bus.Outbox
	runner     *runner.Runner
	engine     *workflow.Engine

	dead     atomic.Bool
	died     chan struct{}
	dieOnce  sync.Once
	mu       sync.Mutex
	instance uuid.UUID
	done     []string // transitions applied, in order
}

// gateBus is the bus as the crashing node's engine sees it.
type gateBus struct {
	*bus.Outbox
	n *wfNode
}

// Subscribe delivers events to the engine until the node crashes, and
// counts the transitions they make.
func (g *gateBus) Subscribe(eventType string, h bus.Handler) func() {
	return g.Outbox.Subscribe(eventType, func(ctx context.Context, ev bus.Event) error {
		if g.n.dead.Load() {
			return nil // the engine is gone
		}
		err := h(ctx, ev)
		if err == nil && ev.Terminal() && ev.WorkflowStepID != "" && ev.WorkflowInstanceID == g.n.inst() {
			g.n.applied1(fmt.Sprintf("step %q %s", ev.WorkflowStepID, ev.Status))
		}
		return err
	})
}

func startWFNode(ctx context.Context, w *wfKit, crashAfter int) (*wfNode, error) {
	n := &wfNode{w: w, crashAfter: crashAfter, died: make(chan struct{})}
	var err error
	if n.outbox, err = bus.NewOutbox(w.o.DB, &bus.OutboxConfig{PollInterval: PollIntervalDefault}); err != nil {
		return nil, err
	}
	if n.runner, err = runner.New(w.o.DB, &runner.Config{Name: "revenanttest-crashing", Env: w.env, Bus: n.outbox,
		HeartbeatInterval: HeartbeatIntervalDefault, NodeTTL: NodeTTLDefault, PollInterval: PollIntervalDefault,
		ShutdownTimeout: ShutdownTimeoutDefault}); err != nil {
		return nil, err
	}
	for _, a := range w.actors {
		user := a.Run
		// After the crash the node runs nothing: a run it claims before
		// it is gone waits for its cancellation and writes nothing.
		a.Run = func(ctx context.Context, ep *episodes.Episode, j *journal.Journal) (any, error) {
			if n.dead.Load() {
				<-ctx.Done()
				return nil, context.Cause(ctx)
			}
			return user(ctx, ep, j)
		}
		if err := n.runner.Register(a); err != nil {
			return nil, err
		}
	}
	if n.engine, err = workflow.NewEngine(w.o.DB, &workflow.Config{Bus: &gateBus{Outbox: n.outbox, n: n}, Env: w.env,
		NodeID: n.runner.NodeID(), RetryPollInterval: PollIntervalDefault}); err != nil {
		return nil, err
	}
	if err := n.engine.Register(w.def); err != nil {
		return nil, err
	}
	// The Client's order: engine, bus, then the node.
	if err := n.engine.Start(ctx); err != nil {
		return nil, fmt.Errorf("%w: %w", errNotStarted, err)
	}
	if err := n.outbox.Start(ctx); err != nil {
		n.stop()
		return nil, fmt.Errorf("%w: %w", errNotStarted, err)
	}
	if err := n.runner.Start(ctx); err != nil {
		n.stop()
		return nil, fmt.Errorf("%w: %w", errNotStarted, err)
	}
	return n, nil
}

func (n *wfNode) setInstance(id uuid.UUID) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.instance = id
}

func (n *wfNode) inst() uuid.UUID {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.instance
}

func (n *wfNode) applied1(what string) {
	n.mu.Lock()
	n.done = append(n.done, what)
	k := len(n.done)
	n.mu.Unlock()
	if k == n.crashAfter {
		n.die()
	}
}

func (n *wfNode) applied() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.done...)
}

// die is the crash's instant: from now on the engine hears nothing and the
// node starts no run.
func (n *wfNode) die() {
	n.dieOnce.Do(func() {
		n.dead.Store(true)
		close(n.died)
	})
}

// awaitCrashOrEnd waits for the crash, or for the instance to end without
// one.
func (n *wfNode) awaitCrashOrEnd(ctx context.Context, id uuid.UUID) (crashed bool, problem string) {
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for {
		select {
		case <-n.died:
			return true, ""
		case <-ctx.Done():
			return false, "the instance neither reached the crash nor finished in time"
		case <-tick.C:
		}
		in, err := n.engine.Get(ctx, id)
		if err == nil && in.Status != workflow.StatusRunning {
			select {
			case <-n.died:
				return true, ""
			default:
				return false, ""
			}
		}
	}
}

// crash makes the node's death real: declared dead, its runs' episodes
// restarted by the real sweep (which fences off what it still runs), and
// then it is gone.
func (n *wfNode) crash(ctx context.Context) string {
	var prob string
	if _, err := backend.For(n.w.o.DB).NodeDeclareDead(ctx, n.w.o.DB, n.runner.NodeID(), recovery.ReasonOwnerExpired); err != nil {
		prob = fmt.Sprintf("the crash could not be simulated: declaring the node dead: %v", err)
	}
	if _, err := recovery.Sweep(ctx, n.w.o.DB, &recovery.Options{Node: n.runner, Bus: n.outbox}); err != nil && prob == "" {
		prob = fmt.Sprintf("the sweep after the crash failed: %v", err)
	}
	n.stop()
	return prob
}

func (n *wfNode) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeoutDefault)
	defer cancel()
	_ = n.runner.StopAndCancel(ctx)
	_ = n.engine.Stop(ctx)
	_ = n.outbox.Stop(ctx)
}
