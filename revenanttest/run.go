package revenanttest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"

	"github.com/revenant-go/revenant"
	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/inspect"
	"github.com/revenant-go/revenant/runner"
)

// kitEnv returns a new env for the nodes and episodes one call of the kit
// runs (RunEpisode, CrashAtEveryStep): other nodes on the same database,
// the kit's other calls included, never claim its episodes, and its node
// claims nothing else.
func kitEnv() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return "revenanttest-" + hex.EncodeToString(b[:])
}

// pollEvery is how often the kit re-reads an episode while it waits.
const pollEvery = 2 * time.Millisecond

// RunResult is one episode run to its end by RunEpisode.
type RunResult struct {
	// Episode is the episode's final row, with its input and result.
	Episode *episodes.Episode
	// Result is the actor's JSON result (nil unless the episode is done).
	Result json.RawMessage
	// Err is why the episode did not complete (nil when it is done).
	Err error
	// Steps is its journal, in order, with outputs.
	Steps []inspect.Step
}

// EpisodeError is a RunResult's Err: the episode ended without completing.
type EpisodeError struct {
	// Status is the episode's final status (failed or canceled).
	Status episodes.Status
	// Class is the error class ("error", "panic", "timeout", or the
	// ErrorClass() of the actor's error).
	Class string
	// Message is the recorded error's message (its "message" or "panic"
	// field), or the whole detail when it has neither.
	Message string
}

func (e *EpisodeError) Error() string {
	return fmt.Sprintf("episode %s (%s): %s", e.Status, e.Class, e.Message)
}

// RunEpisode runs one episode of actor with input, synchronously, on a
// fresh node on db, and returns its outcome and journal: River's
// rivertest.Worker for revenant. The episode gets one attempt (an error
// ends it, with no retry), in an env of its own ("revenanttest-…") that
// no other node claims from.
func RunEpisode(t TB, db *sqlx.DB, actor runner.Actor, input any) *RunResult {
	t.Helper()
	c := Client(t, db, &ClientOptions{Config: &revenant.Config{Name: "revenanttest", Env: kitEnv()}, Actors: []runner.Actor{actor}})
	defer stopClient(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), TimeoutDefault)
	defer cancel()
	res, err := c.Enqueue(ctx, episodes.CreateParams{ActorID: actor.ID, Input: input, MaxAttempts: 1,
		Retry: &episodes.RetryPolicy{Disabled: true}})
	if err != nil {
		t.Fatalf("revenanttest: enqueuing an episode of %q: %v", actor.ID, err)
	}
	ep, err := waitTerminal(ctx, c.Episodes(), res.Episode.ID)
	if err != nil {
		t.Fatalf("revenanttest: running the episode of %q: %v", actor.ID, err)
	}
	out, err := outcomeOf(ctx, db, ep)
	if err != nil {
		t.Fatalf("revenanttest: reading the episode of %q: %v", actor.ID, err)
	}
	return out
}

// waitTerminal polls an episode until it is done, failed or canceled.
func waitTerminal(ctx context.Context, st *episodes.Store, id uuid.UUID) (*episodes.Episode, error) {
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	var last *episodes.Episode
	for {
		ep, err := st.Get(ctx, id)
		if err == nil && ep.Status.Terminal() {
			return ep, nil
		}
		if err == nil {
			last = ep
		}
		select {
		case <-ctx.Done():
			if last != nil {
				return nil, fmt.Errorf("episode %s did not finish in time: it is %s (attempt %d of %d, owner %q)",
					id, last.Status, last.Attempts, last.MaxAttempts, last.OwnerNode)
			}
			return nil, fmt.Errorf("episode %s did not finish in time: %w", id, err)
		case <-tick.C:
		}
	}
}

// outcomeOf reads a finished episode's outcome and journal.
func outcomeOf(ctx context.Context, db *sqlx.DB, ep *episodes.Episode) (*RunResult, error) {
	in, err := inspect.New(db, nil)
	if err != nil {
		return nil, err
	}
	d, err := in.Episode(ctx, ep.ID, inspect.EpisodeOptions{Data: true})
	if err != nil {
		return nil, err
	}
	out := &RunResult{Episode: d.Episode, Steps: d.Steps}
	if d.Episode.Status == episodes.StatusDone {
		out.Result = d.Episode.Result
	} else {
		out.Err = errorOf(d.Episode)
	}
	return out, nil
}

func errorOf(ep *episodes.Episode) *EpisodeError {
	e := &EpisodeError{Status: ep.Status, Class: ep.ErrorClass, Message: string(ep.ErrorDetail)}
	var detail struct {
		Message string `json:"message"`
		Panic   string `json:"panic"`
	}
	if json.Unmarshal(ep.ErrorDetail, &detail) == nil {
		switch {
		case detail.Message != "":
			e.Message = detail.Message
		case detail.Panic != "":
			e.Message = "panic: " + detail.Panic
		}
	}
	return e
}
