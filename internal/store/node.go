package store

import (
	"strconv"
	"time"

	"github.com/google/uuid"
)

// NodeRegisterParams is a node's row at start.
type NodeRegisterParams struct {
	ID, Name, Stack, Env string
	// LockKey is the advisory lock the node holds, or nil without one.
	LockKey any
	Actors  []string
	// Policies are the recovery policies the node states for its actors
	// (actors without a stated policy are left out).
	Policies map[string]ActorPolicy
	TTL      time.Duration
}

// RunLease is one run a node tracks: the episode and the token it holds.
type RunLease struct {
	ID    uuid.UUID
	Token int64
}

// NodeHeartbeatParams is one heartbeat: renew the node row for TTL, and
// check the leases of Runs.
type NodeHeartbeatParams struct {
	NodeID string
	TTL    time.Duration
	Runs   []RunLease
	// UntrackedAfter: episodes running under this node that it does not
	// track are reported once claimed longer ago than this.
	UntrackedAfter time.Duration
}

// Lease kinds a heartbeat reports.
const (
	LeaseCanceled  = "canceled"  // canceled under the node's token
	LeaseLost      = "lost"      // finished, released or claimed by another
	LeaseUntracked = "untracked" // running under the node, not in Runs
)

// LeaseState is one lease a heartbeat found wrong.
type LeaseState struct {
	ID    uuid.UUID
	Token int64
	Kind  string
}

// NodeHeartbeatResult is what a heartbeat found.
type NodeHeartbeatResult struct {
	// Alive is false when the node row is gone or marked stopped (a sweeper
	// judged the node dead): the node must re-register.
	Alive bool
	// DeadOwners is true when another node died owning running episodes
	// (Postgres; false on SQLite, whose Sweeper polls for it).
	DeadOwners bool
	Leases     []LeaseState
	// Unreadable lists ids (as stored, cleaned for a log) of episodes this
	// node owns whose id or token cannot be read.
	Unreadable []string
}

// Scope selects episodes or instances by source stack and env. Rows with
// no stack match any stack; env matches strictly (no env matches only no
// env); AllStacks and AllEnvs drop the filter. Sweeps, runners' claims and
// reconciliation all use these rules.
type Scope struct {
	Stack     string
	AllStacks bool
	Env       string
	AllEnvs   bool
}

// Where returns the scope as SQL conditions (each starting with " AND ")
// on the source_stack and source_env columns of alias (or unqualified when
// alias is ""), with parameters numbered from firstArg. The conditions are
// the same on every backend.
func (s Scope) Where(alias string, firstArg int) (string, []any) {
	col := func(name string) string {
		if alias == "" {
			return name
		}
		return alias + "." + name
	}
	var sql string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(firstArg+len(args)-1)
	}
	if !s.AllStacks {
		if s.Stack == "" {
			sql += " AND " + col("source_stack") + " IS NULL"
		} else {
			sql += " AND (" + col("source_stack") + " = " + arg(s.Stack) + " OR " + col("source_stack") + " IS NULL)"
		}
	}
	if !s.AllEnvs {
		if s.Env == "" {
			sql += " AND " + col("source_env") + " IS NULL"
		} else {
			sql += " AND " + col("source_env") + " = " + arg(s.Env)
		}
	}
	return sql, args
}

// ClaimManyParams claims up to Limit pending episodes of one actor in
// Scope, oldest first, for Node.
//
// The actor's breaker is the one of Scope's Stack and Env; no episode is
// claimed while it is open or half-open, unless Probe is set (the one
// half-open trial, whose caller moved the breaker to half-open in the
// same transaction).
type ClaimManyParams struct {
	Node    string
	ActorID string
	Limit   int
	Scope   Scope
	Probe   bool
	// StartedEvent, when set, is the type of the outbox event the claim
	// writes for each row it claims, in the same statement (only where
	// Capabilities().StatementEvents), without a NOTIFY: announce them
	// after the statement (EventAnnounce).
	StartedEvent string
}

// ClaimedRow is one claimed episode: Episode, or, when its row cannot be
// read, its ID and Token with Err (wrapping dbx.ErrCorruptRow). Every row
// returned is claimed already; none may be dropped.
//
// Journal is the episode's journal as the claim read it, in the same
// statement (nil when it could not be read: journal.Open reads it then).
type ClaimedRow struct {
	Episode *Episode
	Journal *StepJournal
	ID      uuid.UUID
	Token   int64
	Err     error
}
