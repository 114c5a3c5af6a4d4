package revenanttest

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/journal"
	"github.com/revenant-go/revenant/runner"
)

func init() {
	// The child processes of Process mode build their actors here.
	RegisterActor("inserter", func(db *sqlx.DB) runner.Actor { return inserter(db, true) })
	RegisterActor("sloppy-inserter", func(db *sqlx.DB) runner.Actor {
		a := inserter(db, false)
		a.ID = "sloppy-inserter"
		return a
	})
	RegisterActor("session", func(*sqlx.DB) runner.Actor { return session(&sessions{}, false) })
	RegisterActor("session-fixed", func(*sqlx.DB) runner.Actor { return session(&sessions{}, true) })
}

// sessions is a process's memory: a cache that a real crash empties.
type sessions struct {
	mu sync.Mutex
	m  map[uuid.UUID]string
}

func (s *sessions) put(id uuid.UUID, v string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[uuid.UUID]string{}
	}
	s.m[id] = v
}

func (s *sessions) get(id uuid.UUID) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[id]
}

// session logs in, then uses the session. Broken: a later step reads the
// session from the process's cache, filled only when the login step runs:
// after a real crash the login is replayed from the journal and the cache
// is empty. A simulated crash keeps the process, and the cache, alive.
func session(cache *sessions, fixed bool) runner.Actor {
	id := "session"
	if fixed {
		id = "session-fixed"
	}
	return runner.Actor{ID: id, Run: func(ctx context.Context, ep *episodes.Episode, j *journal.Journal) (any, error) {
		tok, err := journal.Step(ctx, j, "login", func(context.Context) (string, error) {
			tok := "session-of-" + ep.ActorID
			cache.put(ep.ID, tok)
			return tok, nil
		})
		if err != nil {
			return nil, err
		}
		if _, err := journal.Step(ctx, j, "warm-up", func(context.Context) (int, error) { return 1, nil }); err != nil {
			return nil, err
		}
		return journal.Step(ctx, j, "order", func(context.Context) (string, error) {
			if !fixed {
				tok = cache.get(ep.ID) // lost with the process
			}
			return fmt.Sprintf("ordered with %q", tok), nil
		})
	}}
}

func TestProcessMode(t *testing.T) {
	eachBackend(t, func(t *testing.T, open func(TB) *sqlx.DB) {
		t.Run("StepTx", func(t *testing.T) {
			db := open(t)
			createOrders(t, db)
			rep := CrashAtEveryStep(t, inserter(db, true), orderInput{Items: []string{"apple", "fig"}},
				&CrashOptions{DB: db, Mode: Process, Effects: countOrders})
			requirePassed(t, rep, 4)
		})
		t.Run("outside StepTx", func(t *testing.T) {
			db := open(t)
			createOrders(t, db)
			a := inserter(db, false)
			a.ID = "sloppy-inserter"
			requireCaught(t, a, orderInput{Items: []string{"apple", "fig"}},
				&CrashOptions{DB: db, Mode: Process, Effects: countOrders, Points: []Point{BeforeRecord}},
				`crash inside step 1 ("insert-fig"), after its effect and before its journal entry: the effect counter rose by 3, the uninterrupted run's by 2`)
		})
		t.Run("memory", func(t *testing.T) {
			db := open(t)
			// The simulated crash keeps the process's memory: it passes.
			requirePassed(t, CrashAtEveryStep(t, session(&sessions{}, false), nil, &CrashOptions{DB: db, Points: []Point{AfterRecord}}), 3)
			// A real crash loses it: caught.
			requireCaught(t, session(&sessions{}, false), nil, &CrashOptions{DB: db, Mode: Process, Points: []Point{AfterRecord}},
				`crash after step 0 ("login") was recorded: step 2 ("order") recorded "ordered with \"\"", the uninterrupted run "ordered with \"session-of-session\""`)
			requirePassed(t, CrashAtEveryStep(t, session(&sessions{}, true), nil, &CrashOptions{DB: db, Mode: Process, Points: []Point{AfterRecord}}), 3)
		})
		t.Run("unregistered", func(t *testing.T) {
			r := record(t, func(r *recorder) {
				CrashAtEveryStep(r, namer(false), nil, &CrashOptions{DB: open(t), Mode: Process})
			})
			require.Contains(t, r.fatalsText(), `actor "namer" is not registered for child processes; call revenanttest.RegisterActor`)
		})
	})
}
