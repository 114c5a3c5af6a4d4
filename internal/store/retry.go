package store

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/revenant-go/revenant/internal/dbx"
)

// RetryPolicy says whether and when a failed attempt of an episode runs
// again. The public episodes package names it episodes.RetryPolicy.
//
// An actor's error (or panic, or timeout) ends its attempt. The episode
// runs again, after a backoff, while its Attempts are below MaxAttempts
// and the policy allows it; otherwise it fails for good (the dead-letter
// list). Crash restarts count against the same MaxAttempts: a sweep that
// finds an orphan with no attempt left fails it as max_attempts_exceeded.
type RetryPolicy struct {
	// Disabled turns error retries off: the first error fails the episode.
	// Crash restarts still run up to MaxAttempts.
	Disabled bool
	// MinBackoff is the wait after the first failed attempt; each further
	// one doubles it, up to MaxBackoff, and every wait is spread by ±20%
	// jitter so that episodes failed together do not retry together.
	// Default to RetryMinBackoffDefault and RetryMaxBackoffDefault.
	MinBackoff, MaxBackoff time.Duration
	// NoRetry lists error classes that fail the episode at once. Errors
	// marked journal.Permanent (and steps that failed permanently) never
	// retry, whatever this says.
	NoRetry []string
	// Backoff, when set, replaces the exponential backoff: it returns the
	// wait after failed attempt number attempt (1 for the first). It
	// cannot be stored, so only an actor's policy may set it.
	Backoff func(attempt int) time.Duration `json:"-"`
}

// Retry defaults.
const (
	RetryMinBackoffDefault = time.Second
	RetryMaxBackoffDefault = 10 * time.Minute
	// MaxBackoffLimit bounds any wait: a day, far beyond any sane backoff.
	MaxBackoffLimit = 24 * time.Hour
)

// StepRetryPolicy is the retry_policy of a workflow step's episode: its
// errors are not retried by the episode, because the step's failure
// policy (workflow.Retry) decides, with a fresh episode per attempt. Two
// mechanisms stacked would multiply the attempts.
const StepRetryPolicy = `{"disabled":true}`

// Delay is the wait after failed attempt number attempt (1 for the
// first): Backoff's when set, else MinBackoff doubled per attempt up to
// MaxBackoff, spread by ±20% jitter. A nil policy has the defaults.
func (p *RetryPolicy) Delay(attempt int) time.Duration {
	if p != nil && p.Backoff != nil {
		return min(max(p.Backoff(attempt), 0), MaxBackoffLimit)
	}
	lo, hi := p.bounds()
	hi = max(hi, lo)
	d := lo
	for i := 1; i < attempt && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64())) //nolint:gosec // G404: jitter needs no cryptographic randomness
}

// bounds are the backoff's first wait and cap, defaults filled in.
func (p *RetryPolicy) bounds() (lo, hi time.Duration) {
	lo, hi = RetryMinBackoffDefault, RetryMaxBackoffDefault
	if p != nil && p.MinBackoff > 0 {
		lo = p.MinBackoff
	}
	if p != nil && p.MaxBackoff > 0 {
		hi = p.MaxBackoff
	}
	return lo, hi
}

// Retries reports whether a failed attempt of class may run again under
// the policy (attempts aside). A nil policy retries every class.
func (p *RetryPolicy) Retries(class string) bool {
	return p == nil || !p.Disabled && !slices.Contains(p.NoRetry, class)
}

// retryJSON is a RetryPolicy as the retry_policy column holds it.
type retryJSON struct {
	Disabled     bool     `json:"disabled,omitempty"`
	MinBackoffMS int64    `json:"min_backoff_ms,omitempty"`
	MaxBackoffMS int64    `json:"max_backoff_ms,omitempty"`
	NoRetry      []string `json:"no_retry,omitempty"`
}

// Validate checks the policy; field names the setting for messages.
func (p *RetryPolicy) Validate(field string, stored bool) error {
	if p == nil {
		return nil
	}
	if stored && p.Backoff != nil {
		return fmt.Errorf("%w: %s.Backoff is a function, which cannot be stored with an episode; set MinBackoff and MaxBackoff, or set the function on the actor's policy", dbx.ErrInvalidInput, field)
	}
	for _, d := range []struct {
		name  string
		value time.Duration
	}{{"MinBackoff", p.MinBackoff}, {"MaxBackoff", p.MaxBackoff}} {
		if d.value < 0 || d.value > MaxBackoffLimit || d.value > 0 && d.value < time.Millisecond {
			return fmt.Errorf("%w: %s.%s is %s; use 0 (the default), or 1ms up to %s", dbx.ErrInvalidInput, field, d.name, d.value, MaxBackoffLimit)
		}
	}
	if lo, hi := p.bounds(); lo > hi {
		return fmt.Errorf("%w: %s: MinBackoff (%s) exceeds MaxBackoff (%s, counting defaults: %s and %s); set both",
			dbx.ErrInvalidInput, field, lo, hi, RetryMinBackoffDefault, RetryMaxBackoffDefault)
	}
	for _, c := range p.NoRetry {
		if err := dbx.CheckName(field+".NoRetry class", c, true); err != nil {
			return err
		}
	}
	return nil
}

// EncodeRetryPolicy encodes p for the retry_policy column (nil for nil).
func EncodeRetryPolicy(p *RetryPolicy) any {
	if p == nil {
		return nil
	}
	b, _ := json.Marshal(retryJSON{Disabled: p.Disabled, MinBackoffMS: p.MinBackoff.Milliseconds(),
		MaxBackoffMS: p.MaxBackoff.Milliseconds(), NoRetry: p.NoRetry})
	return string(b)
}

func decodeRetryPolicy(b []byte) (*RetryPolicy, error) {
	if b == nil {
		return nil, nil
	}
	var j retryJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, err
	}
	return &RetryPolicy{Disabled: j.Disabled, MinBackoff: time.Duration(j.MinBackoffMS) * time.Millisecond,
		MaxBackoff: time.Duration(j.MaxBackoffMS) * time.Millisecond, NoRetry: j.NoRetry}, nil
}

// Requeue is one entry of an episode's requeue history: an operator (or
// program) put the episode back to pending.
type Requeue struct {
	// At is when, by the database clock.
	At time.Time `json:"at"`
	// By and Reason are what the requeue said about itself.
	By     string `json:"by,omitempty"`
	Reason string `json:"reason,omitempty"`
	// From is the status it left; ErrorClass and Attempts are what it had.
	From       Status `json:"from"`
	ErrorClass string `json:"error_class,omitempty"`
	Attempts   int    `json:"attempts"`
	// Clean is true when its journal was cleared for a clean start.
	Clean bool `json:"clean,omitempty"`
}

// MaxRequeueHistory bounds the entries kept per episode (oldest dropped).
const MaxRequeueHistory = 50

func decodeRequeues(b []byte) ([]Requeue, error) {
	if b == nil {
		return nil, nil
	}
	var out []struct {
		Requeue
		At string `json:"at"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, err
	}
	rs := make([]Requeue, len(out))
	for i, r := range out {
		rs[i] = r.Requeue
		t, err := parseDBTime(r.At)
		if err != nil {
			return nil, err
		}
		rs[i].At = t
	}
	return rs, nil
}

// parseDBTime reads a timestamp written into JSON by either backend.
func parseDBTime(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999-07:00", "2006-01-02 15:04:05.999999-07", "2006-01-02 15:04:05.999"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("unreadable time %q", s)
}
