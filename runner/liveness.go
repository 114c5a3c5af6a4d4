package runner

import (
	"context"
	"crypto/rand"
	"database/sql"
	"database/sql/driver"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/revenant-go/revenant/internal/dbx"
	"github.com/revenant-go/revenant/internal/safe"
	"github.com/revenant-go/revenant/internal/store"
)

// The node's liveness: registration, the heartbeat with its lease check,
// and what happens when others declare the node dead.

// register takes the advisory lock on a dedicated connection (unless
// disabled) and inserts the node row. The caller holds livenessMu (or owns
// r alone, in Start).
func (r *Runner) register(ctx context.Context) error {
	var lockKey any
	if !r.config.DisableLockDetection && r.st.Capabilities().AdvisoryLocks {
		if r.lockConn == nil {
			conn, err := dbx.ReserveConn(ctx, r.db.DB, "runner liveness lock")
			if err != nil {
				return fmt.Errorf("runner: %w", err)
			}
			var b [8]byte
			_, _ = rand.Read(b[:])
			key := int64(binary.BigEndian.Uint64(b[:]) >> 1) // positive
			ok, err := r.st.NodeLock(ctx, conn, key)
			if err != nil || !ok {
				conn.Discard()
				if err == nil {
					err = errors.New("pg_try_advisory_lock returned false")
				}
				return fmt.Errorf("runner: taking the node's advisory lock: %w", dbx.Explain(err))
			}
			r.lockConn, r.lockKey = conn, key
		}
		lockKey = r.lockKey
	}
	if err := r.st.NodeRegister(ctx, r.livenessConn(), &store.NodeRegisterParams{ID: r.NodeID(), Name: r.config.Name,
		Stack: r.config.Stack, Env: r.config.Env, LockKey: lockKey, Actors: r.actorIDs(), Policies: r.publishedPolicies(), TTL: r.config.NodeTTL}); err != nil {
		// Start the next attempt afresh: the lock connection may be the
		// one that broke (reusing it would fail the same way for ever),
		// a lock without a node row protects nothing, and the insert may
		// have committed before the error reached us (the same id again
		// would be a duplicate for ever), so the next attempt uses a new id.
		r.dropLockConn()
		r.mu.Lock()
		failed := r.nodeID
		r.nodeID = newNodeID(r.config.Name)
		r.mu.Unlock()
		return fmt.Errorf("runner: registering node %s: %w", failed, dbx.Explain(err))
	}
	r.readDBIdleTimeout(ctx)
	return nil
}

// readDBIdleTimeout reads the idle-in-transaction timeout the database
// gives new sessions. Failing to read it only keeps transactional steps
// setting their own.
func (r *Runner) readDBIdleTimeout(ctx context.Context) {
	ms, err := r.st.SessionIdleTimeout(ctx, r.db)
	if err != nil {
		ms = 0
		r.logger.Debug("revenant: reading the database's idle_in_transaction_session_timeout failed; transactional steps set their own",
			slog.Any("error", err))
	}
	r.dbIdleTimeout.Store(ms)
}

// dropLockConn closes the lock connection's session (and the lock with
// it) instead of pooling it. The caller holds livenessMu or owns r alone.
func (r *Runner) dropLockConn() {
	if r.lockConn != nil {
		r.lockConn.Discard()
		r.lockConn = nil
	}
}

// livenessConn is where liveness statements run: the lock connection, so
// a dead lock connection shows up as a failed heartbeat, or the pool.
func (r *Runner) livenessConn() store.Querier {
	if r.lockConn != nil {
		return r.lockConn
	}
	return r.db
}

func (r *Runner) heartbeatLoop() {
	defer r.loops.Done()
	t := time.NewTicker(r.config.HeartbeatInterval)
	defer t.Stop()
	// No per-beat deadline: lib/pq loses the connection when a statement is
	// canceled, and with it the node's lock. A heartbeat stuck on a slow
	// database simply lets the TTL lapse, which is the right outcome.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { <-r.stopCh; cancel() }()
	for {
		select {
		case <-r.stopCh:
			return
		case <-t.C:
			start := time.Now()
			err := safe.Pass(ctx, r.logger, "runner heartbeat", func() error { return r.heartbeat(ctx) })
			if took := time.Since(start); took > r.config.HeartbeatInterval {
				r.logger.Warn("revenant: heartbeat slower than its interval", slog.Duration("took", took))
			}
			if err != nil && ctx.Err() == nil {
				r.logger.Warn("revenant: heartbeat failed", slog.String("node", r.NodeID()), slog.Any("error", err))
			}
		}
	}
}

// connBroken reports errors after which a connection (and a session lock
// on it) must be presumed gone.
func connBroken(err error) bool {
	return errors.Is(err, driver.ErrBadConn) || errors.Is(err, sql.ErrConnDone) || errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF) || strings.HasPrefix(dbx.SQLState(err), "08") ||
		dbx.SQLState(err) == "57P01" || dbx.SQLState(err) == "57P02" || dbx.SQLState(err) == "57P03"
}

// heartbeat renews the node's liveness and checks its runs' leases in one
// statement; runs whose lease is gone are canceled, and episodes the
// database says the node runs but it does not track are handed back. If
// the node was declared dead (or its lock connection broke), it cancels
// every run and re-registers under a new id. The heartbeat loop calls it
// every HeartbeatInterval.
func (r *Runner) heartbeat(ctx context.Context) error {
	r.livenessMu.Lock()
	defer r.livenessMu.Unlock()
	r.mu.Lock()
	if r.unregistered {
		r.mu.Unlock()
		if err := r.reregister(ctx); err != nil {
			return fmt.Errorf("re-registering node: %w", err)
		}
		r.signal()
		return nil
	}
	runs := make([]store.RunLease, 0, len(r.active))
	sent := make(map[uuid.UUID]int64, len(r.active))
	for id, a := range r.active {
		runs = append(runs, store.RunLease{ID: id, Token: a.ep.ClaimToken})
		sent[id] = a.ep.ClaimToken
	}
	nodeID := r.nodeID
	r.mu.Unlock()

	hb, err := r.st.NodeHeartbeat(ctx, r.livenessConn(), &store.NodeHeartbeatParams{NodeID: nodeID,
		TTL: r.config.NodeTTL, Runs: runs, UntrackedAfter: r.config.HeartbeatInterval})
	if err != nil {
		// A heartbeat canceled by Stop is not a lost lock.
		if r.lockConn != nil && connBroken(err) && ctx.Err() == nil {
			// The lock connection is gone, and the lock with it.
			return r.reincarnate(ctx, fmt.Errorf("heartbeat on lock connection: %w", err))
		}
		return dbx.Explain(err)
	}
	for _, id := range hb.Unreadable {
		r.logger.Error("revenant: an episode this node owns has an unreadable id or token; leaving it to an operator",
			slog.String("episode", id))
	}
	r.mu.Lock()
	// A claim under way may have made episodes running under this node
	// that it has not started yet: judge them at the next beat. (The query
	// only returns episodes claimed over an interval ago, so this is about
	// a claim stuck that long, not the usual microseconds.)
	claimUnderWay := r.claiming > 0
	r.mu.Unlock()
	var untracked []store.LeaseState
	for _, f := range hb.Leases {
		// Only the run the heartbeat asked about: a retry of the episode
		// may have started here since, under a newer token.
		switch f.Kind {
		case store.LeaseCanceled:
			r.cancelRunAt(f.ID, sent[f.ID], ErrCanceled)
		case store.LeaseLost:
			// A cancel reads the same whether it arrives by notification or
			// is found here; anything else is a lost lease.
			r.cancelRunAt(f.ID, sent[f.ID], ErrLeaseLost)
		case store.LeaseUntracked:
			if !claimUnderWay && !r.tracks(f.ID) {
				untracked = append(untracked, f)
			}
		}
	}
	r.handBack(ctx, nodeID, untracked)
	if hb.DeadOwners && r.config.OnDeadOwners != nil {
		r.config.OnDeadOwners()
	}
	if !hb.Alive {
		return r.reincarnate(ctx, errMarkedStopped)
	}
	return nil
}

func (r *Runner) tracks(id uuid.UUID) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.active[id]
	return ok
}

// handBack returns episodes this node owns but does not run to pending,
// each fenced by its token: a run that ended without its finishing write
// (the write failed for good), or one that never started.
func (r *Runner) handBack(ctx context.Context, nodeID string, eps []store.LeaseState) {
	for _, f := range eps {
		handed, err := r.st.EpisodeHandBack(ctx, r.db, f.ID, f.Token, nodeID)
		if err != nil {
			r.logger.Warn("revenant: handing back an episode this node owns but does not run failed; retried at the next heartbeat",
				slog.String("episode", f.ID.String()), slog.Any("error", dbx.Explain(err)))
			continue
		}
		if handed {
			r.logger.Warn("revenant: handed back an episode this node owned but was not running",
				slog.String("episode", f.ID.String()), slog.Int64("token", f.Token))
		}
	}
}

// reincarnate handles a node that others consider dead: its runs are
// fenced off already, so cancel them, and register again under a new id.
func (r *Runner) reincarnate(ctx context.Context, cause error) error {
	r.logger.Warn("revenant: node lost its identity; canceling runs and re-registering",
		slog.String("node", r.NodeID()), slog.Any("cause", cause))
	r.mu.Lock()
	for _, a := range r.active {
		a.cancel(ErrIdentityLost)
	}
	if !errors.Is(cause, errMarkedStopped) {
		r.dropLockConn()
	}
	r.nodeID = newNodeID(r.config.Name)
	r.unregistered = true
	r.mu.Unlock()
	if err := r.reregister(ctx); err != nil {
		return fmt.Errorf("re-registering after %w (retried at the next heartbeat): %w", cause, err)
	}
	return cause
}

// reregister inserts the row of the node's current id; once it exists the
// node claims again.
func (r *Runner) reregister(ctx context.Context) error {
	// Up to a TTL: the node claims nothing until it is registered, so a
	// slow database must not make every attempt time out.
	ctx, cancel := context.WithTimeout(ctx, r.config.NodeTTL)
	defer cancel()
	if err := r.register(ctx); err != nil {
		return err
	}
	r.mu.Lock()
	r.unregistered = false
	r.mu.Unlock()
	return nil
}
