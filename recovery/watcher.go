package recovery

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/revenant-go/revenant/internal/dbx"
	"github.com/revenant-go/revenant/internal/store"
)

// The watcher: instead of polling for dead nodes, the Sweeper waits on one
// peer's session advisory lock on a connection of its own. Postgres
// grants the wait the instant the peer's session ends, and the Sweeper
// sweeps at once. Peers form a ring (each node watches the next live one
// in its scope, by node id), so each node holds one waiting connection
// whatever the cluster's size. While the watcher is down (no peer yet, no
// connection, an error) the Sweeper polls as before.

// watchRefreshDefault is how often the watcher looks again for the peer
// to watch (nodes come and go): at most this long, a new node's death is
// caught by the fallback poll only. (A refresh cancels the wait, which
// lib/pq does over a new connection: not too often.)
const watchRefreshDefault = time.Minute

// watchRetry is the pause before the watcher reconnects after an error.
const watchRetry = time.Second

// watch runs until ctx ends. It opens its own connection to dsn (outside
// the caller's pool, like LISTEN's).
func (s *Sweeper) watch(ctx context.Context) {
	log := s.opts.Logger
	var (
		db   *sql.DB
		conn *sql.Conn
	)
	closeConn := func() {
		if conn != nil {
			_ = conn.Close()
			conn = nil
		}
		if db != nil {
			_ = db.Close()
			db = nil
		}
	}
	defer closeConn()
	fails := 0
	for ctx.Err() == nil {
		if conn == nil {
			var err error
			db, conn, err = openWatchConn(ctx, s.config.WatchDSN)
			if err != nil {
				s.watching.Store(false)
				if fails++; fails == 1 && ctx.Err() == nil {
					log.WarnContext(ctx, "revenant: the failure watcher cannot connect; polling for dead nodes meanwhile", slog.Any("error", err))
				}
				closeConn()
				sleepCtx(ctx, watchRetry)
				continue
			}
		}
		target, key, found, err := s.watchTarget(ctx)
		if err != nil {
			s.watching.Store(false)
			if ctx.Err() == nil {
				log.DebugContext(ctx, "revenant: choosing a node to watch failed; the poll covers it", slog.Any("error", err))
			}
			sleepCtx(ctx, watchRetry)
			continue
		}
		if !found {
			// No peer holds a lock in scope: no lock to watch, and nothing
			// for a fast poll to catch either (lapsed heartbeats are the
			// slow poll's).
			s.watching.Store(true)
			sleepCtx(ctx, s.config.watchRefresh)
			continue
		}
		s.watching.Store(true)
		if fails > 0 {
			log.InfoContext(ctx, "revenant: the failure watcher is back", slog.String("watching", target))
			fails = 0
		}
		// The wait ends by itself at the refresh (lock_timeout): a
		// canceled context would make lib/pq close the connection.
		err = s.opts.st.NodeAwaitLock(ctx, conn, key, s.config.watchRefresh)
		switch {
		case ctx.Err() != nil:
			return
		case err == nil:
			// The peer's session ended (or it stopped, or re-registered):
			// sweep now. The pass finds out which. The next target is a
			// node whose lock is held, so the dead one is not waited on
			// again.
			s.kickPass()
		case errors.Is(err, store.ErrWaitTimeout):
			// Time to look again for the peer.
		default:
			s.watching.Store(false)
			if fails++; fails == 1 {
				log.WarnContext(ctx, "revenant: the failure watcher's connection failed; polling for dead nodes until it is back",
					slog.String("watching", target), slog.Any("error", dbx.Explain(err)))
			}
			closeConn()
			sleepCtx(ctx, watchRetry)
		}
	}
}

// watchTarget picks the peer to watch, bounded in time: it runs on the
// pool.
func (s *Sweeper) watchTarget(ctx context.Context) (string, int64, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, s.config.StatementTimeout)
	defer cancel()
	return s.opts.st.NodeWatchTarget(ctx, s.db, s.opts.Node.NodeID(),
		store.Scope{Stack: s.opts.Stack, AllStacks: s.opts.AllStacks, Env: s.opts.Env, AllEnvs: s.opts.AllEnvs})
}

// openWatchConn opens the watcher's connection: no statement timeout (the
// wait is meant to last), named for operators.
func openWatchConn(ctx context.Context, dsn string) (*sql.DB, *sql.Conn, error) {
	// The DSN was checked by NewSweeper, so errors from here on are the
	// server's or the network's, which do not quote it.
	db, err := sql.Open("postgres", dsn)
	if err != nil {
		return nil, nil, errors.New("opening the watcher's connection: malformed DSN") // never echo the DSN
	}
	db.SetMaxOpenConns(1)
	conn, err := db.Conn(ctx)
	if err == nil {
		_, err = conn.ExecContext(ctx, `SELECT set_config('statement_timeout', '0', false),
	set_config('idle_in_transaction_session_timeout', '0', false),
	set_config('application_name', 'revenant failure watcher', false)`)
	}
	if err != nil {
		if conn != nil {
			_ = conn.Close()
		}
		_ = db.Close()
		return nil, nil, fmt.Errorf("opening the watcher's connection: %w", dbx.Explain(err))
	}
	return db, conn, nil
}

// SweepSoon asks the Sweeper for a pass now, without waiting for it (at
// most one is queued): for a caller that learned that a node died, such as
// a runner's heartbeat (runner.Config.OnDeadOwners). It never blocks.
// After such a pass found nothing to do (orphans of another scope, or
// exhausted ones), requests are ignored for 30 s.
func (s *Sweeper) SweepSoon() {
	select {
	case s.soon <- struct{}{}:
	default:
	}
}

// kickPass asks the loop for a pass now (at most one pending).
func (s *Sweeper) kickPass() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
