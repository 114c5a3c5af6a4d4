package revenanttest

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/journal"
	"github.com/revenant-go/revenant/runner"
)

// The actors below come in pairs: a broken one, with a bug users make,
// and the correct version of the same work.

type orderInput struct {
	Items []string `json:"items"`
}

func decodeOrder(ep *episodes.Episode) (orderInput, error) {
	var in orderInput
	err := json.Unmarshal(ep.Input, &in)
	return in, err
}

const ordersTable = `CREATE TABLE orders (episode TEXT NOT NULL, item TEXT NOT NULL)`

func createOrders(t TB, db *sqlx.DB) {
	t.Helper()
	if _, err := db.Exec(ordersTable); err != nil {
		t.Fatalf("creating the orders table: %v", err)
	}
}

func countOrders(ctx context.Context, db *sqlx.DB) (int, error) {
	var n int
	err := db.GetContext(ctx, &n, `SELECT count(*) FROM orders`)
	return n, err
}

// inserter writes one order row per item, then sums them up. Broken: the
// insert runs on the pool inside journal.Step, so a crash between the
// insert and the journal entry inserts the row again on replay.
func inserter(db *sqlx.DB, inTx bool) runner.Actor {
	return runner.Actor{ID: "inserter", Run: func(ctx context.Context, ep *episodes.Episode, j *journal.Journal) (any, error) {
		in, err := decodeOrder(ep)
		if err != nil {
			return nil, err
		}
		const insert = `INSERT INTO orders (episode, item) VALUES ($1, $2)`
		var rows []int
		for _, item := range in.Items {
			var n int
			if inTx {
				n, err = journal.StepTx(ctx, j, "insert-"+item, func(ctx context.Context, tx *sqlx.Tx) (int, error) {
					_, err := tx.ExecContext(ctx, insert, ep.ID.String(), item)
					return len(item), err
				})
			} else {
				n, err = journal.Step(ctx, j, "insert-"+item, func(ctx context.Context) (int, error) {
					_, err := db.ExecContext(ctx, insert, ep.ID.String(), item)
					return len(item), err
				})
			}
			if err != nil {
				return nil, err
			}
			rows = append(rows, n)
		}
		return rows, nil
	}}
}

// namer names its steps. Broken: with the time in the name, a replay asks
// for steps the journal does not have.
func namer(broken bool) runner.Actor {
	return runner.Actor{ID: "namer", Run: func(ctx context.Context, ep *episodes.Episode, j *journal.Journal) (any, error) {
		total := 0
		for i := range 3 {
			name := fmt.Sprintf("fetch-%d", i)
			if broken {
				name = fmt.Sprintf("fetch-%d-%s", i, time.Now().Format("150405.000000000"))
			}
			n, err := journal.Step(ctx, j, name, func(context.Context) (int, error) { return i * 10, nil })
			if err != nil {
				return nil, err
			}
			total += n
		}
		return total, nil
	}}
}

// counter counts the work its steps did. Broken: the count is a Go
// variable bumped inside the steps, which replayed steps do not run; the
// correct version adds up the steps' outputs, which replays return.
func counter(broken bool) runner.Actor {
	return runner.Actor{ID: "counter", Run: func(ctx context.Context, ep *episodes.Episode, j *journal.Journal) (any, error) {
		processed, total := 0, 0
		for i := range 4 {
			n, err := journal.Step(ctx, j, fmt.Sprintf("batch-%d", i), func(context.Context) (int, error) {
				processed += 5 // lost when the step is replayed
				return 5, nil
			})
			if err != nil {
				return nil, err
			}
			total += n
		}
		if broken {
			return processed, nil
		}
		return total, nil
	}}
}

// fakeMailer is an external service that dedupes by idempotency key: a
// call with a key it has seen does nothing; a call without a key always
// sends.
type fakeMailer struct {
	mu   sync.Mutex
	keys map[string]bool
	sent int
}

func (m *fakeMailer) Send(key, to string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if key != "" {
		if m.keys[key] {
			return
		}
		if m.keys == nil {
			m.keys = map[string]bool{}
		}
		m.keys[key] = true
	}
	m.sent++
}

func (m *fakeMailer) Sent(context.Context, *sqlx.DB) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.sent, nil
}

// mailer sends a mail per recipient. Broken: it calls the service without
// the step's idempotency key, so a crash after the call sends again.
func mailer(svc *fakeMailer, withKey bool) runner.Actor {
	return runner.Actor{ID: "mailer", Run: func(ctx context.Context, ep *episodes.Episode, j *journal.Journal) (any, error) {
		in, err := decodeOrder(ep)
		if err != nil {
			return nil, err
		}
		for _, to := range in.Items {
			if _, err := journal.Step(ctx, j, "mail-"+to, func(ctx context.Context) (bool, error) {
				key := ""
				if withKey {
					info, _ := journal.Info(ctx)
					key = info.IdempotencyKey
				}
				svc.Send(key, to)
				return true, nil
			}); err != nil {
				return nil, err
			}
		}
		return len(in.Items), nil
	}}
}
