package ops

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/google/uuid"

	"github.com/revenant-go/revenant/inspect"
	"github.com/revenant-go/revenant/recovery"
)

// Defaults of Config.
const (
	// ReadyTimeoutDefault bounds one /readyz check: a probe must answer
	// well within the kubelet's timeoutSeconds (1 s by default there, so
	// set timeoutSeconds to 3).
	ReadyTimeoutDefault = 2 * time.Second
	// PageTimeoutDefault bounds the database work of one page or action.
	PageTimeoutDefault = 10 * time.Second
	// PageSizeDefault is how many episodes a list page shows.
	PageSizeDefault = 50
	// PageSizeMax bounds PageSize.
	PageSizeMax = 1000
	// StuckLimitDefault is how many stuck episodes the overview explains.
	StuckLimitDefault = 50
	// OperatorDefault names who acted when Config.Operator is unset.
	OperatorDefault = "dashboard"
	// TitleDefault heads every page when Config.Title is unset.
	TitleDefault = "revenant"
)

// Config configures a Handler. A nil *Config is valid.
type Config struct {
	// Actions enables the dashboard's buttons (requeue, cancel,
	// resume/cancel workflow, open/close breaker), each a POST carrying a
	// CSRF token. Defaults to false: read-only.
	Actions bool
	// ShowData shows episode inputs, results and metadata, and step
	// outputs (they may hold personal data). Defaults to false: only their
	// sizes are shown.
	ShowData bool
	// Metrics is served at /metrics (e.g. the metrics package's handler).
	// Defaults to none: /metrics answers 404.
	Metrics http.Handler
	// Logger receives a line per page that failed (a database error) and
	// per action taken. It never receives a DSN or a payload. Defaults to
	// discarding.
	Logger *slog.Logger

	// ReadyTimeout bounds each /readyz check; past it the node is
	// reported not ready. Defaults to ReadyTimeoutDefault.
	ReadyTimeout time.Duration
	// PageTimeout bounds the database work of one page or action.
	// Defaults to PageTimeoutDefault.
	PageTimeout time.Duration
	// PageSize is how many rows the episode, dead-letter and workflow
	// lists show per page (at most PageSizeMax). Defaults to
	// PageSizeDefault.
	PageSize int
	// StuckLimit is how many stuck episodes the overview lists with
	// their explanations (each costs a few queries); the recovery page
	// lists every orphan. Defaults to StuckLimitDefault.
	StuckLimit int
	// Refresh reloads the pages that hold no form (no buttons: the
	// read-only dashboard, or pages without actions) this often.
	// Defaults to 0: no automatic reload.
	Refresh time.Duration
	// Operator names who takes an action, recorded in the requeue
	// history (episodes.RequeueOptions.By) and in cancel and breaker
	// reasons: for example the user your authentication middleware put
	// in the request's context. Defaults to OperatorDefault.
	Operator func(r *http.Request) string
	// TrustedOrigins are origins ("https://admin.example.com") whose
	// cross-origin POSTs are accepted, for a dashboard embedded in
	// another site of yours. Same-origin requests are always accepted.
	// Defaults to none.
	TrustedOrigins []string
	// Title heads every page, e.g. "revenant · shop prod". Defaults to
	// TitleDefault.
	Title string
	// Sweep is the sweep whose plans the dashboard shows (the overview's
	// stuck episodes, the recovery dry run, each episode's explanation).
	// Set it when the client is an admin handle that is no node and the
	// sweeps that matter cover other scopes: the revenant CLI's dashboard
	// shows its own 'revenant sweep', of every stack and env, so that the
	// page and the command give one answer. Defaults to nil: the client's
	// own sweep (Client.Sweep and Client.Explain: its stack and env, its
	// registered policies).
	Sweep *Sweep
}

// Sweep is a sweep the dashboard describes in place of the client's own
// (Config.Sweep). Every field is required.
type Sweep struct {
	// Scope says which episodes the sweep covers, for people: "every
	// stack and env".
	Scope string
	// DryRun reports what the sweep would do now, changing nothing
	// (recovery.Sweep with Options.DryRun).
	DryRun func(ctx context.Context) (*recovery.Result, error)
	// Explain explains one episode as that sweep sees it (its Plan is
	// the sweep's: inspect.Inspector.Explain with the sweep's options).
	Explain func(ctx context.Context, id uuid.UUID) (*inspect.Explanation, error)
}

// withDefaults returns a copy of c (nil valid) with defaults filled in.
func (c *Config) withDefaults() Config {
	var out Config
	if c != nil {
		out = *c
	}
	if out.ReadyTimeout == 0 {
		out.ReadyTimeout = ReadyTimeoutDefault
	}
	if out.PageTimeout == 0 {
		out.PageTimeout = PageTimeoutDefault
	}
	if out.PageSize == 0 {
		out.PageSize = PageSizeDefault
	}
	if out.StuckLimit == 0 {
		out.StuckLimit = StuckLimitDefault
	}
	if out.Title == "" {
		out.Title = TitleDefault
	}
	if out.Operator == nil {
		out.Operator = func(*http.Request) string { return OperatorDefault }
	}
	if out.Logger == nil {
		out.Logger = slog.New(slog.DiscardHandler)
	}
	return out
}

// validate reports every setting that cannot work, saying how to fix it.
func (c *Config) validate() error {
	if c == nil {
		return nil
	}
	var errs []error
	if c.ReadyTimeout < 0 {
		errs = append(errs, fmt.Errorf("Config.ReadyTimeout is %v; set a positive duration, or 0 for the default (%v)", c.ReadyTimeout, ReadyTimeoutDefault))
	}
	if c.PageTimeout < 0 {
		errs = append(errs, fmt.Errorf("Config.PageTimeout is %v; set a positive duration, or 0 for the default (%v)", c.PageTimeout, PageTimeoutDefault))
	}
	if c.PageSize < 0 || c.PageSize > PageSizeMax {
		errs = append(errs, fmt.Errorf("Config.PageSize is %d; set 1 to %d, or 0 for the default (%d)", c.PageSize, PageSizeMax, PageSizeDefault))
	}
	if c.StuckLimit < 0 {
		errs = append(errs, fmt.Errorf("Config.StuckLimit is %d; set a positive number, or 0 for the default (%d)", c.StuckLimit, StuckLimitDefault))
	}
	if c.Refresh < 0 || c.Refresh > 0 && c.Refresh < time.Second {
		errs = append(errs, fmt.Errorf("Config.Refresh is %v; set at least 1s, or 0 for no automatic reload", c.Refresh))
	}
	if s := c.Sweep; s != nil && (s.Scope == "" || s.DryRun == nil || s.Explain == nil) {
		errs = append(errs, errors.New("Config.Sweep lacks its Scope, DryRun or Explain; set all three, or leave Sweep nil for the client's own sweep"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("ops: invalid Config: %w", err)
	}
	return nil
}
