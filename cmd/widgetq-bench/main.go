// Command widgetq-bench measures widgetq side by side with what it is
// compared to, with real processes (see internal/bench). `make bench` and
// `make bench-short` run it. Run as `widgetq-bench noop-worker …` it is the
// bare asynq worker the bench compares against; as `widgetq-bench
// naive-worker …` the naive install handler (naive_ratio).
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/widgetq/widgetq/internal/bench"
	"github.com/widgetq/widgetq/internal/redisconn"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "noop-worker" {
		os.Exit(bench.NoopWorker(os.Args[2:]))
	}
	if len(os.Args) > 1 && os.Args[1] == "naive-worker" {
		os.Exit(bench.NaiveWorker(os.Args[2:]))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	redisconn.Quiet()
	if err := bench.Run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "widgetq-bench:", err)
		os.Exit(1)
	}
}
