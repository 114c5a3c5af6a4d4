package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// confirm asks before a destructive command does what: nil means go on.
// --yes confirms; on a terminal the operator answers "… [y/N]" (on
// stderr, so that stdout stays the command's output); anywhere else the
// command is refused, as no one can answer.
func (a *app) confirm(what string) error {
	if a.yes {
		return nil
	}
	if !isTerminal(a.stdin) {
		return withCode(exitDeclined, fmt.Errorf("not confirmed: refusing to %s: stdin is not a terminal to ask on; pass --yes to confirm", what))
	}
	_, _ = fmt.Fprintf(a.stderr, "About to %s. Go ahead? [y/N] ", what)
	line, err := bufio.NewReader(a.stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("reading the answer: %w", err)
	}
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return nil
	}
	return withCode(exitDeclined, errors.New("declined: nothing was changed"))
}

// isTerminal reports whether r is an interactive terminal: a character
// device other than the null device (which is one too, but no one types
// into it).
func isTerminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	if err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		return false
	}
	if null, err := os.Stat(os.DevNull); err == nil && os.SameFile(fi, null) {
		return false
	}
	return true
}
