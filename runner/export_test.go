package runner

import "context"

// Heartbeat runs one heartbeat now, for tests that must not wait for the
// loop.
func (r *Runner) Heartbeat(ctx context.Context) error { return r.heartbeat(ctx) }
