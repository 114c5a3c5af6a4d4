package dbx

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"sort"
	"strings"
	"sync"
)

// MinFreeConns is how many connections of a capped pool revenant's
// reserved connections must leave for everything else it does (claims,
// steps, finishing writes, enqueues, sweeps of the pool's callers).
const MinFreeConns = 1

// reservations counts, per pool, the connections revenant's services hold
// for their lifetime (a runner's liveness lock, a Sweeper's connection),
// so that a pool too small for them is refused at Start with numbers
// rather than stalling every caller later.
var reservations = struct {
	sync.Mutex
	held map[*sql.DB]map[string]int
}{held: map[*sql.DB]map[string]int{}}

// Reserved is one connection held for a service's lifetime; Release
// returns it (Discard drops it instead, for a session that may still hold
// locks).
type Reserved struct {
	*sql.Conn
	db     *sql.DB
	holder string
	once   sync.Once
}

// ReserveConn takes a connection from db for holder (e.g. "runner liveness
// lock") if the pool can spare it and still leave MinFreeConns for
// everything else; otherwise it returns an error that says how many
// connections revenant holds and the pool size it needs. ctx bounds the
// wait for a free connection.
func ReserveConn(ctx context.Context, db *sql.DB, holder string) (*Reserved, error) {
	reservations.Lock()
	byHolder := reservations.held[db]
	total := 0
	for _, n := range byHolder {
		total += n
	}
	if limit := db.Stats().MaxOpenConnections; limit > 0 && total+1+MinFreeConns > limit {
		held := describe(byHolder, holder)
		reservations.Unlock()
		return nil, fmt.Errorf("%w: the pool allows %d open connections (SetMaxOpenConns) and revenant would hold %d of them for good (%s), leaving fewer than %d for claims, steps, enqueues and your own queries: set SetMaxOpenConns to at least %d (more if actors run concurrently)",
			ErrInvalidInput, limit, total+1, held, MinFreeConns, total+1+MinFreeConns)
	}
	if byHolder == nil {
		byHolder = map[string]int{}
		reservations.held[db] = byHolder
	}
	byHolder[holder]++
	reservations.Unlock()

	conn, err := db.Conn(ctx)
	if err != nil {
		unreserve(db, holder)
		return nil, fmt.Errorf("reserving a connection for the %s: %w", holder, Explain(err))
	}
	return &Reserved{Conn: conn, db: db, holder: holder}, nil
}

func describe(byHolder map[string]int, adding string) string {
	counts := map[string]int{adding: 1}
	for h, n := range byHolder {
		counts[h] += n
	}
	parts := make([]string, 0, len(counts))
	for h, n := range counts {
		parts = append(parts, fmt.Sprintf("%s: %d", h, n))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

func unreserve(db *sql.DB, holder string) {
	reservations.Lock()
	defer reservations.Unlock()
	byHolder := reservations.held[db]
	if byHolder[holder]--; byHolder[holder] <= 0 {
		delete(byHolder, holder)
	}
	if len(byHolder) == 0 {
		delete(reservations.held, db)
	}
}

// Release returns the connection to the pool and the reservation.
func (r *Reserved) Release() {
	r.once.Do(func() {
		_ = r.Close()
		unreserve(r.db, r.holder)
	})
}

// Discard closes the connection's session instead of pooling it (it may
// hold session state such as an advisory lock or a statement_timeout).
func (r *Reserved) Discard() {
	r.once.Do(func() {
		_ = r.Raw(func(any) error { return driver.ErrBadConn })
		_ = r.Close()
		unreserve(r.db, r.holder)
	})
}
