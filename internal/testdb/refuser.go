package testdb

import (
	"net"
	"sync/atomic"
	"testing"
)

// Refuser is a TCP server that accepts connections and closes them at
// once: a Postgres that is unreachable in a way tests can count.
type Refuser struct {
	Addr     string
	attempts atomic.Int64
}

// NewRefuser starts one on a free loopback port, closed when the test ends.
func NewRefuser(t testing.TB) *Refuser {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testdb: refuser: %v", err)
	}
	r := &Refuser{Addr: ln.Addr().String()}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			r.attempts.Add(1)
			_ = c.Close()
		}
	}()
	t.Cleanup(func() { _ = ln.Close() })
	return r
}

// Attempts is how many connections were made to it.
func (r *Refuser) Attempts() int64 { return r.attempts.Load() }
