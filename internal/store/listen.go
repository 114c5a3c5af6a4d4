package store

import "log/slog"

// Notification is a NOTIFY received. A nil *Notification means the
// listener (re)connected: some may have been missed, so catch up.
// Notifications are only hints; act on what the database says.
type Notification struct {
	Channel, Payload string
}

// ListenConfig configures Store.Listen.
type ListenConfig struct {
	// DSN is where to LISTEN; it must have passed CheckListenDSN.
	DSN string
	// Channels to LISTEN on.
	Channels []string
	// Owner names the service in log lines ("runner", "bus").
	Owner string
	// Logger defaults to discarding.
	Logger *slog.Logger
}

// Listener is a LISTEN connection that reconnects by itself and never
// blocks its owner: until it is up (or while it is down) the owner polls.
type Listener interface {
	// Notifications delivers notifications, and a nil after each
	// (re)connect. It is closed after Close.
	Notifications() <-chan *Notification
	// Listening reports whether LISTEN is established now.
	Listening() bool
	// Close stops listening and returns at once.
	Close()
}
