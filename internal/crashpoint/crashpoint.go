// Package crashpoint lets a test stop an episode run at a step boundary: the
// journal fires a hook, carried in the run's context, right before a step's
// entry is written and right after it is recorded. Package revenanttest uses
// it to crash actors at every boundary; without a hook, Fire costs one
// context lookup.
package crashpoint

import "context"

// Point is a step boundary.
type Point int

const (
	// BeforeRecord is reached when the step's function returned (its
	// effect is done) and its journal entry is not written yet. For
	// journal.StepTx the hook runs inside the step's transaction, before
	// the journal insert and the commit, so a crash there rolls the effect
	// back with it.
	BeforeRecord Point = iota + 1
	// AfterRecord is reached once the step's entry is committed.
	AfterRecord
)

// String names the point for messages.
func (p Point) String() string {
	switch p {
	case BeforeRecord:
		return "before-record"
	case AfterRecord:
		return "after-record"
	default:
		return "unknown"
	}
}

// Hook is called at each boundary with the step's sequence number and name.
// It may block, or panic to end the run there.
type Hook func(p Point, seq int, name string)

type hookKey struct{}

// With returns ctx carrying h; Fire calls it.
func With(ctx context.Context, h Hook) context.Context {
	return context.WithValue(ctx, hookKey{}, h)
}

// Fire calls the hook ctx carries, if any.
func Fire(ctx context.Context, p Point, seq int, name string) {
	if h, ok := ctx.Value(hookKey{}).(Hook); ok && h != nil {
		h(p, seq, name)
	}
}
