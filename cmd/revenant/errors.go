package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/revenant-go/revenant"
)

// The exit codes, documented in the package comment and the root --help.
const (
	exitOK         = 0
	exitError      = 1
	exitUsage      = 2
	exitNotFound   = 3
	exitDeclined   = 4
	exitAttention  = 5
	exitNotApplied = 6
)

// exitErr carries the exit code of a failed command. A nil err is a
// silent exit: the command already said everything on stdout.
type exitErr struct {
	code int
	err  error
}

func (e *exitErr) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitErr) Unwrap() error { return e.err }

// usagef is a usage error (exit 2): the message says how to fix the call.
func usagef(format string, args ...any) error {
	return &exitErr{code: exitUsage, err: fmt.Errorf(format, args...)}
}

// withCode gives err an exit code.
func withCode(code int, err error) error {
	if err == nil {
		return nil
	}
	return &exitErr{code: code, err: err}
}

// silent ends the command with code and no further message.
func silent(code int) error { return &exitErr{code: code} }

// exitCode maps an error to the process's exit code: an explicit code
// wins; revenant's sentinels map not found to 3 and invalid input to 2;
// anything else (database, I/O) is 1.
func exitCode(err error) int {
	var e *exitErr
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &e):
		return e.code
	case errors.Is(err, revenant.ErrNotFound):
		return exitNotFound
	case errors.Is(err, revenant.ErrInvalidInput):
		return exitUsage
	}
	return exitError
}

// message is what the CLI prints for err on stderr ("" for a silent
// exit), with a hint for the errors an operator can fix at once.
func message(err error, timeoutHint string) string {
	var e *exitErr
	if errors.As(err, &e) && e.err == nil {
		return ""
	}
	msg := err.Error()
	switch {
	case errors.Is(err, revenant.ErrNotMigrated):
		msg += " (run 'revenant migrate up', or migrate with your own tool)"
	case errors.Is(err, context.DeadlineExceeded):
		msg += " (" + timeoutHint + ")"
	}
	return msg
}
