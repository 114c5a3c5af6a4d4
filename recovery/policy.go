package recovery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/internal/dbx"
	"github.com/revenant-go/revenant/internal/store"
)

// Policy says what recovery does with an orphaned episode.
type Policy string

const (
	// Restart puts the episode back to pending for any node's runner; its
	// journal makes completed steps return their recorded outputs.
	Restart Policy = "restart"
	// Fail marks the episode failed with error class "orphaned".
	Fail Policy = "fail"
)

// ErrBadPolicy means a policy value is neither "restart" nor "fail".
var ErrBadPolicy = errors.New("revenant: malformed recovery policy")

// ParsePolicy accepts "restart" or "fail".
func ParsePolicy(s string) (Policy, error) {
	switch Policy(s) {
	case Restart, Fail:
		return Policy(s), nil
	}
	return "", fmt.Errorf("%w: %q (want %q or %q)", ErrBadPolicy, s, Restart, Fail)
}

// Valid reports whether p is Restart or Fail.
func (p Policy) Valid() bool { return p == Restart || p == Fail }

// PolicySource gives the recovery policy registered for an actor (and
// optionally one of its expectations). The runner implements it.
type PolicySource interface {
	RecoveryPolicy(actorID, expectation string) (Policy, bool)
}

// Node is the running node a sweep acts for: it supplies the default scope
// (stack and env) and the actor registry. *runner.Runner implements it.
type Node interface {
	PolicySource
	NodeID() string
	Stack() string
	Env() string
}

// Where a policy came from, as reported in plans and error details.
const (
	SourceCallback    = "callback"
	SourceRegistry    = "registry"
	SourceDefinitions = "agent_definitions"
	SourceDefault     = "default"
)

type pairKey struct{ actor, expectation string }

type resolved struct {
	policy Policy
	source string
	err    error
}

type agentDef struct {
	policy       *string
	expectations map[string]json.RawMessage
	enabled      bool
	decodeErr    error
}

// resolver resolves policies by (actor, expectation): the registry first
// (per expectation, then per actor: the PolicySource decides), then enabled
// agent definitions in the database (per expectation, then per actor), then
// Fail. Malformed database values are errors, never silently Fail.
type resolver struct {
	registry PolicySource
	defs     map[string]*agentDef
}

func loadDefinitions(ctx context.Context, ex store.Querier, st store.Store, actors []string) (map[string]*agentDef, error) {
	defs := map[string]*agentDef{}
	if len(actors) == 0 {
		return defs, nil
	}
	rows, err := st.ActorDefinitions(ctx, ex, actors)
	if err != nil {
		return nil, fmt.Errorf("reading agent definitions: %w", dbx.Explain(err))
	}
	for _, row := range rows {
		d := &agentDef{policy: row.RecoveryPolicy, enabled: row.Enabled}
		if len(row.ExpectationPolicies) > 0 {
			if err := json.Unmarshal(row.ExpectationPolicies, &d.expectations); err != nil {
				d.decodeErr = fmt.Errorf("%w: expectation_policies of actor %q is not a JSON object: %w", ErrBadPolicy, row.ActorID, err)
			}
		}
		defs[row.ActorID] = d
	}
	return defs, nil
}

func (r *resolver) resolve(actor, expectation string) resolved {
	if r.registry != nil {
		if p, ok := r.registry.RecoveryPolicy(actor, expectation); ok {
			if !p.Valid() {
				return resolved{err: fmt.Errorf("%w: registry returned %q for actor %q", ErrBadPolicy, p, actor)}
			}
			return resolved{policy: p, source: SourceRegistry}
		}
	}
	if d, ok := r.defs[actor]; ok && d.enabled {
		if d.decodeErr != nil {
			return resolved{err: d.decodeErr}
		}
		if expectation != "" {
			if raw, ok := d.expectations[expectation]; ok {
				var s string
				if err := json.Unmarshal(raw, &s); err != nil {
					return resolved{err: fmt.Errorf("%w: actor %q expectation %q: %s is not a string", ErrBadPolicy, actor, expectation, raw)}
				}
				p, err := ParsePolicy(s)
				if err != nil {
					return resolved{err: fmt.Errorf("actor %q expectation %q in agent definitions: %w", actor, expectation, err)}
				}
				return resolved{policy: p, source: SourceDefinitions}
			}
		}
		if d.policy != nil {
			p, err := ParsePolicy(*d.policy)
			if err != nil {
				return resolved{err: fmt.Errorf("actor %q in agent definitions: %w", actor, err)}
			}
			return resolved{policy: p, source: SourceDefinitions}
		}
	}
	return resolved{policy: Fail, source: SourceDefault}
}

// ResolvePolicyFunc decides the policy of one orphan itself. Returning an
// error, or a value other than Restart or Fail, leaves that episode
// untouched and reports it.
type ResolvePolicyFunc func(ctx context.Context, ep *episodes.Episode) (Policy, error)
