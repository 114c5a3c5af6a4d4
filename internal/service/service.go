// Package service is the lifecycle every revenant service shares (the
// runner, the Sweeper, the outbox bus and the workflow engine): the same
// verbs, Start(ctx) error and Stop(ctx) error, with the same guarantees.
//
//   - A failed Start holds nothing (no connection, no goroutine) and may be
//     called again.
//   - Stop is idempotent and safe before Start, or after a failed Start.
//   - Stop waits for the service's loops to return, bounded by its ctx; if
//     ctx ends first, Stop returns its error and the loops still end (and
//     release what they hold) in the background.
package service

import (
	"context"
	"fmt"
)

// AwaitStop waits until done is closed (the service's loops returned) or
// ctx ends. cleanup, when not nil, runs once the loops are done: before
// AwaitStop returns, or in the background if ctx ended first.
func AwaitStop(ctx context.Context, name string, done <-chan struct{}, cleanup func()) error {
	if cleanup == nil {
		cleanup = func() {}
	}
	select {
	case <-done:
		cleanup()
		return nil
	case <-ctx.Done():
		go func() { <-done; cleanup() }()
		return fmt.Errorf("stopping the %s: %w (its loops end in the background)", name, ctx.Err())
	}
}
