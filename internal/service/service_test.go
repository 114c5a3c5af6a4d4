package service

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestAwaitStopRunsCleanupOnceTheLoopsAreDone(t *testing.T) {
	t.Parallel()
	done := make(chan struct{})
	close(done)
	cleaned := false
	require.NoError(t, AwaitStop(context.Background(), "test", done, func() { cleaned = true }))
	require.True(t, cleaned, "cleanup ran before AwaitStop returned")
}

// When ctx ends first, Stop reports it and the cleanup still runs once the
// loops return, in the background.
func TestAwaitStopBoundedByCtxCleansUpLater(t *testing.T) {
	t.Parallel()
	done := make(chan struct{})
	cleaned := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := AwaitStop(ctx, "test", done, func() { close(cleaned) })
	require.ErrorIs(t, err, context.Canceled)
	require.Contains(t, err.Error(), "stopping the test")
	select {
	case <-cleaned:
		t.Fatal("cleanup ran while the loops were still running")
	default:
	}
	close(done)
	select {
	case <-cleaned:
	case <-time.After(10 * time.Second):
		t.Fatal("cleanup never ran after the loops returned")
	}
}
