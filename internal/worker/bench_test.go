package worker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"

	"github.com/hibiken/asynq"

	"github.com/widgetq/widgetq/internal/kommo/sandbox"
	"github.com/widgetq/widgetq/internal/worker"
	"github.com/widgetq/widgetq/tasks"
)

// BenchmarkHandleInstall is the handler's own work for one install, as a
// worker built by worker.New runs it (its auto-pipeline, limiter, metrics
// and Kommo client; asynq's dequeue and completion are not in it), against
// the sandbox in process with no rate limit, 50 installs at once. Its
// allocs/op is the handler's and the sandbox's together; a CPU profile
// (-cpuprofile) shows the handler's share.
func BenchmarkHandleInstall(b *testing.B) {
	const accounts, perAccount, first = 2000, 5, 1000
	e := setup(b, sandbox.Config{RatePerSecond: -1, AccountRatePerSecond: -1, BlockAfter: -1,
		Widgets: append(sandbox.DefaultCatalog(), sandbox.FillerWidgets(perAccount, 500)...)})
	e.addAccounts(b, first, accounts)
	w, err := worker.New(context.Background(), e.r.Client, e.r.Opt(), worker.Options{
		Prefix: e.prefix, Keys: e.st.Keys(), RatePerAccount: 100000, Concurrency: 50, Queues: map[string]int{e.queue: 1},
		Handler: worker.Config{OAuth: e.oauth(), Hosts: sandboxHosts, Logger: slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelWarn}))},
	})
	if err != nil {
		b.Fatal(err)
	}
	h := w.Handler()
	// A task per iteration, each its own enqueueing (past the 10,000
	// accounts and widgets, an install again with a new enqueue ID).
	ts := make([]*asynq.Task, b.N)
	for i := range ts {
		t, err := tasks.NewInstallWidgetTask(tasks.InstallWidgetPayload{AccountID: int64(first + i/perAccount%accounts),
			WidgetCode: fmt.Sprintf("filler_%04d", i%perAccount+1), Settings: json.RawMessage(`{"note":"bench"}`), EnqueueID: fmt.Sprintf("e%d", i)})
		if err != nil {
			b.Fatal(err)
		}
		ts[i] = t
	}
	var next, failed atomic.Int64
	b.SetParallelism(25) // 50 goroutines on 2 cores, like -concurrency 50
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := next.Add(1) - 1
			t := ts[i]
			if err := h.RunAttempt(context.Background(), t, worker.Attempt{TaskID: fmt.Sprint(i), Queue: e.queue, MaxRetry: 5}); err != nil {
				failed.Add(1)
			}
		}
	})
	b.StopTimer()
	if n := failed.Load(); n > 0 {
		b.Fatalf("%d of %d installs failed", n, next.Load())
	}
}
