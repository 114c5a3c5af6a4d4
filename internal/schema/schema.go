// Package schema holds the SQL fragments that several packages must spell
// exactly as the migrations do (index predicates, conflict targets), so
// that one edit keeps them in step.
package schema

// DedupeConflictTarget is the ON CONFLICT target that matches the unique
// index on live dedupe keys, per actor, stack and env (migration 0004).
const DedupeConflictTarget = `(actor_id, coalesce(source_stack, ''), coalesce(source_env, ''), dedupe_key) WHERE dedupe_key IS NOT NULL AND archived_at IS NULL`

// Counter ceilings: claim_token is a bigint and attempts an integer.
const (
	MaxClaimToken = "9223372036854775807"
	MaxAttempts   = "2147483647"
)

// Exhausted is true for an episode whose claim token or attempt count
// cannot be bumped again. It matches the predicate of the partial index
// revenant_episodes_exhausted_idx; alias is the episodes table's alias
// ("" for none).
func Exhausted(alias string) string {
	if alias != "" {
		alias += "."
	}
	return "(" + alias + "claim_token = " + MaxClaimToken + " OR " + alias + "attempts = " + MaxAttempts + ")"
}

// Bumpable is the negation of Exhausted, for claims and sweeps: they leave
// such rows alone (reported elsewhere) instead of failing the whole batch
// on an overflow.
func Bumpable(alias string) string {
	if alias != "" {
		alias += "."
	}
	return "(" + alias + "claim_token < " + MaxClaimToken + " AND " + alias + "attempts < " + MaxAttempts + ")"
}
