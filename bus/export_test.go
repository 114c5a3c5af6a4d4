package bus

import "context"

// CatchUp reads the outbox now, for tests that must not wait for the loop.
func (b *Outbox) CatchUp(ctx context.Context) error { return b.catchUp(ctx) }
