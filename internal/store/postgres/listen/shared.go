package listen

import (
	"context"
	"sync"
	"time"

	"github.com/revenant-go/revenant/internal/store"
)

// One LISTEN connection per node: the runner and the outbox bus of a
// process join the same Listener when they name the same DSN, each
// receiving the notifications of its own channels (and every catch-up
// nil). The connection closes when the last of them leaves.

var hubs = struct {
	sync.Mutex
	m map[string]*hub
}{m: map[string]*hub{}}

// hub is one shared connection and the members that joined it.
type hub struct {
	dsn      string
	l        *Listener
	channels map[string]bool
	members  map[*member]bool
}

// member is one service's view of a hub. The hub never blocks on it: a
// member that lets 16 notifications pile up loses the next ones, which
// only delays it until its next poll (notifications are hints).
type member struct {
	h        *hub
	channels map[string]bool
	in       chan *store.Notification
	out      chan *store.Notification
	stop     chan struct{}
	once     sync.Once
}

// Join returns a listener on c.DSN for c.Channels, sharing the process's
// connection to that DSN if there is one (issuing LISTEN for channels it
// lacks), and starting one otherwise. It waits as Start does; a member
// that joins a settled connection does not wait.
func Join(ctx context.Context, c Config) store.Listener {
	hubs.Lock()
	h, ok := hubs.m[c.DSN]
	if !ok {
		h = &hub{dsn: c.DSN, channels: map[string]bool{}, members: map[*member]bool{}}
		h.l = start(c)
		hubs.m[c.DSN] = h
		go h.fanOut()
	}
	m := &member{h: h, channels: map[string]bool{}, in: make(chan *store.Notification, 16),
		out: make(chan *store.Notification), stop: make(chan struct{})}
	var more []string
	for _, ch := range c.Channels {
		m.channels[ch] = true
		if !h.channels[ch] {
			h.channels[ch] = true
			more = append(more, ch)
		}
	}
	h.members[m] = true
	hubs.Unlock()
	if len(more) > 0 {
		go h.l.listen(more)
	}
	go m.forward()
	h.l.wait(ctx, c.ConnectTimeout)
	return m
}

// fanOut hands each notification to the members listening on its channel,
// and a catch-up nil to all, until the connection closes.
func (h *hub) fanOut() {
	for n := range h.l.Notifications() {
		hubs.Lock()
		for m := range h.members {
			if n != nil && !m.channels[n.Channel] {
				continue
			}
			select {
			case m.in <- n:
			default:
			}
		}
		hubs.Unlock()
	}
}

func (m *member) forward() {
	defer close(m.out)
	for {
		select {
		case n := <-m.in:
			select {
			case m.out <- n:
			case <-m.stop:
				return
			}
		case <-m.stop:
			return
		}
	}
}

// Notifications implements store.Listener; it is closed after Close.
func (m *member) Notifications() <-chan *store.Notification { return m.out }

// Listening implements store.Listener.
func (m *member) Listening() bool { return m.h.l.Listening() }

// Close implements store.Listener: the member leaves; the last one closes
// the connection. It returns at once.
func (m *member) Close() {
	m.once.Do(func() {
		close(m.stop)
		hubs.Lock()
		defer hubs.Unlock()
		delete(m.h.members, m)
		if len(m.h.members) == 0 {
			if hubs.m[m.h.dsn] == m.h {
				delete(hubs.m, m.h.dsn)
			}
			m.h.l.Close()
		}
	})
}

// wait blocks until LISTEN is up, the first attempt failed, ctx ends or
// timeout passes.
func (l *Listener) wait(ctx context.Context, timeout time.Duration) {
	if timeout <= 0 {
		timeout = ConnectTimeoutDefault
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-l.settled:
	case <-ctx.Done():
	case <-t.C:
	}
}
