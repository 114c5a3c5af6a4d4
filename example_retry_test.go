package revenant_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/revenant-go/revenant"
	"github.com/revenant-go/revenant/bus"
	"github.com/revenant-go/revenant/episodes"
	"github.com/revenant-go/revenant/journal"
	"github.com/revenant-go/revenant/runner"
)

// An actor's error is retried after a backoff while attempts remain; the
// next attempt knows its number and the previous error. When attempts run
// out the episode is a dead letter, which an operator requeues once the
// cause is fixed.
func ExampleClient_Requeue() {
	db, cleanup := openDB()
	defer cleanup()
	ctx := context.Background()

	client, err := revenant.New(db, &revenant.Config{Name: "payments-1"})
	if err != nil {
		log.Fatal(err)
	}
	fixed := make(chan struct{})
	err = client.Register(runner.Actor{ID: "charger", MaxAttempts: 2,
		Retry: &episodes.RetryPolicy{MinBackoff: 50 * time.Millisecond},
		Run: func(ctx context.Context, ep *episodes.Episode, j *journal.Journal) (any, error) {
			a := j.Attempt()
			select {
			case <-fixed:
				return "charged", nil
			default:
			}
			if a.PreviousError != nil {
				fmt.Printf("attempt %d of %d, after %q\n", a.Attempt, a.MaxAttempts, a.PreviousError.Message)
			} else {
				fmt.Printf("attempt %d of %d\n", a.Attempt, a.MaxAttempts)
			}
			return nil, errors.New("card network unreachable")
		}})
	if err != nil {
		log.Fatal(err)
	}
	finished := make(chan string, 4)
	for _, typ := range []string{bus.EpisodeFailed, bus.EpisodeCompleted} {
		client.Subscribe(typ, func(_ context.Context, ev bus.Event) error { finished <- ev.Type; return nil })
	}
	if err := client.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer func() { _ = client.Stop(ctx) }()

	res, err := client.Enqueue(ctx, episodes.CreateParams{ActorID: "charger"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(<-finished)
	dead, err := client.DeadLetters(ctx, episodes.ListParams{ActorID: "charger"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("dead letters:", len(dead.Episodes))

	close(fixed)
	ep, err := client.Requeue(ctx, res.Episode.ID, episodes.RequeueOptions{By: "ops", Reason: "network restored"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(ep.Status, ep.Requeues[0].Reason)
	fmt.Println(<-finished)
	// Output:
	// attempt 1 of 2
	// attempt 2 of 2, after "card network unreachable"
	// episode.failed
	// dead letters: 1
	// pending network restored
	// episode.completed
}
