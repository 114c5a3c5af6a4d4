package crashpoint

import (
	"context"
	"testing"
)

func TestFire(t *testing.T) {
	Fire(context.Background(), BeforeRecord, 0, "no hook: nothing happens")
	var got []string
	ctx := With(context.Background(), func(p Point, seq int, name string) {
		got = append(got, p.String()+" "+name)
		if seq != 3 {
			t.Errorf("seq %d, want 3", seq)
		}
	})
	Fire(ctx, BeforeRecord, 3, "charge")
	Fire(ctx, AfterRecord, 3, "charge")
	if len(got) != 2 || got[0] != "before-record charge" || got[1] != "after-record charge" {
		t.Fatalf("hook calls: %v", got)
	}
	if Point(9).String() != "unknown" {
		t.Fatal("an unknown point must say so")
	}
}
