// Command worker runs widgetq's tasks: it installs and uninstalls Kommo
// widgets, pacing every account to Kommo's limit across all worker
// processes, and records a result for every account.
//
//	REDIS_URL=redis://127.0.0.1:6379/0 KOMMO_CLIENT_ID=… KOMMO_CLIENT_SECRET=… worker
//
// Without REDIS_URL it serves an embedded Redis on 127.0.0.1:6380 (for a
// demo: nothing survives the process). The demo is its own command,
// cmd/demo: this binary links no fake Kommo.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/widgetq/widgetq/internal/admin"
	"github.com/widgetq/widgetq/internal/bearer"
	"github.com/widgetq/widgetq/internal/config"
	"github.com/widgetq/widgetq/internal/kommo"
	"github.com/widgetq/widgetq/internal/kommohost"
	"github.com/widgetq/widgetq/internal/redisconn"
	"github.com/widgetq/widgetq/internal/retry"
	"github.com/widgetq/widgetq/internal/store"
	"github.com/widgetq/widgetq/internal/worker"
	"github.com/widgetq/widgetq/tasks"
)

// ownsProcess is set by main: run may then take process-wide settings
// (go-redis's logger), which tests calling run in parallel must not.
var ownsProcess bool

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ownsProcess = true
	if pct, ok := gcPercent(os.Getenv); ok {
		debug.SetGCPercent(pct)
	}
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
	case errors.As(err, new(*usageError)):
		fmt.Fprintln(os.Stderr, "worker:", err)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "worker:", err)
		os.Exit(1)
	}
}

// defaultGOGC is the worker's garbage-collection target when GOGC is not
// set: the heap may grow to five times what is live between collections
// instead of Go's twice. A worker's live heap is small (the tasks in
// flight), and at Go's default a busy one spent about a tenth of its CPU
// collecting; with 400 its CPU per install fell by about a tenth in the
// bench's naive_ratio passes, for some tens of MiB (worker_peak_rss_mib:
// 33 → 66–69 MiB at concurrency 500).
const defaultGOGC = 400

// gcPercent is the GC target the worker sets for its process: the
// default, unless the operator's GOGC is set (Go then applies it itself,
// and "off" stays off).
func gcPercent(getenv func(string) string) (int, bool) {
	if getenv("GOGC") != "" {
		return 0, false
	}
	return defaultGOGC, true
}

// usageError is a bad flag or setting: exit code 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

const usageText = `Usage: worker [flags]
       worker probe healthz|readyz   (exit 0 when this machine's worker answers 200)

Runs widgetq's install and uninstall tasks from Redis. Every flag can also
be set by the environment variable named in brackets; a flag wins over its
variable. Secrets (KOMMO_CLIENT_SECRET, passwords in REDIS_URL) are best
given by environment.

Environment only:
  WIDGETQ_SECRET_KEY           32 bytes in base64 (openssl rand -base64 32): seal
                               tokens and widget settings in Redis with AES-256-GCM
  WIDGETQ_SECRET_KEY_PREVIOUS  the key before a rotation, still accepted for reading
  WIDGETQ_WEBHOOK_SECRET       signs webhook events (HMAC-SHA256): set, the worker
                               writes each final result's event and delivers them
  WIDGETQ_WEBHOOK_SECRET_PREVIOUS  the secret before a rotation: signed with both
  WIDGETQ_ADMIN_TOKEN          bearer token for the admin routes but /healthz (required
                               when -admin-addr is not loopback); a comma-separated list
                               accepts any of them, for rotation

Flags:
`

var settings = []config.Setting{
	{Name: "redis-url", Env: "REDIS_URL", Default: "", Help: "Redis: redis://, rediss://, redis-sentinel://, or a comma-separated list of cluster nodes (unset: an embedded Redis)"},
	{Name: "embedded-addr", Env: "WIDGETQ_EMBEDDED_ADDR", Default: redisconn.EmbeddedAddr, Help: "where to serve the embedded Redis when no REDIS_URL is given"},
	{Name: "prefix", Env: "WIDGETQ_PREFIX", Default: store.DefaultPrefix, Help: "prefix of widgetq's Redis keys (the same for every worker and enqueue)"},
	{Name: "kommo-hosts", Env: kommohost.EnvVar, Default: kommohost.Default, Help: "hosts that may receive an account's token and the client secret: .suffix, host or IP, comma-separated; https only (http only for a listed loopback host, e.g. 127.0.0.1 for the sandbox)"},
	{Name: "client-id", Env: "KOMMO_CLIENT_ID", Default: "", Help: "the integration's OAuth client_id (unset: tokens are used as stored, never refreshed)"},
	{Name: "client-secret", Env: "KOMMO_CLIENT_SECRET", Default: "", Help: "the integration's OAuth client_secret"},
	{Name: "redirect-uri", Env: "KOMMO_REDIRECT_URI", Default: "", Help: "the integration's redirect URI, sent with token refreshes"},
	{Name: "concurrency", Env: "WIDGETQ_CONCURRENCY", Default: "50", Help: "tasks run at once by this process"},
	{Name: "rate-per-account", Env: "WIDGETQ_RATE_PER_ACCOUNT", Default: "7", Help: "requests per second of one integration to one account, over all workers (Kommo's limit is 7)"},
	{Name: "rate-per-account-total", Env: "WIDGETQ_RATE_PER_ACCOUNT_TOTAL", Default: "0", Help: "requests per second to one account over all integrations and workers (0: 50, or rate-per-account if higher); rate-per-account is each integration's share"},
	{Name: "webhook-url", Env: "WIDGETQ_WEBHOOK_URL", Default: "", Help: "where webhook events go (batch callback URLs aside); needs WIDGETQ_WEBHOOK_SECRET"},
	{Name: "webhook-hosts", Env: "WIDGETQ_WEBHOOK_HOSTS", Default: "", Help: "hosts a batch's callback_url may point to, as WIDGETQ_KOMMO_HOSTS lists them (empty: none)"},
	{Name: "rate-global", Env: "WIDGETQ_RATE_GLOBAL", Default: "0", Help: "requests per second over all accounts and workers (0: no cap)"},
	{Name: "queues", Env: "WIDGETQ_QUEUES", Default: tasks.DefaultQueue, Help: "queues to serve, with priorities: name[:weight],…"},
	{Name: "shards", Env: "WIDGETQ_SHARDS", Default: "1", Help: "each queue is split by account into this many (name-0…name-N-1), as producers were told; all are served"},
	{Name: "shutdown-timeout", Env: "WIDGETQ_SHUTDOWN_TIMEOUT", Default: "25s", Help: "on SIGTERM, how long running tasks may finish before they go back to the queue"},
	{Name: "request-timeout", Env: "WIDGETQ_REQUEST_TIMEOUT", Default: "30s", Help: "bound on each request to Kommo"},
	{Name: "retry-base", Env: "WIDGETQ_RETRY_BASE", Default: "2s", Help: "first retry delay after a retryable failure (exponential, with jitter)"},
	{Name: "retry-cap", Env: "WIDGETQ_RETRY_CAP", Default: "10m", Help: "longest retry delay"},
	{Name: "block-for", Env: "WIDGETQ_BLOCK_FOR", Default: "24h", Help: "how long an account blocked by Kommo (HTML 403) is left alone, unless unblocked"},
	{Name: "ip-block-accounts", Env: "WIDGETQ_IP_BLOCK_ACCOUNTS", Default: "5", Help: "HTML 403 blocks from this many accounts within -ip-block-window, with no success between them, mean Kommo blocks the IP: every worker pauses all Kommo traffic"},
	{Name: "ip-block-window", Env: "WIDGETQ_IP_BLOCK_WINDOW", Default: "5m", Help: "the window of -ip-block-accounts"},
	{Name: "ip-block-pause", Env: "WIDGETQ_IP_BLOCK_PAUSE", Default: "1h", Help: "how long all Kommo traffic stays paused after an IP block, unless `enqueue accounts unblock --all`"},
	{Name: "log-format", Env: "WIDGETQ_LOG_FORMAT", Default: "text", Help: "log format: text or json"},
	{Name: "log-level", Env: "WIDGETQ_LOG_LEVEL", Default: "info", Help: "log level: debug, info, warn or error"},
	{Name: "admin-addr", Env: "WIDGETQ_ADMIN_ADDR", Default: admin.DefaultAddr, Help: "serve /healthz, /readyz and /metrics here (empty: off); beyond loopback WIDGETQ_ADMIN_TOKEN is required. Unset and the default taken: the next free port up to 9099"},
	{Name: "admin-ui-writable", Env: "WIDGETQ_ADMIN_UI_WRITABLE", Default: "false", Help: "let the console delete, run and archive tasks (/ui) and replay failures (/results) (default: view only)"},
	{Name: "debug-addr", Env: "WIDGETQ_DEBUG_ADDR", Default: "", Help: "serve Go's pprof profiles at this loopback address (e.g. 127.0.0.1:6060); empty: off"},
}

// setup is what parseConfig reads: where Redis is, how to log, and the
// worker's options.
type setup struct {
	redisURL, embeddedAddr string
	logFormat              string
	logLevel               slog.Level
	opts                   worker.Options
}

func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (*setup, error) {
	for _, a := range args {
		if a == "-demo" || a == "--demo" {
			return nil, usagef("the demo is its own command now: make demo (go run ./cmd/demo)")
		}
	}
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	l := config.Bind(fs, getenv, settings)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usageText)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, usagef("%v", err)
	}
	if fs.NArg() > 0 {
		return nil, usagef("unexpected argument %q (see -help)", fs.Arg(0))
	}
	l.Parsed(fs)
	c := &setup{redisURL: l.String("redis-url"), embeddedAddr: l.String("embedded-addr")}
	o := &c.opts
	var err error
	if o.Prefix, err = config.Prefix(l.String("prefix")); err != nil || l.String("prefix") == "" {
		l.Fail("prefix", "%q must be non-empty without braces, colons or spaces", l.String("prefix"))
	}
	if o.Handler.Hosts, err = config.Hosts(l.String("kommo-hosts")); err != nil {
		l.Fail("kommo-hosts", "%v", err)
	}
	if o.Keys, err = config.Keys(getenv); err != nil {
		l.Failf("%v", err)
	}
	if o.Webhook, err = config.Webhook(l.String("webhook-url"), l.String("webhook-hosts"), getenv); err != nil {
		l.Failf("%v", err)
	}
	if id := l.String("client-id"); id != "" {
		o.Handler.OAuth = &kommo.OAuthConfig{ClientID: id, ClientSecret: l.String("client-secret"), RedirectURL: l.String("redirect-uri")}
	}
	o.DebugAddr = l.String("debug-addr")
	o.AdminAddr = l.String("admin-addr")
	o.AdminExplicit = l.Explicit("admin-addr")
	o.AdminTokens = bearer.Parse(getenv("WIDGETQ_ADMIN_TOKEN"))
	o.UIWritable = l.Bool("admin-ui-writable")
	o.Concurrency = l.Int("concurrency", 1)
	o.RatePerAccount = l.Float("rate-per-account", true)
	o.RateAccountTotal = l.Float("rate-per-account-total", false)
	o.RateGlobal = l.Float("rate-global", false)
	o.ShutdownTimeout = l.Duration("shutdown-timeout")
	o.Handler.RequestTimeout = l.Duration("request-timeout")
	o.Handler.Policy = retry.Policy{Base: l.Duration("retry-base"), Cap: l.Duration("retry-cap")}
	o.Handler.BlockFor = l.Duration("block-for")
	o.Handler.IPBlockAccounts = l.Int("ip-block-accounts", 1)
	o.Handler.IPBlockWindow = l.Duration("ip-block-window")
	o.Handler.IPBlockPause = l.Duration("ip-block-pause")
	var qerr error
	if o.Queues, qerr = parseQueues(l.String("queues")); qerr != nil {
		l.Fail("queues", "%v", qerr)
	}
	if shards := l.Int("shards", 1); shards > 1 {
		sharded := map[string]int{}
		for q, w := range o.Queues {
			for _, s := range tasks.ShardQueues(q, shards) {
				sharded[s] = w
			}
		}
		o.Queues = sharded
	}
	if c.logFormat = l.String("log-format"); c.logFormat != "text" && c.logFormat != "json" {
		l.Fail("log-format", "want text or json, got %q", c.logFormat)
	}
	if c.logLevel.UnmarshalText([]byte(l.String("log-level"))) != nil {
		l.Fail("log-level", "want debug, info, warn or error, got %q", l.String("log-level"))
	}
	// The ranges: worker.Options.Validate holds them, naming the setting.
	if verr := o.Validate(); verr != nil {
		for _, e := range flatten(verr) {
			var se *worker.SettingError
			if errors.As(e, &se) && se.Setting != "client-secret" {
				l.Fail(se.Setting, "%s", se.Msg)
			} else if errors.As(e, &se) {
				l.Failf("%s", se.Msg)
			}
		}
	}
	if err := l.Err(); err != nil {
		return nil, usagef("%s", strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	return c, nil
}

// flatten lists the errors errors.Join put together.
func flatten(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

func parseQueues(v string) (map[string]int, error) {
	q := map[string]int{}
	for _, part := range strings.Split(v, ",") {
		part = strings.TrimSpace(part)
		name, w, hasW := strings.Cut(part, ":")
		weight := 1
		if hasW {
			n, err := strconv.Atoi(w)
			if err != nil || n < 1 {
				return nil, fmt.Errorf("queue %q: weight must be a positive integer", name)
			}
			weight = n
		}
		if name == "" {
			return nil, fmt.Errorf("empty queue name in %q", v)
		}
		q[name] = weight
	}
	return q, nil
}

func newLogger(c *setup, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: c.logLevel}
	if c.logFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// run reads the configuration, connects to Redis (waiting for it), and
// runs the worker until ctx ends.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "probe" {
		return probe(ctx, args[1:], getenv, stdout)
	}
	c, err := parseConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	log := newLogger(c, stderr)
	if ownsProcess {
		redisconn.LogTo(log)
	}
	var conn *redisconn.Conn
	if c.redisURL == "" {
		var stopEmbedded func()
		conn, stopEmbedded, err = redisconn.StartEmbedded(c.embeddedAddr)
		if err != nil {
			return fmt.Errorf("no REDIS_URL, and %w", err)
		}
		defer stopEmbedded()
		log.Warn("no REDIS_URL: serving an embedded Redis (miniredis); nothing survives this process — for demos only", "addr", c.embeddedAddr)
	} else if conn, err = redisconn.Parse(c.redisURL); err != nil {
		return usagef("%v", err)
	}
	rdb := conn.Client()
	defer rdb.Close()
	if err := conn.WaitUp(ctx, rdb, log); err != nil {
		return err
	}
	c.opts.Handler.Logger, c.opts.Display = log, conn.Display
	w, err := worker.New(ctx, rdb, conn.Opt, c.opts)
	if errors.Is(err, worker.ErrKeys) {
		return usagef("%s", strings.TrimPrefix(err.Error(), worker.ErrKeys.Error()+": "))
	}
	if err != nil {
		return err
	}
	return w.Run(ctx)
}

// probe asks this machine's worker's admin server for /healthz or /readyz
// (with WIDGETQ_ADMIN_TOKEN) and fails unless it answers 200: an exec
// probe for images without curl, and for orchestrators that cannot put a
// secret into an HTTP probe's header.
func probe(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if len(args) != 1 || (args[0] != "healthz" && args[0] != "readyz") {
		return usagef("usage: worker probe healthz|readyz")
	}
	addr := getenv("WIDGETQ_ADMIN_ADDR")
	if addr == "" {
		addr = admin.DefaultAddr
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return usagef("WIDGETQ_ADMIN_ADDR: want host:port, got %q", addr)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+net.JoinHostPort(host, port)+"/"+args[0], nil)
	if toks := bearer.Parse(getenv("WIDGETQ_ADMIN_TOKEN")); len(toks) > 0 {
		req.Header.Set("Authorization", "Bearer "+toks[0]) // the first: the newest, in a rotation
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("probe %s: %w", args[0], err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	fmt.Fprint(stdout, string(body))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("probe %s: %s", args[0], resp.Status)
	}
	return nil
}
