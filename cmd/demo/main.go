// Command demo runs widgetq's whole job in one process (`make demo`): an
// embedded Redis, a Kommo sandbox with faults, a few hundred accounts, the
// worker, a live progress line and a summary. See internal/demo.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/widgetq/widgetq/internal/demo"
	"github.com/widgetq/widgetq/internal/seal"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// run parses flags and the environment, runs the demo, and returns the
// exit code: 0 done, 1 failed, 2 bad usage.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	accounts := fs.Int("accounts", 300, "how many sandbox accounts [WIDGETQ_DEMO_ACCOUNTS]")
	concurrency := fs.Int("concurrency", 100, "tasks run at once")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if v := getenv("WIDGETQ_DEMO_ACCOUNTS"); v != "" && !set["accounts"] {
		n, err := strconv.Atoi(v)
		if err != nil {
			fmt.Fprintf(stderr, "demo: WIDGETQ_DEMO_ACCOUNTS: want a positive integer, got %q\n", v)
			return 2
		}
		*accounts = n
	}
	if *accounts < 1 || *concurrency < 1 {
		fmt.Fprintln(stderr, "demo: -accounts and -concurrency must be positive")
		return 2
	}
	var key []byte
	if v := getenv("WIDGETQ_SECRET_KEY"); v != "" {
		k, err := seal.ParseKey(v)
		if err != nil {
			fmt.Fprintln(stderr, "demo: WIDGETQ_SECRET_KEY:", err)
			return 2
		}
		key = k
	}
	if err := demo.Run(ctx, demo.Config{Accounts: *accounts, Concurrency: *concurrency, SecretKey: key}, stdout); err != nil {
		fmt.Fprintln(stderr, "demo:", err)
		return 1
	}
	return 0
}
