package revenanttest

import (
	"context"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/revenant-go/revenant"
	"github.com/revenant-go/revenant/runner"
	"github.com/revenant-go/revenant/workflow"
)

// Fast timings for test nodes. A node's liveness matters to the kit only
// through crashes it declares itself, so the TTL is long enough that a
// heartbeat late on a loaded machine never looks like a death.
const (
	// HeartbeatIntervalDefault is the test node's heartbeat: the smallest
	// the runner accepts, so that a simulated crash is noticed at once.
	HeartbeatIntervalDefault = 10 * time.Millisecond
	// NodeTTLDefault is the test node's liveness without a heartbeat.
	NodeTTLDefault = 5 * time.Second
	// PollIntervalDefault is how often the test node looks for work.
	PollIntervalDefault = 10 * time.Millisecond
	// ShutdownTimeoutDefault bounds the node's stop at the end of a test.
	ShutdownTimeoutDefault = 10 * time.Second
	// TimeoutDefault bounds each wait of the kit: an episode to finish, a
	// crash to be noticed, a sweep to restart.
	TimeoutDefault = 30 * time.Second
)

// ClientOptions configures Client. A nil *ClientOptions is valid.
type ClientOptions struct {
	// Config is the client's configuration; its zero timing fields get the
	// kit's fast ones (HeartbeatIntervalDefault, NodeTTLDefault,
	// PollIntervalDefault, ShutdownTimeoutDefault). Defaults to a node
	// named "revenanttest" with no stack and no env.
	Config *revenant.Config
	// Actors are registered before Start. Defaults to none.
	Actors []runner.Actor
	// Workflows are registered before Start. Defaults to none.
	Workflows []workflow.Definition
}

// Client returns a started client (one node) on db with fast timings and
// opts' actors and workflows, stopped when the test ends.
func Client(t TB, db *sqlx.DB, opts *ClientOptions) *revenant.Client {
	t.Helper()
	if opts == nil {
		opts = &ClientOptions{}
	}
	cfg := fastConfig(opts.Config)
	c, err := revenant.New(db, cfg)
	if err != nil {
		t.Fatalf("revenanttest: creating the client: %v", err)
	}
	for _, a := range opts.Actors {
		if err := c.Register(a); err != nil {
			t.Fatalf("revenanttest: registering actor %q: %v", a.ID, err)
		}
	}
	for _, w := range opts.Workflows {
		if err := c.RegisterWorkflow(w); err != nil {
			t.Fatalf("revenanttest: registering workflow %q: %v", w.ID, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), TimeoutDefault)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		t.Fatalf("revenanttest: starting the client: %v", err)
	}
	t.Cleanup(func() { stopClient(t, c) })
	return c
}

func stopClient(t TB, c *revenant.Client) {
	ctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeoutDefault)
	defer cancel()
	if err := c.StopAndCancel(ctx); err != nil {
		t.Logf("revenanttest: stopping the client: %v", err)
	}
}

// fastConfig copies cfg (or a default) with the kit's timings where unset.
func fastConfig(cfg *revenant.Config) *revenant.Config {
	out := revenant.Config{Name: "revenanttest"}
	if cfg != nil {
		out = *cfg
	}
	if out.HeartbeatInterval == 0 {
		out.HeartbeatInterval = HeartbeatIntervalDefault
	}
	if out.NodeTTL == 0 {
		out.NodeTTL = NodeTTLDefault
	}
	if out.PollInterval == 0 {
		out.PollInterval = PollIntervalDefault
	}
	if out.ShutdownTimeout == 0 {
		out.ShutdownTimeout = ShutdownTimeoutDefault
	}
	return &out
}
