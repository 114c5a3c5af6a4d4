// Package notify receives Postgres NOTIFY wake-ups for the runner and the
// outbox bus through lib/pq's reconnecting Listener, without ever blocking
// its caller: LISTEN is set up in the background, and until it is (or while
// the connection is down) the caller's polling carries on alone.
// Notifications are only hints; callers act on what the database says.
package notify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/lib/pq"

	"github.com/revenant-go/revenant/internal/dbx"
)

// Reconnect and ping timing.
const (
	minReconnect = 50 * time.Millisecond
	maxReconnect = 5 * time.Second
	dialTimeout  = 5 * time.Second
	pingEvery    = 90 * time.Second
)

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
	Owner  string
	Logger *slog.Logger
}

// Listener is a LISTEN connection that reconnects by itself.
type Listener struct {
	pq      *pq.Listener
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
// the first connection attempt fails, or ctx ends, whichever comes first:
// with Postgres reachable the caller listens from the start; otherwise it
// goes on polling at once while LISTEN is retried. LISTEN is re-issued
// after every reconnect; an outage is logged once when it starts (one
// warning, not one per attempt) and once when it ends.
func Start(ctx context.Context, c Config) *Listener {
	l := &Listener{logger: c.Logger, owner: c.Owner, secrets: secretsOf(c.DSN), stop: make(chan struct{}), settled: make(chan struct{})}
	if l.logger == nil {
		l.logger = dbx.DiscardLogger()
	}
	l.pq = pq.NewDialListener(dialer{}, c.DSN, minReconnect, maxReconnect, l.event)
	go l.listen(c.Channels)
	go l.ping()
	select {
	case <-l.settled:
	case <-ctx.Done():
	}
	return l
}

func (l *Listener) settle() { l.settledOnce.Do(func() { close(l.settled) }) }

// Notifications delivers notifications, and a nil after each reconnect
// (some may have been missed: catch up).
func (l *Listener) Notifications() <-chan *pq.Notification { return l.pq.Notify }

// Listening reports whether LISTEN is established now.
func (l *Listener) Listening() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.listening && !l.down
}

// Close stops listening and returns at once, even while a connection
// attempt is under way (lib/pq finishes it in the background, bounded by
// the dial timeout).
func (l *Listener) Close() {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	l.mu.Unlock()
	close(l.stop)
	go func() {
		_ = l.pq.Close()
		// lib/pq blocks sending to Notify while nobody reads; drain it
		// until its goroutine closes the channel.
		for range l.pq.Notify { //nolint:revive // draining on purpose
		}
	}()
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
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
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
		}
	}
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

// secretsOf returns the DSN and its password (URL or key=value form).
func secretsOf(dsn string) []string {
	out := []string{dsn}
	if u, err := url.Parse(dsn); err == nil && u.User != nil {
		if p, ok := u.User.Password(); ok {
			out = append(out, p, url.QueryEscape(p), url.PathEscape(p))
		}
	}
	for _, field := range strings.Fields(dsn) {
		if p, ok := strings.CutPrefix(field, "password="); ok {
			out = append(out, strings.Trim(p, "'"))
		}
	}
	return out
}

// dialer bounds connection attempts, so that Close never waits long on an
// unreachable host.
type dialer struct{}

func (dialer) Dial(network, address string) (net.Conn, error) {
	return net.DialTimeout(network, address, dialTimeout)
}

func (dialer) DialTimeout(network, address string, timeout time.Duration) (net.Conn, error) {
	return net.DialTimeout(network, address, min(timeout, dialTimeout))
}
