package recovery_test

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/lib/pq"
	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant/bus"
	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/internal/store"
	"github.com/revenant-go/revenant/internal/testdb"
	"github.com/revenant-go/revenant/recovery"
)

// On Postgres a sweep with the outbox and no OnEvent writes its events in
// its batch statements; with OnEvent it sends them from Go. Both must
// write the same events and wake the same listeners. On SQLite both
// sweeps send them from Go: the same events.
func TestSweepWritesTheSameEventsEitherWay(t *testing.T) {
	testdb.Each(t, nil, func(t *testing.T, driver string) {
		wf := uuid.New()
		sweepAndRead := func(withHook bool) ([]string, *recovery.Result, int64) {
			b := setup(t, driver)
			ctx := context.Background()
			var heard chan string
			sweepDB, statements := b.db, &atomic.Int64{}
			if !b.schema.IsSQLite() {
				heard = listen(t, b.schema.DSN, store.PendingChannel, store.OutboxChannel)
				// Counted, to tell the two ways apart.
				sweepDB, statements = testdb.Counting(t, b.schema.DSN, 4)
				// Event numbers of this schema only: the outbox's
				// announcement carries the last one.
				_, err := b.db.Exec(`SELECT setval(pg_get_serial_sequence('revenant_events', 'seq'), $1)`, 1_000_000+rand.Int64N(1<<40))
				require.NoError(t, err)
			}
			// NOTIFY channels belong to the database, which other tests'
			// schemas share: actor names of this run only.
			sfx := "-" + uuid.NewString()[:8]
			dead := b.deadNode(t, "", "")
			b.running(t, dead, episodes.CreateParams{ActorID: "mailer" + sfx, WorkflowInstanceID: wf, WorkflowStepID: "send"})
			b.running(t, dead, episodes.CreateParams{ActorID: "mailer" + sfx})
			b.running(t, dead, episodes.CreateParams{ActorID: "billing" + sfx, WorkflowInstanceID: wf, WorkflowStepID: "charge"})
			b.running(t, dead, episodes.CreateParams{ActorID: "once" + sfx, MaxAttempts: 1})
			outbox, err := bus.NewOutbox(b.db, nil)
			require.NoError(t, err)
			opts := &recovery.Options{Bus: outbox, BatchSize: 2,
				Registry: registry{"mailer" + sfx: recovery.Restart, "billing" + sfx: recovery.Fail, "once" + sfx: recovery.Restart}}
			hooked := 0
			if withHook {
				opts.OnEvent = func(context.Context, recovery.Event) { hooked++ }
			}
			res, err := recovery.Sweep(ctx, sweepDB, opts)
			require.NoError(t, err)
			if withHook {
				require.Equal(t, 4, hooked)
			}
			rows, err := b.db.Queryx(`SELECT ev.id, ev.type, coalesce(ev.actor_id, ''), coalesce(ev.workflow_instance_id = $1, false),
				coalesce(ev.workflow_step_id, ''), coalesce(ev.status, ''), coalesce(ev.error_class, ''), ev.payload,
				ev.episode_id IS NOT NULL AND ev.episode_id = e.id
				FROM revenant_events ev LEFT JOIN revenant_episodes e ON e.id = ev.episode_id`, wf)
			require.NoError(t, err)
			defer func() { _ = rows.Close() }()
			var got []string
			for rows.Next() {
				var id uuid.UUID
				var typ, actor, step, status, class string
				var inWorkflow, ofEpisode bool
				var payload []byte
				require.NoError(t, rows.Scan(&id, &typ, &actor, &inWorkflow, &step, &status, &class, &payload, &ofEpisode))
				require.True(t, ofEpisode, "each event names its episode")
				require.Equal(t, uuid.Version(7), id.Version(), "time-ordered ids, whoever wrote the event")
				require.Equal(t, uuid.RFC4122, id.Variant())
				require.Less(t, time.Since(time.Unix(id.Time().UnixTime())).Abs(), time.Hour, "the id's time is now")
				var rec bus.Recovery
				require.NoError(t, json.Unmarshal(payload, &rec))
				require.Equal(t, dead, rec.PreviousOwner)
				require.Equal(t, b.deadReason(), rec.Reason)
				got = append(got, typ+" "+strings.TrimSuffix(actor, sfx)+" "+status+" "+class+" "+step+" "+map[bool]string{true: "wf", false: "-"}[inWorkflow])
			}
			require.NoError(t, rows.Err())
			sort.Strings(got)
			if heard != nil {
				// The restarted actor's runners are woken, and the outbox
				// readers told of the last event.
				var last int64
				require.NoError(t, b.db.Get(&last, `SELECT max(seq) FROM revenant_events`))
				waitHeard(t, heard, store.PendingChannel+" mailer"+sfx, store.OutboxChannel+" "+strconv.FormatInt(last, 10))
			}
			return got, res, statements.Load()
		}
		inStatement, res1, oneStatement := sweepAndRead(false)
		fromGo, res2, transactional := sweepAndRead(true)
		if driver != testdb.SQLite {
			// Two batches of two: each a statement instead of BEGIN,
			// recover, notify, publish, COMMIT.
			require.LessOrEqual(t, oneStatement+8, transactional, "statements sent by the sweep")
		}
		require.Equal(t, []string{
			bus.EpisodeDeadLettered + " once failed max_attempts_exceeded  -",
			bus.EpisodeFailed + " billing failed orphaned charge wf",
			bus.EpisodeRecovered + " mailer pending   -",
			bus.EpisodeRecovered + " mailer pending  send wf",
		}, inStatement)
		require.Equal(t, fromGo, inStatement)
		for _, res := range []*recovery.Result{res1, res2} {
			require.Equal(t, 2, res.Restarted)
			require.Equal(t, 1, res.Failed)
			require.Equal(t, 1, res.DeadLettered)
		}
	})
}

// listen returns the notifications on channels of the database at dsn, as
// "channel payload" lines.
func listen(t *testing.T, dsn string, channels ...string) chan string {
	t.Helper()
	l := pq.NewListener(dsn, 10*time.Millisecond, time.Second, nil)
	t.Cleanup(func() { _ = l.Close() })
	for _, ch := range channels {
		require.NoError(t, l.Listen(ch))
	}
	out := make(chan string, 100)
	go func() {
		for n := range l.Notify {
			if n != nil {
				out <- n.Channel + " " + n.Extra
			}
		}
	}()
	return out
}

// waitHeard waits until each of want has been heard.
func waitHeard(t *testing.T, heard chan string, want ...string) {
	t.Helper()
	missing := map[string]bool{}
	for _, w := range want {
		missing[w] = true
	}
	timeout := time.After(10 * time.Second)
	for len(missing) > 0 {
		select {
		case n := <-heard:
			delete(missing, n)
		case <-timeout:
			t.Fatalf("never heard %v", missing)
		}
	}
}
