// Package store is the one interface between revenant's packages and the
// database: typed operations, grouped by table, with one implementation per
// backend (internal/store/postgres, internal/store/sqlite). Business
// packages hold no SQL; they call a Store and act on what it returns.
//
// Every operation takes the Querier to run on (the pool, a connection or
// the caller's transaction), so each one works both alone and inside a
// …Tx call. Operations return raw database errors (wrapped with
// dbx.Explain where a missing table or a locked file needs saying);
// callers add the context a user needs.
//
// Get a Store for a handle with backend.For: the backend is detected once
// per handle.
package store

import (
	"context"
	"time"

	"github.com/google/uuid"

	"github.com/revenant-go/revenant/internal/dbx"
)

// Querier runs statements: *sql.DB, *sql.Tx, *sql.Conn and their sqlx
// forms.
type Querier = dbx.Executor

// Capabilities says what a backend can do, for the few places where
// behaviour must differ. Everything else is the backend's business.
type Capabilities struct {
	// AdvisoryLocks: session advisory locks exist, so a node's liveness
	// can be a held lock (Postgres). Without them liveness is the
	// heartbeat TTL alone.
	AdvisoryLocks bool
	// Notify: LISTEN/NOTIFY exists, so ListenDSN can be used. Without it
	// nodes poll.
	Notify bool
	// RowLocks: transactions take row locks (SELECT … FOR UPDATE SKIP
	// LOCKED, idle-in-transaction timeouts). SQLite instead serialises
	// writers on the file.
	RowLocks bool
	// StatementEvents: one statement can change rows and write their
	// outbox events (writable CTEs, Postgres), so a claim needs no
	// transaction around it.
	StatementEvents bool
}

// Store is every operation revenant runs against its tables. Methods are
// named table first (River's riverdriver does the same), so one table's
// operations sort together.
type Store interface {
	// Name is "postgres" or "sqlite", for messages.
	Name() string
	// Clock reads the database's clock.
	Clock(ctx context.Context, q Querier) (time.Time, error)
	Capabilities() Capabilities

	// revenant_episodes

	// EpisodeInsert inserts a pending episode. On a dedupe-key conflict it
	// inserts nothing and returns (nil, nil).
	EpisodeInsert(ctx context.Context, q Querier, p *EpisodeInsertParams) (*Episode, error)
	// EpisodeInsertMany inserts pending episodes in one statement and
	// returns those it inserted (in no particular order): a row whose
	// dedupe key is taken is left out.
	EpisodeInsertMany(ctx context.Context, q Querier, rows []*EpisodeInsertParams) ([]*Episode, error)
	// EpisodeGet reads one episode; dbx.ErrNotFound when there is none, and
	// an error wrapping dbx.ErrCorruptRow when the row cannot be read.
	EpisodeGet(ctx context.Context, q Querier, id uuid.UUID) (*Episode, error)
	// EpisodeGetByDedupeKey reads the live (non-archived) episode holding
	// key in one actor and scope.
	EpisodeGetByDedupeKey(ctx context.Context, q Querier, actorID, stack, env, key string) (*Episode, error)
	// EpisodeState reads what a refused compare-and-set needs to explain
	// itself. dbx.ErrNotFound when the episode does not exist.
	EpisodeState(ctx context.Context, q Querier, id uuid.UUID) (status string, claimToken int64, err error)
	// EpisodeTransition runs one compare-and-set move. It returns
	// dbx.ErrNotFound when the move matched no row (wrong status, stale
	// token, or no such episode: EpisodeState tells which).
	EpisodeTransition(ctx context.Context, q Querier, p *TransitionParams) (*Episode, error)
	// EpisodeList returns one page of rows in id order, readable or not.
	EpisodeList(ctx context.Context, q Querier, p *EpisodeListParams) ([]EpisodeListRow, error)
	// EpisodeClaimMany claims up to p.Limit pending episodes of one actor
	// in one compare-and-set statement; claims on many nodes never overlap.
	// Rows read before an error are claimed and returned with it.
	EpisodeClaimMany(ctx context.Context, q Querier, p *ClaimManyParams) ([]ClaimedRow, error)
	// EpisodeHandBack returns an episode node owns but no longer runs to
	// pending, fenced by its token (the attempt stays counted). It reads
	// nothing back, so an unreadable row can be handed back too.
	EpisodeHandBack(ctx context.Context, q Querier, id uuid.UUID, claimToken int64, node string) (bool, error)
	// EpisodeFailUnreadable fails a claimed episode whose row cannot be
	// read, by id and token only, with class corrupt_row and detail (JSON
	// text).
	EpisodeFailUnreadable(ctx context.Context, q Querier, id uuid.UUID, claimToken int64, detail string) error

	// EpisodeRequeue moves failed (or canceled) episodes back to pending
	// with fresh attempts, records the requeue in their history and
	// deletes their failed journal entries (all of them for a clean
	// start), and returns them; tx must be a transaction.
	EpisodeRequeue(ctx context.Context, tx Querier, p *RequeueParams) ([]*Episode, error)
	// EpisodeNextDue reports, per actor, when its next waiting episode in
	// scope falls due and its breaker's state (for scope's Stack and Env).
	EpisodeNextDue(ctx context.Context, q Querier, actors []string, scope Scope) ([]ActorDue, error)

	// revenant_breakers

	// BreakerLock reads a breaker and locks it for the caller's
	// transaction, creating it closed when it has no row.
	BreakerLock(ctx context.Context, tx Querier, key BreakerKey) (*Breaker, error)
	// BreakerWrite writes a breaker's state.
	BreakerWrite(ctx context.Context, q Querier, p *BreakerWriteParams) error
	// BreakerProbe moves an open (or silent half-open) breaker whose
	// reopen time has passed to half-open, until one cool-down from now:
	// a compare-and-set, so one node wins the probe. false when it did
	// not apply.
	BreakerProbe(ctx context.Context, tx Querier, key BreakerKey) (bool, error)
	// BreakerProbeStarted names the probe's run on a half-open breaker.
	BreakerProbeStarted(ctx context.Context, tx Querier, key BreakerKey, episode uuid.UUID, token int64) error
	// BreakerSucceeded records a successful attempt: a closed breaker's
	// counts are cleared, and a half-open one whose probe is the episode
	// probe closes (closed is then true). An operator's state holds.
	BreakerSucceeded(ctx context.Context, q Querier, key BreakerKey, probe uuid.UUID) (closed bool, err error)
	// BreakerList reads every breaker row; BreakerGet one
	// (dbx.ErrNotFound when it has none).
	BreakerList(ctx context.Context, q Querier) ([]Breaker, error)
	BreakerGet(ctx context.Context, q Querier, key BreakerKey) (*Breaker, error)

	// revenant_nodes

	// NodeLock takes the session advisory lock key on conn, without
	// waiting (AdvisoryLocks only).
	NodeLock(ctx context.Context, conn Querier, key int64) (bool, error)
	// NodeUnlock releases it.
	NodeUnlock(ctx context.Context, conn Querier, key int64) error
	// NodeRegister inserts a node's row.
	NodeRegister(ctx context.Context, q Querier, p *NodeRegisterParams) error
	// NodeHeartbeat renews a node row and checks its runs' leases: one
	// statement on Postgres.
	NodeHeartbeat(ctx context.Context, q Querier, p *NodeHeartbeatParams) (*NodeHeartbeatResult, error)
	// NodeStop marks a node stopped.
	NodeStop(ctx context.Context, q Querier, nodeID string) error
	// NodeDeclareDead marks a node that has not stopped as dead now, with
	// reason (a Reason… rule) as its stop reason, as a sweep does when it
	// finds it dead: its running episodes are orphans at once, and its
	// next heartbeat finds it stopped. Package revenanttest simulates a
	// crash with it. false when the node has no row or already stopped.
	NodeDeclareDead(ctx context.Context, q Querier, nodeID, reason string) (bool, error)

	// NodeMarkDead marks every dead node stopped (so that one only paused
	// finds out at its next heartbeat) and returns them.
	NodeMarkDead(ctx context.Context, q Querier) ([]DeadNode, error)
	// NodeDeadOwnersExist is the Sweeper's cheap, frequent check: is any
	// node dead while still owning running episodes?
	NodeDeadOwnersExist(ctx context.Context, q Querier) (bool, error)
	// NodePrune deletes rows of nodes stopped for over a day that own no
	// running episode.
	NodePrune(ctx context.Context, q Querier) (int64, error)
	// PrepareConn readies a connection reserved for long use: a statement
	// timeout where the backend has one, and a probe that fails on a
	// closed or broken handle.
	PrepareConn(ctx context.Context, conn Querier, statementTimeout time.Duration) error

	// Orphans (running episodes whose owner is gone)

	// OrphanGroups lists the owner and (actor, expectation) pairs that
	// have orphans, without counting them (a count reads every orphan).
	OrphanGroups(ctx context.Context, q Querier, p *OrphanQuery) ([]OrphanGroup, error)
	// OrphanRecover recovers up to p.Limit orphans of p.Policies' pairs in
	// compare-and-set statements that re-check "running and orphaned" on
	// each row, so concurrent sweeps never take one episode twice. It
	// keeps its progress in p (SQLite: p.Cursor) and sets p.Done when this
	// pass has nothing left to take; rows other sweeps hold, or that
	// change while a batch runs, are left for a later pass or batch.
	OrphanRecover(ctx context.Context, q Querier, p *OrphanRecoverParams) ([]Recovered, error)
	// OrphanLock lists and locks up to limit orphans for a per-episode
	// decision, leaving out the ids in exclude. On SQLite the caller's
	// transaction is the lock; OrphanApply re-checks the token.
	OrphanLock(ctx context.Context, tx Querier, p *OrphanQuery, exclude []uuid.UUID, limit int) ([]Orphan, error)
	// OrphanApply applies decisions to orphans locked by OrphanLock.
	OrphanApply(ctx context.Context, tx Querier, decisions []Decision) ([]Recovered, error)
	// OrphanList reads up to limit orphans in id order, locking and
	// changing nothing (dry runs and reports).
	OrphanList(ctx context.Context, q Querier, p *OrphanQuery, limit int) ([]Orphan, error)
	// OrphanExhausted lists up to limit orphans left out because their
	// counters are at their maximum.
	OrphanExhausted(ctx context.Context, q Querier, p *OrphanQuery, limit int) ([]EpisodeRef, error)
	// EpisodeExhausted lists up to limit open episodes in scope whose
	// counters are at their maximum.
	EpisodeExhausted(ctx context.Context, q Querier, scope Scope, limit int) ([]EpisodeRef, error)
	// EpisodeUnclaimable counts pending episodes in scope per actor that no
	// live node has registered.
	EpisodeUnclaimable(ctx context.Context, q Querier, scope Scope) ([]ActorBacklog, error)

	// NodePolicies reads the recovery policies the given nodes published
	// (raw JSON objects keyed by actor; nodes without a row are left out).
	NodePolicies(ctx context.Context, q Querier, nodeIDs []string) (map[string][]byte, error)
	// NodeListDead lists the nodes NodeMarkDead would mark now, changing
	// nothing (dry runs).
	NodeListDead(ctx context.Context, q Querier) ([]DeadNode, error)
	// NodeList reads every node row with its liveness now, the rule that
	// would find it dead, and its running episodes, oldest node first.
	NodeList(ctx context.Context, q Querier) ([]NodeInfo, error)
	// NodeReadiness reads one node's liveness, for its readiness probe.
	NodeReadiness(ctx context.Context, q Querier, nodeID string) (*NodeReadiness, error)
	// NodeWatchTarget picks the live node with a lock that nodeID watches
	// for its death: the next in node id order within scope, in a ring.
	// found is false when there is none (or the backend has no locks).
	NodeWatchTarget(ctx context.Context, q Querier, nodeID string, scope Scope) (target string, lockKey int64, found bool, err error)
	// NodeAwaitLock blocks on conn until the session holding lock key ends
	// (or releases it), then returns, holding nothing; or, after timeout,
	// returns ErrWaitTimeout, leaving conn usable.
	NodeAwaitLock(ctx context.Context, conn Querier, key int64, timeout time.Duration) error
	// NodeRecordSweep records a node's Sweeper's last pass (JSON) on its
	// row, with the database clock.
	NodeRecordSweep(ctx context.Context, q Querier, nodeID string, record []byte) error
	// EpisodeBacklog counts open episodes (and dead letters) per actor and
	// scope, with how long the oldest due one has waited and whether a
	// live node in scope can claim them.
	EpisodeBacklog(ctx context.Context, q Querier) ([]BacklogGroup, error)
	// ActorKnown reports whether a live node that can claim episodes of
	// the actor in its scope has registered it, or the actor has a
	// definition row.
	ActorKnown(ctx context.Context, q Querier, a ActorScope) (bool, error)

	// revenant_actor_definitions

	// ActorDefinitions reads the definitions of actors.
	ActorDefinitions(ctx context.Context, q Querier, actors []string) ([]ActorDefinition, error)
	// ActorDefinitionList reads every definition, by actor id.
	ActorDefinitionList(ctx context.Context, q Querier) ([]ActorDefinition, error)
	// ActorDefinitionUpsert inserts or replaces a definition.
	ActorDefinitionUpsert(ctx context.Context, q Querier, d *ActorDefinition) error
	// ActorDefinitionSetEnabled enables or disables one; false when there
	// is none.
	ActorDefinitionSetEnabled(ctx context.Context, q Querier, actorID string, enabled bool) (bool, error)
	// ActorDefinitionDelete deletes one; false when there is none.
	ActorDefinitionDelete(ctx context.Context, q Querier, actorID string) (bool, error)

	// revenant_workflow_instances and revenant_workflow_steps

	// WorkflowProbe checks that the database answers and is migrated.
	WorkflowProbe(ctx context.Context, q Querier) error
	// WorkflowInsert inserts an instance and its steps; tx must be a
	// transaction (a savepoint guards the insert). duplicate is true
	// (and nothing is written) when an instance of the workflow with the
	// same subject is in flight; the caller's transaction stays usable.
	WorkflowInsert(ctx context.Context, tx Querier, p *WorkflowInsertParams) (duplicate bool, err error)
	// WorkflowInsertCompensation queues a compensation step.
	WorkflowInsertCompensation(ctx context.Context, tx Querier, instanceID uuid.UUID, stepID string, position int) error
	// WorkflowGet reads an instance and its steps, locking nothing.
	// dbx.ErrNotFound when there is none.
	WorkflowGet(ctx context.Context, q Querier, id uuid.UUID) (*WorkflowLoaded, error)
	// WorkflowLoadLocked locks the instance for the caller's transaction
	// and reads it consistently. With skipLocked, an instance another
	// transaction holds reads as dbx.ErrNotFound (where the backend can
	// skip; SQLite takes turns instead).
	WorkflowLoadLocked(ctx context.Context, tx Querier, id uuid.UUID, skipLocked bool) (*WorkflowLoaded, error)
	// WorkflowFlush writes one transition (one statement on Postgres).
	WorkflowFlush(ctx context.Context, tx Querier, p *WorkflowFlushParams) (WorkflowFlushCounts, error)
	// WorkflowDue lists up to limit running instances with a retry due.
	WorkflowDue(ctx context.Context, q Querier, limit int) ([]uuid.UUID, error)
	// WorkflowOpen lists up to limit running or blocked instances in scope
	// with ids after after, in id order.
	WorkflowOpen(ctx context.Context, q Querier, scope Scope, after uuid.UUID, limit int) ([]uuid.UUID, error)
	// WorkflowFindBySubject returns the newest instance of a workflow
	// started with subject; dbx.ErrNotFound when there is none.
	WorkflowFindBySubject(ctx context.Context, q Querier, workflowID, subject string) (uuid.UUID, error)
	// WorkflowShapeUpsert publishes a registered workflow's shape (its
	// DAG) for tools that do not have its code.
	WorkflowShapeUpsert(ctx context.Context, q Querier, p *WorkflowShapeParams) error
	// WorkflowShape reads the shape published for a workflow in a scope;
	// nil when no node published one.
	WorkflowShape(ctx context.Context, q Querier, workflowID, stack, env string) ([]byte, error)
	// WorkflowList lists instances newest first, with their steps counted
	// by status.
	WorkflowList(ctx context.Context, q Querier, p *WorkflowListParams) ([]WorkflowSummary, error)

	// revenant_events (the outbox)

	// EventInsert writes events in one statement and, where the backend
	// notifies, wakes readers when the transaction commits.
	EventInsert(ctx context.Context, q Querier, evs []Event) error
	// EventAnnounce wakes the outbox readers (NOTIFY where the backend
	// has it; a no-op elsewhere), for events written by a statement that
	// did not (claims and transitions carrying events).
	EventAnnounce(ctx context.Context, q Querier) error
	// EventReadAfter reads up to limit events with seq > after, in order.
	EventReadAfter(ctx context.Context, q Querier, after int64, limit int) ([]EventRecord, error)
	// EventReadRanges reads up to limit events inside ranges, in order: one
	// index range scan per range, whatever its width.
	EventReadRanges(ctx context.Context, q Querier, ranges []SeqRange, limit int) ([]EventRecord, error)
	// EventPosition is the highest seq written (0 when none).
	EventPosition(ctx context.Context, q Querier) (int64, error)
	// EventPrune deletes events older than age, by the database clock.
	EventPrune(ctx context.Context, q Querier, age time.Duration) (int64, error)

	// Notifications

	// Notify sends payload on channel when the transaction (or statement)
	// commits. Without the Notify capability it does nothing: nodes poll.
	Notify(ctx context.Context, q Querier, channel, payload string) error
	// NotifyEach sends one notification per payload.
	NotifyEach(ctx context.Context, q Querier, channel string, payloads []string) error
	// CheckListenDSN refuses a DSN the backend cannot listen on, saying
	// how to fix it and never quoting the DSN or its password. field
	// names the setting, e.g. "runner Config.ListenDSN".
	CheckListenDSN(field, dsn string) error
	// Listen starts listening (Notify only). It waits until LISTEN is up,
	// the first connection attempt fails, ctx ends or a few seconds pass;
	// LISTEN is then retried in the background.
	Listen(ctx context.Context, c ListenConfig) Listener

	// revenant_steps

	// StepLoad reads an episode's fencing state and its recorded steps in
	// sequence order. dbx.ErrNotFound when the episode does not exist.
	StepLoad(ctx context.Context, q Querier, episodeID uuid.UUID) (*StepJournal, error)
	// StepList reads an episode's journal entries in sequence order, with
	// their outputs only when withOutput.
	StepList(ctx context.Context, q Querier, episodeID uuid.UUID, withOutput bool) ([]StepDetail, error)
	// StepRecord writes one step under the claim token, fenced: it writes
	// nothing unless the episode is running under that token.
	StepRecord(ctx context.Context, q Querier, p *StepRecordParams) (StepOutcome, error)
	// StepTxPrepare bounds how long a transactional step's transaction may
	// sit idle, where the backend can (a no-op with 0): a paused holder's
	// locks on the rows its effect touched are released once it passes.
	StepTxPrepare(ctx context.Context, tx Querier, idleTimeoutMillis int64) error
	// SessionIdleTimeout reads the idle-in-transaction timeout a new
	// session gets from the server, its role, its database or its
	// connection string, in milliseconds (0: none, or none on this
	// backend).
	SessionIdleTimeout(ctx context.Context, q Querier) (int64, error)
}
