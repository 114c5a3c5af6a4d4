package revenanttest

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/journal"
	"github.com/revenant-go/revenant/runner"
	"github.com/revenant-go/revenant/workflow"
)

// ledger is a crash-safe step actor: it records its step in a table, in
// the step's transaction, and returns what it recorded. It fails
// permanently when the trigger asks it to.
func ledger(id string) runner.Actor {
	return runner.Actor{ID: id, Run: func(ctx context.Context, ep *episodes.Episode, j *journal.Journal) (any, error) {
		var in struct {
			Trigger struct {
				Fail string `json:"fail"`
			} `json:"trigger"`
		}
		_ = json.Unmarshal(ep.Input, &in)
		step := ep.WorkflowStepID
		if step == "" { // a compensation's input names its step
			var c struct {
				Step string `json:"step"`
			}
			_ = json.Unmarshal(ep.Input, &c)
			step = "undo-" + c.Step
		}
		if in.Trigger.Fail == step {
			return nil, journal.Permanent(errors.New(step + " refused"))
		}
		return journal.StepTx(ctx, j, "record", func(ctx context.Context, tx *sqlx.Tx) (string, error) {
			_, err := tx.ExecContext(ctx, `INSERT INTO orders (episode, item) VALUES ($1, $2)`, ep.ID.String(), step)
			return "recorded " + step, err
		})
	}}
}

var shop = workflow.Definition{ID: "shop", Steps: []workflow.Step{
	{ID: "reserve", Actor: "stock"},
	{ID: "charge", Actor: "billing", DependsOn: []string{"reserve"}, Compensate: "refunds"},
	{ID: "notify", Actor: "mail", DependsOn: []string{"reserve"}},
	{ID: "ship", Actor: "stock", DependsOn: []string{"charge", "notify"}},
}}

func shopActors() []runner.Actor {
	return []runner.Actor{ledger("stock"), ledger("billing"), ledger("mail"), ledger("refunds")}
}

func TestCrashAtEveryTransition(t *testing.T) {
	eachBackend(t, func(t *testing.T, open func(TB) *sqlx.DB) {
		t.Run("done", func(t *testing.T) {
			db := open(t)
			createOrders(t, db)
			rep := CrashAtEveryTransition(t, shop, shopActors(), map[string]string{"order": "A-1"},
				&TransitionOptions{DB: db, Effects: countOrders})
			require.False(t, rep.Failed())
			require.Equal(t, workflow.StatusDone, rep.Reference.Status)
			require.Equal(t, 4, rep.ReferenceEffects)
			require.Len(t, rep.Transitions, 4, "one per step outcome")
			require.Len(t, rep.Scenarios, 4)
			for _, sc := range rep.Scenarios {
				require.Empty(t, sc.Problems, sc.Name)
				require.Equal(t, workflow.StatusDone, sc.Outcome.Status, sc.Name)
				require.Equal(t, `"recorded ship"`, string(sc.Outcome.Step("ship").Result), sc.Name)
			}
			require.Equal(t, "crash right after the instance started", rep.Scenarios[0].Name)
			require.Equal(t, `crash after transition 1 (step "reserve" done)`, rep.Scenarios[1].Name)
		})
		t.Run("compensated", func(t *testing.T) {
			db := open(t)
			createOrders(t, db)
			rep := CrashAtEveryTransition(t, shop, shopActors(), map[string]string{"fail": "ship"},
				&TransitionOptions{DB: db, Effects: countOrders})
			require.False(t, rep.Failed())
			require.Equal(t, workflow.StatusFailed, rep.Reference.Status)
			require.Equal(t, workflow.StepDone, rep.Reference.Step("charge").Status)
			for _, sc := range rep.Scenarios {
				require.Equal(t, workflow.StatusFailed, sc.Outcome.Status, sc.Name)
			}
		})
	})
}
