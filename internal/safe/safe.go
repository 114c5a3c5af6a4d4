// Package safe keeps a panic in one pass of a background loop, or in a
// user's callback, from taking the process down: it becomes an error that
// carries the stack, is logged, and the loop goes on.
package safe

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
)

// PanicError is a recovered panic.
type PanicError struct {
	Value any
	Stack string
}

func (p *PanicError) Error() string { return fmt.Sprintf("panic: %v", p.Value) }

// Call runs fn and returns its error, or a *PanicError if it panicked.
func Call(fn func() error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &PanicError{Value: v, Stack: string(debug.Stack())}
		}
	}()
	return fn()
}

// Pass runs one pass of a background loop named what. A panic is logged
// at Error level with its stack and returned as a *PanicError, so the loop
// can go on to its next pass.
func Pass(ctx context.Context, logger *slog.Logger, what string, fn func() error) error {
	err := Call(fn)
	var p *PanicError
	if errors.As(err, &p) {
		logger.ErrorContext(ctx, "revenant: a pass of a background loop panicked; the loop goes on",
			slog.String("loop", what), slog.Any("panic", p.Value), slog.String("stack", p.Stack))
	}
	return err
}
