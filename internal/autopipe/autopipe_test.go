package autopipe_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/widgetq/widgetq/internal/autopipe"
	"github.com/widgetq/widgetq/internal/redistest"
)

var incr = redis.NewScript(`return redis.call('INCRBY', KEYS[1], ARGV[1])`)

// countingHook counts the round trips that reach the server, and the
// EVALSHAs sent on their own and in pipelines.
type countingHook struct {
	mu                         sync.Mutex
	single, pipes              int
	pipelinedEvalSh            int
	evalShaAlone, evalShaPiped int
}

func (h *countingHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *countingHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.mu.Lock()
		h.single++
		if cmd.Name() == "evalsha" {
			h.evalShaAlone++
		}
		h.mu.Unlock()
		return next(ctx, cmd)
	}
}
func (h *countingHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.mu.Lock()
		h.pipes++
		h.pipelinedEvalSh += len(cmds)
		for _, c := range cmds {
			if c.Name() == "evalsha" {
				h.evalShaPiped++
			}
		}
		h.mu.Unlock()
		return next(ctx, cmds)
	}
}

func TestConcurrentCallsShareRoundTripsAndGetTheirOwnReplies(t *testing.T) {
	t.Parallel()
	r := redistest.New(t)
	hook := &countingHook{}
	r.Client.AddHook(hook)
	ctx := context.Background()
	if err := incr.Load(ctx, r.Client).Err(); err != nil {
		t.Fatal(err)
	}
	a := autopipe.New(r.Client, 2, 64)
	defer a.Close()
	key := "autopipe-" + redistest.Unique(t)
	const n = 400
	var wg sync.WaitGroup
	got := make([]int64, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := incr.Run(ctx, a, []string{key}, 1).Int64()
			if err != nil {
				t.Error(err)
			}
			got[i] = v
		}()
	}
	wg.Wait()
	seen := map[int64]bool{}
	for _, v := range got {
		if v < 1 || v > n || seen[v] {
			t.Fatalf("reply %d repeated or out of range: replies were mixed up", v)
		}
		seen[v] = true
	}
	hook.mu.Lock()
	defer hook.mu.Unlock()
	if hook.pipelinedEvalSh < n || hook.pipes >= n/4 {
		t.Fatalf("%d calls in %d pipelines: not batched", hook.pipelinedEvalSh, hook.pipes)
	}
	t.Logf("%d calls in %d round trips", n, hook.pipes)
}

func TestErrorsStayWithTheirCall(t *testing.T) {
	t.Parallel()
	r := redistest.New(t)
	a := autopipe.New(r.Client, 1, 16)
	defer a.Close()
	ctx := context.Background()
	bad := redis.NewScript(`return redis.error_reply('boom')`)
	_ = bad.Load(ctx, r.Client)
	_ = incr.Load(ctx, r.Client)
	var wg sync.WaitGroup
	errs := make([]error, 20)
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := incr
			if i%2 == 0 {
				s = bad
			}
			errs[i] = s.Run(ctx, a, []string{fmt.Sprint("k-", redistest.Unique(t))}, 1).Err()
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if (i%2 == 0) != (err != nil) {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	// A script the server does not know falls back to EVAL, as go-redis does.
	fresh := redis.NewScript(fmt.Sprintf(`return %d`, time.Now().UnixNano()%1000))
	if err := fresh.Run(ctx, a, nil).Err(); err != nil {
		t.Fatalf("NOSCRIPT fallback: %v", err)
	}
}

func TestCanceledCallerReturnsAndCloseDrains(t *testing.T) {
	t.Parallel()
	r := redistest.New(t)
	a := autopipe.New(r.Client, 1, 8)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := incr.Run(ctx, a, []string{"x"}, 1).Err(); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled caller: %v", err)
	}
	a.Close()
	// After Close, calls pass straight through.
	if err := incr.Run(context.Background(), a, []string{"autopipe-closed-" + redistest.Unique(t)}, 1).Err(); err != nil {
		t.Fatalf("after Close: %v", err)
	}
}

// TestDirectCallsSkipThePipeline: a call Direct picks goes out on its own
// at once (a round trip that is not a pipeline); the others are
// pipelined.
func TestDirectCallsSkipThePipeline(t *testing.T) {
	t.Parallel()
	r := redistest.New(t)
	ctx := context.Background()
	if err := incr.Load(ctx, r.Client).Err(); err != nil {
		t.Fatal(err)
	}
	hook := &countingHook{}
	r.Client.AddHook(hook)
	a := autopipe.NewWith(r.Client, autopipe.Options{Loops: 1, Direct: func(keys []string) bool { return strings.HasSuffix(keys[0], ":pending") }})
	defer a.Close()
	u := redistest.Unique(t)
	if err := incr.Run(ctx, a, []string{"autopipe-" + u + ":pending"}, 1).Err(); err != nil {
		t.Fatal(err)
	}
	if err := incr.Run(ctx, a, []string{"autopipe-" + u + ":other"}, 1).Err(); err != nil {
		t.Fatal(err)
	}
	hook.mu.Lock()
	defer hook.mu.Unlock()
	if hook.evalShaAlone != 1 || hook.evalShaPiped != 1 {
		t.Fatalf("%d EVALSHAs on their own, %d pipelined; want 1 and 1", hook.evalShaAlone, hook.evalShaPiped)
	}
}
