package redistest

import (
	"context"
	"testing"
)

// A passing test's keys, its queues' keys and names are gone after it;
// another test's stay.
func TestForgetLeavesNothingBehind(t *testing.T) {
	ctx := context.Background()
	r := New(t)
	mine, other := Unique(t), Unique(t)
	q := "q-" + mine
	mineKeys := []string{"{" + mine + "}:res:1:w", "asynq:{" + q + "}:pending", "asynq:{" + q + "-1}:t:x"}
	otherKeys := []string{"{" + other + "}:res:1:w", "asynq:{q-" + other + "}:pending"}
	t.Run("writes", func(t *testing.T) {
		Forget(t, r.Client, mine, q)
		for _, k := range append(append([]string{}, mineKeys...), otherKeys...) {
			if err := r.Client.Set(ctx, k, "v", 0).Err(); err != nil {
				t.Fatal(err)
			}
		}
		if err := r.Client.SAdd(ctx, "asynq:queues", q, q+"-1", "q-"+other).Err(); err != nil {
			t.Fatal(err)
		}
	})
	if n, err := r.Client.Exists(ctx, mineKeys...).Result(); err != nil || n != 0 {
		t.Errorf("%d of the test's keys left (%v)", n, err)
	}
	if n, err := r.Client.Exists(ctx, otherKeys...).Result(); err != nil || n != int64(len(otherKeys)) {
		t.Errorf("%d of another test's %d keys left (%v)", n, len(otherKeys), err)
	}
	names, err := r.Client.SMembers(ctx, "asynq:queues").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if n == q || n == q+"-1" {
			t.Errorf("queue %s still listed", n)
		}
	}
	r.Client.Del(ctx, otherKeys...)
	r.Client.SRem(ctx, "asynq:queues", "q-"+other)
}
