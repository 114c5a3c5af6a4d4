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
// optionally one of its expectations). ok is false when the source states
// none for the actor: resolution then falls through to the next source.
// The runner implements it.
type PolicySource interface {
	RecoveryPolicy(actorID, expectation string) (p Policy, ok bool)
}

// Node is the running node a sweep acts for: it supplies the default scope
// (stack and env) and the actor registry. *runner.Runner implements it.
type Node interface {
	PolicySource
	NodeID() string
	Stack() string
	Env() string
}

// Where a policy came from, as reported in plans and error details, in
// the order a sweep asks.
const (
	// SourceCallback: Options.ResolvePolicy decided.
	SourceCallback = "callback"
	// SourceRegistry: the sweeping node registered the actor with a policy.
	SourceRegistry = "registry"
	// SourceOwner: the dead owner published the policy in its node row
	// when it registered the actor.
	SourceOwner = "owner"
	// SourceDefinitions: an enabled row of revenant_actor_definitions
	// (see package actors).
	SourceDefinitions = "actor_definitions"
	// SourceDefault: no source states a policy; Options.DefaultPolicy
	// applies.
	SourceDefault = "default"
)

// Skip is only an Options.DefaultPolicy: orphans of actors that no source
// knows are left running and reported (Result.Errors, ErrNoPolicy), for an
// operator or the node that knows the actor to decide.
const Skip Policy = "skip"

// ErrNoPolicy reports an orphan left running because no source states a
// policy for its actor and Options.DefaultPolicy is Skip.
var ErrNoPolicy = errors.New("revenant: no recovery policy is stated for the actor")

// orphanKey is one owner and (actor, expectation) pair: policies may
// differ per owner, since each node publishes its own.
type orphanKey struct{ owner, actor, expectation string }

type resolved struct {
	policy Policy
	source string
	err    error
}

type actorDef struct {
	policy       *string
	expectations map[string]json.RawMessage
	enabled      bool
	decodeErr    error
}

// ownerPolicies is what one node published, decoded.
type ownerPolicies struct {
	actors    map[string]store.ActorPolicy
	decodeErr error
}

// resolver resolves policies by owner and (actor, expectation): the
// sweeping node's registry; the dead owner's published policies; enabled
// actor definitions in the database (each per expectation, then per
// actor); then the default. Malformed database values are errors, never
// silently the default.
type resolver struct {
	registry PolicySource
	owners   map[string]*ownerPolicies
	defs     map[string]*actorDef
	fallback Policy
}

// newResolver loads what resolving the given owners' orphans of actors
// needs: their published policies and the actors' definitions.
func newResolver(ctx context.Context, ex store.Querier, c *config, owners, actors []string) (*resolver, error) {
	r := &resolver{registry: c.Registry, fallback: c.DefaultPolicy, owners: map[string]*ownerPolicies{}, defs: map[string]*actorDef{}}
	if len(owners) > 0 {
		raw, err := c.st.NodePolicies(ctx, ex, owners)
		if err != nil {
			return nil, fmt.Errorf("reading the owners' published policies: %w", dbx.Explain(err))
		}
		for id, b := range raw {
			o := &ownerPolicies{}
			if err := json.Unmarshal(b, &o.actors); err != nil {
				o.decodeErr = fmt.Errorf("%w: the actor_policies of node %q are not a JSON object of policies: %w", ErrBadPolicy, id, err)
			}
			r.owners[id] = o
		}
	}
	if len(actors) == 0 {
		return r, nil
	}
	rows, err := c.st.ActorDefinitions(ctx, ex, actors)
	if err != nil {
		return nil, fmt.Errorf("reading actor definitions: %w", dbx.Explain(err))
	}
	for _, row := range rows {
		d := &actorDef{policy: row.RecoveryPolicy, enabled: row.Enabled}
		if len(row.ExpectationPolicies) > 0 {
			if err := json.Unmarshal(row.ExpectationPolicies, &d.expectations); err != nil {
				d.decodeErr = fmt.Errorf("%w: expectation_policies of actor %q is not a JSON object: %w", ErrBadPolicy, row.ActorID, err)
			}
		}
		r.defs[row.ActorID] = d
	}
	return r, nil
}

func (r *resolver) resolve(k orphanKey) resolved {
	if r.registry != nil {
		if p, ok := r.registry.RecoveryPolicy(k.actor, k.expectation); ok {
			if !p.Valid() {
				return resolved{err: fmt.Errorf("%w: registry returned %q for actor %q", ErrBadPolicy, p, k.actor)}
			}
			return resolved{policy: p, source: SourceRegistry}
		}
	}
	if v, ok := r.fromOwner(k); ok {
		return v
	}
	if v, ok := r.fromDefinitions(k); ok {
		return v
	}
	if r.fallback == Skip {
		return resolved{policy: Skip, source: SourceDefault, err: fmt.Errorf("%w: actor %q (not registered on this node, not published by its owner %q, no enabled definition); left running because Options.DefaultPolicy is Skip",
			ErrNoPolicy, k.actor, k.owner)}
	}
	return resolved{policy: r.fallback, source: SourceDefault}
}

func (r *resolver) fromOwner(k orphanKey) (resolved, bool) {
	o, ok := r.owners[k.owner]
	if !ok {
		return resolved{}, false
	}
	if o.decodeErr != nil {
		return resolved{err: o.decodeErr}, true
	}
	a, ok := o.actors[k.actor]
	if !ok {
		return resolved{}, false
	}
	raw, what := a.Recovery, fmt.Sprintf("actor %q", k.actor)
	if p, ok := a.Expectations[k.expectation]; ok && k.expectation != "" {
		raw, what = p, fmt.Sprintf("actor %q expectation %q", k.actor, k.expectation)
	}
	if raw == "" {
		return resolved{}, false
	}
	p, err := ParsePolicy(raw)
	if err != nil {
		return resolved{err: fmt.Errorf("%s as published by node %q: %w", what, k.owner, err)}, true
	}
	return resolved{policy: p, source: SourceOwner}, true
}

func (r *resolver) fromDefinitions(k orphanKey) (resolved, bool) {
	d, ok := r.defs[k.actor]
	if !ok || !d.enabled {
		return resolved{}, false
	}
	if d.decodeErr != nil {
		return resolved{err: d.decodeErr}, true
	}
	if k.expectation != "" {
		if raw, ok := d.expectations[k.expectation]; ok {
			var s string
			if err := json.Unmarshal(raw, &s); err != nil {
				return resolved{err: fmt.Errorf("%w: actor %q expectation %q: %s is not a string", ErrBadPolicy, k.actor, k.expectation, raw)}, true
			}
			p, err := ParsePolicy(s)
			if err != nil {
				return resolved{err: fmt.Errorf("actor %q expectation %q in actor definitions: %w", k.actor, k.expectation, err)}, true
			}
			return resolved{policy: p, source: SourceDefinitions}, true
		}
	}
	if d.policy == nil {
		return resolved{}, false
	}
	p, err := ParsePolicy(*d.policy)
	if err != nil {
		return resolved{err: fmt.Errorf("actor %q in actor definitions: %w", k.actor, err)}, true
	}
	return resolved{policy: p, source: SourceDefinitions}, true
}

// ResolvePolicyFunc decides the policy of one orphan itself. Returning an
// error, or a value other than Restart or Fail, leaves that episode
// untouched and reports it.
type ResolvePolicyFunc func(ctx context.Context, ep *episodes.Episode) (Policy, error)
