package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/spf13/cobra"

	"github.com/revenant-go/revenant"
)

// TimeoutDefault bounds each command's database work (--timeout).
const TimeoutDefault = 30 * time.Second

// app is one invocation: its global flags, its streams, and the database
// it opened (closed when the command returns).
type app struct {
	databaseURL string
	jsonOut     bool
	yes         bool
	stack, env  string
	// stackSet and envSet are true when --stack or --env was given:
	// commands that read or sweep across scopes then keep to that one.
	stackSet, envSet bool
	timeout          time.Duration
	verbose          bool

	stdin          io.Reader
	stdout, stderr io.Writer

	logger *slog.Logger
	db     *sqlx.DB
	client *revenant.Client
}

// run executes the command line args and returns the exit code.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// The first signal cancels the command (ui shuts down gracefully); a
	// second one kills the process, even one stuck in a driver that does
	// not heed its context (lib/pq connecting to a server that never
	// answers).
	context.AfterFunc(ctx, stop)
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr}
	root := a.rootCommand()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if cerr := a.close(); cerr != nil && err == nil {
		err = fmt.Errorf("closing the database: %w", cerr)
	}
	if err != nil {
		if msg := message(err, fmt.Sprintf("the command ran past --timeout %s; raise it", a.timeout)); msg != "" {
			_, _ = fmt.Fprintf(stderr, "revenant: %s\n", msg)
		}
		if exitCode(err) == exitUsage && cmd != nil {
			_, _ = fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
		}
	}
	return exitCode(err)
}

const rootLong = `revenant is the operator's command line for a revenant database.

The three questions:
  revenant status                   what is stuck? (exit 5 when something needs attention)
  revenant episodes explain ID      why is this episode in its state, and what happens next?
  revenant sweep --dry-run          what will recovery do? (the real 'revenant sweep' does exactly that)

Connecting:
  --database-url or DATABASE_URL: postgres://… or postgresql://… (lib/pq), or a
  SQLite file as sqlite:PATH, sqlite://PATH or a path ending in .db, .sqlite or
  .sqlite3. Put the schema in the URL's search_path when revenant's tables are not
  in the default one. The URL is never printed.

The CLI is not a node: it claims nothing and registers nothing. Commands that
read or sweep cover every stack and env unless --stack or --env is given.
Destructive commands ask for confirmation on a terminal; elsewhere pass --yes.
--json prints one JSON document (snake_case keys, durations in milliseconds as
*_ms, times in RFC 3339); inputs, results and step outputs appear only with
--data where a command offers it.

Exit codes:
  0  success
  1  error (database, I/O)
  2  usage error
  3  not found (episode, workflow instance, actor definition)
  4  declined or unconfirmed (destructive command without --yes when stdin is not a terminal, or answered no)
  5  status found something needing attention (dead nodes owning episodes, unclaimable backlog,
     exhausted episodes, open breakers, a failed last sweep)
  6  a workflow request was not applied by a live node within --wait`

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "revenant",
		Short:         "Operate a revenant database: status, episodes, sweeps, workflows, breakers",
		Long:          rootLong,
		Version:       version(),
		SilenceErrors: true,
		SilenceUsage:  true,
		Args:          unknownCommand,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_ = cmd.Usage()
			return usagef("no command given")
		},
		PersistentPreRunE:          func(cmd *cobra.Command, _ []string) error { return a.setup(cmd) },
		SuggestionsMinimumDistance: 2,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return withCode(exitUsage, err) })
	f := root.PersistentFlags()
	f.StringVar(&a.databaseURL, "database-url", "", "database to operate (default $DATABASE_URL): postgres://…, sqlite:PATH, or a .db/.sqlite/.sqlite3 path")
	f.BoolVar(&a.jsonOut, "json", false, "print one JSON document instead of tables")
	f.BoolVarP(&a.yes, "yes", "y", false, "confirm destructive commands without asking")
	f.StringVar(&a.stack, "stack", "", "keep to this stack (default: every stack)")
	f.StringVar(&a.env, "env", "", "keep to this env (default: every env)")
	f.DurationVar(&a.timeout, "timeout", TimeoutDefault, "bound on each command's database work")
	f.BoolVarP(&a.verbose, "verbose", "v", false, "log revenant's diagnostics to stderr")
	root.AddCommand(
		a.migrateCommand(),
		a.statusCommand(),
		a.nodesCommand(),
		a.episodesCommand(),
		a.requeueCommand(),
		a.cancelCommand(),
		a.deadLettersCommand(),
		a.sweepCommand(),
		a.actorsCommand(),
		a.workflowsCommand(),
		a.breakersCommand(),
		a.uiCommand(),
	)
	return root
}

// setup validates the global flags before any command runs.
func (a *app) setup(cmd *cobra.Command) error {
	if a.timeout <= 0 {
		return usagef("--timeout must be positive (e.g. --timeout 30s)")
	}
	flags := cmd.Flags()
	a.stackSet, a.envSet = flags.Changed("stack"), flags.Changed("env")
	a.logger = slog.New(slog.DiscardHandler)
	if a.verbose {
		a.logger = slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return nil
}

// timed bounds a command's database work by --timeout (plus extra, for
// commands that also wait).
func (a *app) timed(ctx context.Context, extra time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, a.timeout+extra)
}

// group is a command that only holds subcommands.
func group(use, short string, subs ...*cobra.Command) *cobra.Command {
	names := make([]string, len(subs))
	for i, s := range subs {
		names[i] = s.Name()
	}
	c := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unknown %s subcommand %q (one of: %s)", use, args[0], strings.Join(names, ", "))
			}
			return usagef("%s needs a subcommand: %s", use, strings.Join(names, ", "))
		},
	}
	c.AddCommand(subs...)
	return c
}

// unknownCommand refuses arguments the root does not know, as a usage
// error.
func unknownCommand(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	hint := ""
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		hint = fmt.Sprintf("; did you mean %q?", s[0])
	}
	return usagef("unknown command %q%s", args[0], hint)
}

// noArgs, exactArgs and minArgs check positional arguments, as usage
// errors.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("%s takes no arguments (got %q)", cmd.CommandPath(), args[0])
	}
	return nil
}

func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usagef("%s needs %s (got %d argument(s))", cmd.CommandPath(), what, len(args))
		}
		return nil
	}
}

// version is the module version the binary was built from.
func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}
