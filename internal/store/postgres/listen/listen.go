// Package listen receives Postgres NOTIFY wake-ups for the runner and the
// outbox bus through lib/pq's reconnecting Listener, without ever blocking
// its caller: LISTEN is set up in the background, and until it is (or while
// the connection is down) the caller's polling carries on alone.
// Notifications are only hints; callers act on what the database says.
package listen

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lib/pq"

	"github.com/revenant-go/revenant/internal/dbx"
	"github.com/revenant-go/revenant/internal/store"
)

// Reconnect and ping timing.
const (
	minReconnect = 50 * time.Millisecond
	maxReconnect = 5 * time.Second
	pingEvery    = 90 * time.Second
)

// ConnectTimeoutDefault is Config.ConnectTimeout's default.
const ConnectTimeoutDefault = 5 * time.Second

// CheckDSN refuses a DSN lib/pq cannot parse, with a message that says how
// to fix it and never quotes the DSN or its password. field names the
// setting, e.g. "runner Config.ListenDSN".
func CheckDSN(field, dsn string) error {
	if _, err := pq.NewConnector(dsn); err != nil {
		hint := "use a URL (postgres://USER:PASSWORD@HOST:5432/DB?sslmode=disable) or key=value pairs (host=… user=… dbname=…)" //nolint:gosec // G101: a format hint, not a credential
		if strings.Contains(err.Error(), "escape") {
			hint = "special characters in the user name or password must be percent-encoded in a URL: write % as %25, @ as %40, : as %3A, / as %2F"
		}
		return fmt.Errorf("%w: %s does not parse as a Postgres DSN; %s", dbx.ErrInvalidInput, field, hint)
	}
	return nil
}

// Config configures Start.
type Config struct {
	// DSN is where to LISTEN; it must have passed CheckDSN.
	DSN string
	// Channels to LISTEN on.
	Channels []string
	// Owner names the service in log lines ("runner", "bus").
	Owner string
	// Logger defaults to discarding.
	Logger *slog.Logger
	// ConnectTimeout bounds each connection attempt (dial, TLS and startup,
	// as lib/pq's connect_timeout, in whole seconds) unless the DSN or
	// PGCONNECT_TIMEOUT sets one, and how long Start waits. Defaults to
	// ConnectTimeoutDefault.
	ConnectTimeout time.Duration
}

// Listener is a LISTEN connection that reconnects by itself.
type Listener struct {
	pq      *pq.Listener
	out     chan *store.Notification
	logger  *slog.Logger
	owner   string
	secrets []string
	stop    chan struct{}

	// settled is closed once LISTEN is established or the first attempt
	// to connect failed, whichever comes first.
	settled     chan struct{}
	settledOnce sync.Once

	mu        sync.Mutex
	listening bool
	down      bool // an outage was reported and has not ended
	closed    bool
}

// Start issues LISTEN in the background and waits until it is established,
// the first connection attempt fails, ctx ends or ConnectTimeout passes,
// whichever comes first: with Postgres reachable the caller listens from
// the start; otherwise it goes on polling while LISTEN is retried. LISTEN
// is re-issued after every reconnect; an outage is logged once when it
// starts (one warning, not one per attempt) and once when it ends.
func Start(ctx context.Context, c Config) *Listener {
	l := start(c)
	go l.listen(c.Channels)
	l.wait(ctx, c.ConnectTimeout)
	return l
}

// start connects in the background; the caller issues LISTEN.
func start(c Config) *Listener {
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = ConnectTimeoutDefault
	}
	dsn := withConnectTimeout(c.DSN, c.ConnectTimeout)
	l := &Listener{logger: c.Logger, owner: c.Owner, secrets: secretsOf(c.DSN, dsn), stop: make(chan struct{}), settled: make(chan struct{})}
	if l.logger == nil {
		l.logger = dbx.DiscardLogger()
	}
	p := pq.NewDialListener(dialer{c.ConnectTimeout}, dsn, minReconnect, maxReconnect, l.event)
	l.mu.Lock() // event reads it, from lib/pq's goroutine
	l.pq = p
	l.mu.Unlock()
	l.out = make(chan *store.Notification, 16)
	go l.forward(p.Notify)
	go l.ping()
	return l
}

// withConnectTimeout sets lib/pq's connect_timeout when neither the DSN nor
// the environment does: without one, a server that accepts the connection
// and never answers holds the attempt, Close and every retry forever.
func withConnectTimeout(dsn string, d time.Duration) string {
	cfg, err := pq.NewConfig(dsn)
	if err != nil || cfg.ConnectTimeout > 0 {
		return dsn
	}
	secs := strconv.FormatInt(int64((d+time.Second-1)/time.Second), 10)
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return dsn
		}
		q := u.Query()
		q.Set("connect_timeout", secs)
		u.RawQuery = q.Encode()
		return u.String()
	}
	// In front: a trailing "key=" would take a value appended after it.
	return "connect_timeout=" + secs + " " + dsn
}

func (l *Listener) settle() { l.settledOnce.Do(func() { close(l.settled) }) }

// Notifications delivers notifications, and a nil after each reconnect
// (some may have been missed: catch up). It is closed after Close.
func (l *Listener) Notifications() <-chan *store.Notification { return l.out }

// forward hands lib/pq's notifications on as the store's type until lib/pq
// closes its channel. After Close nobody reads them: they are dropped, so
// lib/pq's goroutine (which blocks while nobody reads) can finish.
func (l *Listener) forward(in <-chan *pq.Notification) {
	defer close(l.out)
	for n := range in {
		var out *store.Notification
		if n != nil {
			out = &store.Notification{Channel: n.Channel, Payload: n.Extra}
		}
		select {
		case l.out <- out:
		case <-l.stop:
		}
	}
}

// Listening reports whether LISTEN is established now.
func (l *Listener) Listening() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.listening && !l.down
}

// Close stops listening and returns at once, even while a connection
// attempt is under way (lib/pq finishes it in the background, within
// ConnectTimeout).
func (l *Listener) Close() {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	l.mu.Unlock()
	close(l.stop)
	// forward drops what lib/pq still sends, until it closes its channel.
	go func() { _ = l.pq.Close() }()
}

// listen issues LISTEN for each channel; lib/pq waits for a connection and
// re-issues them after reconnects.
func (l *Listener) listen(channels []string) {
	for _, ch := range channels {
		err := l.pq.Listen(ch)
		switch {
		case err == nil, errors.Is(err, pq.ErrChannelAlreadyOpen):
		case errors.Is(err, net.ErrClosed):
			return
		default:
			l.logger.Warn("revenant: LISTEN refused; polling only", slog.String("service", l.owner),
				slog.String("channel", ch), slog.String("error", l.scrub(err.Error())))
			l.settle()
			return
		}
	}
	l.mu.Lock()
	l.listening = true
	l.mu.Unlock()
	l.settle()
}

// ping keeps an idle LISTEN connection's liveness checked, so that a dead
// one is noticed and replaced.
func (l *Listener) ping() {
	t := time.NewTicker(pingEvery)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			_ = l.pq.Ping()
		}
	}
}

// event turns lib/pq's connection events into one warning per outage and
// one line when it ends.
func (l *Listener) event(ev pq.ListenerEventType, err error) {
	if notify := l.eventLocked(ev, err); notify != nil {
		// lib/pq sends a nil after a reconnect but not after a first
		// connection that followed failed attempts; send it, so that the
		// caller catches up on what it missed meanwhile. Not blocking: a
		// full channel wakes the caller anyway. This runs on lib/pq's
		// sending goroutine, so Notify is not closed under it.
		select {
		case notify <- nil:
		default:
		}
	}
}

// eventLocked logs ev and returns the channel to send a catch-up nil on, if
// one is due.
func (l *Listener) eventLocked(ev pq.ListenerEventType, err error) chan<- *pq.Notification {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	switch ev {
	case pq.ListenerEventConnectionAttemptFailed, pq.ListenerEventDisconnected:
		l.settle()
		if !l.down {
			l.down = true
			msg := "connection lost"
			if err != nil {
				msg = l.scrub(err.Error())
			}
			l.logger.Warn("revenant: LISTEN connection unavailable; polling until it is back (retrying in the background)",
				slog.String("service", l.owner), slog.String("error", msg))
		}
	case pq.ListenerEventConnected, pq.ListenerEventReconnected:
		if l.down {
			l.down = false
			l.logger.Info("revenant: LISTEN connection established", slog.String("service", l.owner))
			if ev == pq.ListenerEventConnected && l.pq != nil {
				return l.pq.Notify
			}
		}
	}
	return nil
}

// scrub removes the DSN and its password from driver error text.
func (l *Listener) scrub(s string) string {
	for _, secret := range l.secrets {
		if secret != "" {
			s = strings.ReplaceAll(s, secret, "xxxxx")
		}
	}
	return s
}

// secretsOf returns the DSNs and the password they carry, as written and
// as decoded.
func secretsOf(dsns ...string) []string {
	out := append([]string(nil), dsns...)
	for _, dsn := range dsns {
		if cfg, err := pq.NewConfig(dsn); err == nil && cfg.Password != "" {
			out = append(out, cfg.Password, url.QueryEscape(cfg.Password), url.PathEscape(cfg.Password))
		}
		if u, err := url.Parse(dsn); err == nil && u.User != nil {
			if p, ok := u.User.Password(); ok {
				out = append(out, p)
			}
			if _, raw, ok := strings.Cut(u.User.String(), ":"); ok {
				out = append(out, raw)
			}
		}
	}
	// Longest first, so that a password inside a DSN does not break the
	// DSN's own replacement.
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
}

// dialer bounds connection attempts, so that Close never waits long on an
// unreachable host.
type dialer struct{ timeout time.Duration }

func (d dialer) Dial(network, address string) (net.Conn, error) {
	return net.DialTimeout(network, address, d.timeout)
}

func (d dialer) DialTimeout(network, address string, timeout time.Duration) (net.Conn, error) {
	return net.DialTimeout(network, address, min(timeout, d.timeout))
}
