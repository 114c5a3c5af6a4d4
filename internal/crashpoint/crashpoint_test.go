package crashpoint

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestFire(t *testing.T) {
	t.Parallel()
	Fire(context.Background(), BeforeRecord, 0, "no hook: nothing happens")
	var got []string
	ctx := With(context.Background(), func(p Point, seq int, name string) {
		require.Equal(t, 3, seq)
		got = append(got, p.String()+" "+name)
	})
	Fire(ctx, BeforeRecord, 3, "charge")
	Fire(ctx, AfterRecord, 3, "charge")
	require.Equal(t, []string{"before-record charge", "after-record charge"}, got)
	require.Equal(t, "unknown", Point(9).String(), "an unknown point must say so")
}

// A panicking hook unwinds through Fire to its caller: the simulated crash
// relies on it.
func TestFirePanics(t *testing.T) {
	t.Parallel()
	ctx := With(context.Background(), func(Point, int, string) { panic("crash") })
	require.PanicsWithValue(t, "crash", func() { Fire(ctx, AfterRecord, 0, "step") })
}
