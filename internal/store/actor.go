package store

import (
	"encoding/json"
	"time"
)

// ActorDefinition is one revenant_actor_definitions row, undecoded:
// recovery judges malformed values.
type ActorDefinition struct {
	ActorID             string
	RecoveryPolicy      *string
	ExpectationPolicies []byte
	Enabled             bool
	UpdatedAt           time.Time
}

// ActorPolicy is one actor's recovery policies as its node publishes them
// in its row (revenant_nodes.actor_policies, a JSON object keyed by
// actor). Empty fields were not stated.
type ActorPolicy struct {
	Recovery     string            `json:"recovery,omitempty"`
	Expectations map[string]string `json:"expectations,omitempty"`
}

// ActorScope names an actor in a scope, as an enqueue stamps it.
type ActorScope struct {
	ActorID, Stack, Env string
}

// PoliciesJSON encodes a node's published policies ("{}" for none).
func PoliciesJSON(p map[string]ActorPolicy) (string, error) {
	if len(p) == 0 {
		return "{}", nil
	}
	b, err := json.Marshal(p)
	return string(b), err
}
