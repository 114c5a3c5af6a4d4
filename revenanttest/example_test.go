package revenanttest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/jmoiron/sqlx"

	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/journal"
	"github.com/revenant-go/revenant/revenanttest"
	"github.com/revenant-go/revenant/runner"
)

// exampleT stands in for the *testing.T a test has (an Example has none):
// it prints failures instead of failing.
type exampleT struct {
	cleanups []func()
	failures []string
}

func (t *exampleT) Helper() {}
func (t *exampleT) Errorf(format string, args ...any) {
	t.failures = append(t.failures, fmt.Sprintf(format, args...))
}
func (t *exampleT) Fatalf(format string, args ...any) { panic(fmt.Sprintf(format, args...)) }
func (t *exampleT) Logf(string, ...any)               {}
func (t *exampleT) Cleanup(fn func())                 { t.cleanups = append(t.cleanups, fn) }
func (t *exampleT) TempDir() string {
	dir, err := os.MkdirTemp("", "revenanttest-example-*")
	if err != nil {
		panic(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}
func (t *exampleT) done() {
	for i := len(t.cleanups) - 1; i >= 0; i-- {
		t.cleanups[i]()
	}
}

// charge records a payment for an order and then emails a receipt.
// inTx says whether the payment goes through journal.StepTx.
func charge(db *sqlx.DB, inTx bool) runner.Actor {
	return runner.Actor{ID: "charge", Run: func(ctx context.Context, ep *episodes.Episode, j *journal.Journal) (any, error) {
		var order struct {
			ID     string `json:"id"`
			Amount int    `json:"amount"`
		}
		if err := json.Unmarshal(ep.Input, &order); err != nil {
			return nil, err
		}
		const pay = `INSERT INTO payments (order_id, amount) VALUES ($1, $2)`
		var err error
		if inTx {
			_, err = journal.StepTx(ctx, j, "charge", func(ctx context.Context, tx *sqlx.Tx) (bool, error) {
				_, err := tx.ExecContext(ctx, pay, order.ID, order.Amount)
				return err == nil, err
			})
		} else {
			_, err = journal.Step(ctx, j, "charge", func(ctx context.Context) (bool, error) {
				_, err := db.ExecContext(ctx, pay, order.ID, order.Amount) // outside the step's transaction
				return err == nil, err
			})
		}
		if err != nil {
			return nil, err
		}
		receipt, err := journal.Step(ctx, j, "receipt", func(ctx context.Context) (string, error) {
			return fmt.Sprintf("receipt for %s: %d", order.ID, order.Amount), nil
		})
		return receipt, err
	}}
}

func paymentsDB(t revenanttest.TB) *sqlx.DB {
	db := revenanttest.DB(t)
	if _, err := db.Exec(`CREATE TABLE payments (order_id TEXT NOT NULL, amount INTEGER NOT NULL)`); err != nil {
		t.Fatalf("%v", err)
	}
	return db
}

func countPayments(ctx context.Context, db *sqlx.DB) (int, error) {
	var n int
	err := db.GetContext(ctx, &n, `SELECT count(*) FROM payments`)
	return n, err
}

// A crash-safe actor: each of its steps is crashed inside and after, and
// every restarted run ends as the uninterrupted one.
func ExampleCrashAtEveryStep() {
	t := &exampleT{}
	defer t.done()
	db := paymentsDB(t)

	rep := revenanttest.CrashAtEveryStep(t, charge(db, true), map[string]any{"id": "A-1", "amount": 40},
		&revenanttest.CrashOptions{DB: db, Effects: countPayments})

	fmt.Println("result:", string(rep.Reference.Result))
	for _, sc := range rep.Scenarios {
		fmt.Printf("%s: passed %v, %d attempts\n", sc.Name(), sc.Passed(), sc.Outcome.Episode.Attempts)
	}
	// Output:
	// result: "receipt for A-1: 40"
	// crash inside step 0 ("charge"), after its effect and before its journal entry: passed true, 2 attempts
	// crash after step 0 ("charge") was recorded: passed true, 2 attempts
	// crash inside step 1 ("receipt"), after its effect and before its journal entry: passed true, 2 attempts
	// crash after step 1 ("receipt") was recorded: passed true, 2 attempts
}

// A broken actor: its payment is written outside the step's transaction,
// so a crash before the journal entry charges twice.
func ExampleCrashAtEveryStep_broken() {
	t := &exampleT{}
	defer t.done()
	db := paymentsDB(t)

	revenanttest.CrashAtEveryStep(t, charge(db, false), map[string]any{"id": "A-1", "amount": 40},
		&revenanttest.CrashOptions{DB: db, Effects: countPayments})

	for _, f := range t.failures {
		fmt.Println(strings.ReplaceAll(f, ": ", ":\n  "))
	}
	// Output:
	// crash inside step 0 ("charge"), after its effect and before its journal entry:
	//   the effect counter rose by 2, the uninterrupted run's by 1:
	//   step 0's effect happened again when the restarted run did the step again (an effect outside StepTx runs again on replay); move it into journal.StepTx, where effect and journal entry commit together, or make it idempotent with journal.Info(ctx).IdempotencyKey
}

func ExampleRunEpisode() {
	t := &exampleT{}
	defer t.done()
	db := paymentsDB(t)

	res := revenanttest.RunEpisode(t, db, charge(db, true), map[string]any{"id": "B-7", "amount": 12})
	fmt.Println(res.Episode.Status, string(res.Result), res.Err)
	for _, s := range res.Steps {
		fmt.Println(s.Seq, s.Name, string(s.Output))
	}
	revenanttest.RequireSteps(t, db, res.Episode.ID, "charge", "receipt")
	// Output:
	// done "receipt for B-7: 12" <nil>
	// 0 charge true
	// 1 receipt "receipt for B-7: 12"
}

func ExampleRequireEnqueued() {
	t := &exampleT{}
	defer t.done()
	db := revenanttest.DB(t)
	// The code under test enqueues an episode, here through a node.
	client := revenanttest.Client(t, db, nil)
	if _, err := client.Enqueue(context.Background(), episodes.CreateParams{ActorID: "mailer",
		Input: map[string]string{"to": "ada@example.com"}, DedupeKey: "welcome-ada"}); err != nil {
		panic(err)
	}

	ep := revenanttest.RequireEnqueued(t, db, "mailer", &revenanttest.RequireEnqueuedOpts{
		Input: map[string]string{"to": "ada@example.com"}, Status: episodes.StatusPending})
	fmt.Println(ep.ActorID, ep.DedupeKey, ep.Status)
	// Output:
	// mailer welcome-ada pending
}
