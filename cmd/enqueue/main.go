// Command enqueue is widgetq's producer and operations tool: it imports
// account credentials, enqueues installs one at a time or from bulk files,
// shows results and status, and replays failures.
//
//	enqueue accounts import accounts.jsonl
//	enqueue bulk onboarding.jsonl
//	enqueue status
//	enqueue results --status failed
//	enqueue replay --class server
//
// It reads REDIS_URL as `worker` does; unset, it uses the embedded Redis
// that `worker` serves on 127.0.0.1:6380.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"

	"github.com/widgetq/widgetq/internal/config"
	"github.com/widgetq/widgetq/internal/kommohost"
	"github.com/widgetq/widgetq/internal/redisconn"
	"github.com/widgetq/widgetq/internal/seal"
	"github.com/widgetq/widgetq/internal/store"
	"github.com/widgetq/widgetq/internal/webhook"
	"github.com/widgetq/widgetq/producer"
	"github.com/widgetq/widgetq/tasks"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// usageError is a bad command line: exit code 2.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return &usageError{fmt.Errorf(format, args...)} }

// exitError carries an exit code with an already-reported failure (e.g.
// rejected bulk lines).
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

// app is what every subcommand shares.
type app struct {
	getenv         func(string) string
	stdin          io.Reader
	stdout, stderr io.Writer

	redisURL, prefix, queue string
	shards                  int

	conn *redisconn.Conn
	rdb  redis.UniversalClient
	st   *store.Store
	prod *producer.Producer
	// webhook is WIDGETQ_WEBHOOK_*: batches write events when enabled;
	// serve checks callback URLs against its hosts.
	webhook webhook.Config
	// warnRedis says once that Redis is failing and being retried.
	warnRedis sync.Once
}

// connect opens Redis once and fails fast, naming the server.
func (a *app) connect(ctx context.Context) error {
	if a.rdb != nil {
		return nil
	}
	url := a.redisURL
	if url == "" {
		url = a.getenv("REDIS_URL")
	}
	// The settings every widgetq process shares, read and checked as the
	// worker reads them (internal/config).
	keys, err := config.Keys(a.getenv)
	if err != nil {
		return &usageError{err}
	}
	prefix := a.prefix
	if prefix == "" {
		prefix = a.getenv("WIDGETQ_PREFIX")
	}
	if prefix, err = config.Prefix(prefix); err != nil {
		return usagef("prefix: %v", err)
	}
	hosts, err := config.Hosts(a.getenv(kommohost.EnvVar))
	if err != nil {
		return usagef("%s: %v", kommohost.EnvVar, err)
	}
	shards := a.shards
	if shards == 0 {
		if shards, err = config.Shards(a.getenv("WIDGETQ_SHARDS")); err != nil {
			return usagef("WIDGETQ_SHARDS: %v", err)
		}
	}
	if shards < 0 {
		return usagef("--shards: want a positive integer, got %d", shards)
	}
	if url == "" {
		a.conn = redisconn.Embedded(redisconn.EmbeddedAddr)
	} else if a.conn, err = redisconn.Parse(url); err != nil {
		return &usageError{err}
	}
	a.rdb = a.conn.Client()
	if err := a.conn.Ping(ctx, a.rdb); err != nil {
		a.rdb.Close()
		a.rdb = nil
		if url == "" {
			return fmt.Errorf("%w\n(no REDIS_URL is set, so enqueue looks for the embedded Redis that `worker` serves at %s: start `worker`, or set REDIS_URL)", err, redisconn.EmbeddedAddr)
		}
		return err
	}
	a.st = store.New(a.rdb, prefix).WithKeys(keys).WithHosts(hosts)
	done, err := a.st.Migrate(ctx)
	if err != nil {
		return err
	}
	for _, d := range done {
		fmt.Fprintln(a.stderr, "migrated:", d)
	}
	a.prod = producer.New(a.rdb, prefix, asynq.Queue(a.queueName()))
	a.prod.Shard(a.queueName(), shards)
	if a.webhook, err = config.Webhook(a.getenv("WIDGETQ_WEBHOOK_URL"), a.getenv("WIDGETQ_WEBHOOK_HOSTS"), a.getenv); err != nil {
		return &usageError{err}
	}
	a.prod.EmitEvents(a.webhook.Enabled())
	if keys.Enabled() {
		key, _ := seal.ParseKey(a.getenv("WIDGETQ_SECRET_KEY"))
		if err := a.prod.SealSettings(key); err != nil {
			return &usageError{err}
		}
	}
	return nil
}

func (a *app) queueName() string {
	if a.queue != "" {
		return a.queue
	}
	if q := a.getenv("WIDGETQ_QUEUE"); q != "" {
		return q
	}
	return tasks.DefaultQueue
}

func (a *app) close() {
	if a.prod != nil {
		a.prod.Close()
	}
	if a.rdb != nil {
		a.rdb.Close()
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	redisconn.Quiet()
	a := &app{getenv: getenv, stdin: stdin, stdout: stdout, stderr: stderr}
	defer a.close()
	root := newRoot(a)
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.msg != "" {
			fmt.Fprintln(stderr, "enqueue:", ee.msg)
		}
		return ee.code
	}
	fmt.Fprintln(stderr, "enqueue:", err)
	var ue *usageError
	if errors.As(err, &ue) || isCobraUsage(err) {
		fmt.Fprintln(stderr, "Run 'enqueue --help' for usage.")
		return exitUsage
	}
	return exitFailure
}

// isCobraUsage recognizes cobra's own errors for unknown commands and
// flags and wrong argument counts.
func isCobraUsage(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand", "accepts ", "requires ", "invalid argument", "flag needs an argument", "required flag"} {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}

func newRoot(a *app) *cobra.Command {
	root := &cobra.Command{
		Use:   "enqueue",
		Short: "Enqueue widget installs and run widgetq's operations",
		Long: `enqueue is widgetq's producer and operations tool.

It reads REDIS_URL as worker does (redis://, rediss://, redis-sentinel://,
or a comma-separated list of cluster nodes); unset, it uses the embedded
Redis that worker serves on 127.0.0.1:6380. WIDGETQ_PREFIX and
WIDGETQ_QUEUE set the key prefix and the queue (WIDGETQ_SHARDS splits it by
account, as worker -shards does). WIDGETQ_SECRET_KEY (and,
during a rotation, WIDGETQ_SECRET_KEY_PREVIOUS) seal tokens and settings as
worker does; WIDGETQ_API_TOKEN is the bearer token of serve;
KOMMO_ACCESS_TOKEN and KOMMO_REFRESH_TOKEN feed accounts add.

Exit codes: 0 success, 1 failure (or rejected lines), 2 usage error.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&a.redisURL, "redis-url", "", "Redis URL (default $REDIS_URL, else the embedded 127.0.0.1:6380)")
	root.PersistentFlags().StringVar(&a.prefix, "prefix", "", "prefix of widgetq's Redis keys (default $WIDGETQ_PREFIX, else widgetq)")
	root.PersistentFlags().StringVar(&a.queue, "queue", "", "queue for new tasks (default $WIDGETQ_QUEUE, else widgets)")
	root.PersistentFlags().IntVar(&a.shards, "shards", 0, "split the queue into this many, by account, as workers started with -shards do (default $WIDGETQ_SHARDS, else 1)")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err} })
	root.AddCommand(newAccountsCmd(a), newIntegrationsCmd(a), newInstallCmd(a), newUninstallCmd(a), newBulkCmd(a), newResultsCmd(a), newStatusCmd(a), newBatchesCmd(a), newVerifyCmd(a), newReplayCmd(a), newSecretsCmd(a), newServeCmd(a))
	root.CompletionOptions.DisableDefaultCmd = true
	return root
}

// needRedis is the PreRunE of commands that talk to Redis.
func (a *app) needRedis(cmd *cobra.Command, _ []string) error { return a.connect(cmd.Context()) }
