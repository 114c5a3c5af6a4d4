package workflow

import (
	"context"

	"github.com/revenant-go/revenant/bus"
)

// HandleEvent applies one event now, as the engine's bus subscription
// would.
func (e *Engine) HandleEvent(ctx context.Context, ev bus.Event) error { return e.handleEvent(ctx, ev) }
