package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/spf13/cobra"

	"github.com/revenant-go/revenant/ops"
)

// Defaults of the ui command.
const (
	// UIAddrDefault is where the dashboard listens: loopback only.
	UIAddrDefault = "127.0.0.1:8080"
	// UIShutdownTimeout bounds the wait for requests in flight at Ctrl-C.
	UIShutdownTimeout = 10 * time.Second
	// uiReadHeaderTimeout guards against slow-header clients.
	uiReadHeaderTimeout = 10 * time.Second
)

type uiJSON struct {
	URL      string `json:"url"`
	Actions  bool   `json:"actions"`
	ShowData bool   `json:"show_data"`
}

func (a *app) uiCommand() *cobra.Command {
	var addr string
	var actions, showData, public bool
	c := &cobra.Command{
		Use:   "ui [--addr 127.0.0.1:8080] [--actions] [--show-data]",
		Short: "Serve the dashboard (read-only by default) until Ctrl-C",
		Long: `Serve the web dashboard on --addr: the overview (nodes, backlog, stuck
episodes explained, breakers), the recovery dry run, episodes, dead letters and
workflows, plus /healthz and /readyz (which answers 503: the CLI is not a node).
Its stuck episodes, explanations and recovery dry run are those of 'revenant
status', 'episodes explain' and 'sweep --dry-run': every stack and env unless
--stack or --env.

It is read-only unless --actions (requeue, cancel, resume or cancel a workflow,
open or close a breaker: each a POST with a CSRF token), and shows inputs,
results and step outputs only with --show-data.

The dashboard has no built-in authentication: it listens on loopback only, and
refuses any other address unless --public (then put your own authentication in
front of it). Ctrl-C (SIGINT) or SIGTERM stops it gracefully.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			host, _, err := net.SplitHostPort(addr)
			if err != nil {
				return usagef("--addr must be host:port, e.g. 127.0.0.1:8080 (%v)", err)
			}
			if !public && !isLoopback(host) {
				return usagef("refusing to serve the dashboard on %s: it has no built-in authentication, so anyone who can reach that address could read it (and, with --actions, act); use a loopback address (127.0.0.1, ::1, localhost), or pass --public with your own authentication in front of it", addr)
			}
			startCtx, cancel := a.timed(cmd.Context(), 0)
			defer cancel()
			client, err := a.admin(startCtx)
			if err != nil {
				return err
			}
			// The pages plan as 'revenant sweep' and 'revenant status' do
			// (every scope unless --stack or --env), not as the admin
			// client's own sweep, which would cover only its empty scope.
			h, err := ops.New(client, &ops.Config{Actions: actions, ShowData: showData, Logger: a.logger,
				Operator: func(*http.Request) string { return operator() },
				Sweep:    &ops.Sweep{Scope: a.scopeText(), DryRun: a.dryRun, Explain: a.explain}})
			if err != nil {
				return fmt.Errorf("building the dashboard: %w", err)
			}
			var lc net.ListenConfig
			ln, err := lc.Listen(startCtx, "tcp", addr)
			if err != nil {
				return fmt.Errorf("listening on %s: %w", addr, err)
			}
			return a.serve(cmd.Context(), ln, h, uiJSON{URL: "http://" + ln.Addr().String() + "/", Actions: actions, ShowData: showData})
		},
	}
	f := c.Flags()
	f.StringVar(&addr, "addr", UIAddrDefault, "host:port to listen on (loopback unless --public)")
	f.BoolVar(&actions, "actions", false, "enable the buttons that change things (requeue, cancel, resume, breakers)")
	f.BoolVar(&showData, "show-data", false, "show episode inputs, results, metadata and step outputs (may hold personal data)")
	f.BoolVar(&public, "public", false, "allow a non-loopback --addr (the dashboard has no authentication of its own)")
	return c
}

// serve runs the dashboard on ln until ctx ends (a signal), then shuts
// down gracefully.
func (a *app) serve(ctx context.Context, ln net.Listener, h http.Handler, info uiJSON) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: uiReadHeaderTimeout}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	mode := "read-only"
	if info.Actions {
		mode = "actions enabled"
	}
	if a.jsonOut {
		if err := a.printJSON(info); err != nil {
			_ = srv.Close()
			return err
		}
	} else {
		_, _ = fmt.Fprintf(a.stdout, "revenant dashboard (%s) at %s (Ctrl-C stops)\n", mode, info.URL)
	}
	select {
	case err := <-done:
		return fmt.Errorf("serving the dashboard: %w", err)
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.WithoutCancel(ctx), UIShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil {
		return fmt.Errorf("stopping the dashboard: %w", err)
	}
	if err := <-done; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serving the dashboard: %w", err)
	}
	if !a.jsonOut {
		_, _ = fmt.Fprintln(a.stdout, "stopped")
	}
	return nil
}

// isLoopback reports whether host names only this machine.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
