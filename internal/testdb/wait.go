package testdb

import (
	"testing"
	"time"
)

// WaitDrained polls remaining until it reports 0. Work that moves slowly
// on a loaded machine is given time as long as it moves: the test fails
// only when remaining has not gone down for stall, or after limit in all.
func WaitDrained(t testing.TB, stall, limit time.Duration, remaining func() (int, error)) {
	t.Helper()
	start := time.Now()
	lastMove := start
	best := -1
	for {
		n, err := remaining()
		if err != nil {
			t.Fatalf("testdb.WaitDrained: %v", err)
		}
		if n == 0 {
			return
		}
		now := time.Now()
		if best < 0 || n < best {
			best, lastMove = n, now
		}
		if now.Sub(lastMove) > stall {
			t.Fatalf("testdb.WaitDrained: stuck at %d remaining for %v", n, stall)
		}
		if now.Sub(start) > limit {
			t.Fatalf("testdb.WaitDrained: %d still remaining after %v", n, limit)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
