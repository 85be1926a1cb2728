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
	"net/http/pprof"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hibiken/asynq"

	"github.com/widgetq/widgetq/internal/admin"
	"github.com/widgetq/widgetq/internal/autopipe"
	"github.com/widgetq/widgetq/internal/bearer"
	"github.com/widgetq/widgetq/internal/console"
	"github.com/widgetq/widgetq/internal/kommo"
	"github.com/widgetq/widgetq/internal/kommohost"
	"github.com/widgetq/widgetq/internal/metrics"
	"github.com/widgetq/widgetq/internal/ratelimit"
	"github.com/widgetq/widgetq/internal/redisconn"
	"github.com/widgetq/widgetq/internal/replay"
	"github.com/widgetq/widgetq/internal/retry"
	"github.com/widgetq/widgetq/internal/seal"
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

// usageError is a bad flag or setting: exit code 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

type config struct {
	redisURL, embeddedAddr, prefix            string
	clientID, clientSecret, redirectURI       string
	concurrency                               int
	ratePerAccount, rateGlobal                float64
	queues                                    map[string]int
	shutdownTimeout, requestTimeout, blockFor time.Duration
	retryBase, retryCap                       time.Duration
	ipBlockAccounts                           int
	ipBlockWindow, ipBlockPause               time.Duration
	logFormat                                 string
	logLevel                                  slog.Level
	debugAddr                                 string
	adminAddr                                 string
	adminTokens                               []string
	adminExplicit                             bool // set by flag or variable: no fallback port
	uiWritable                                bool
	keys                                      *seal.Keys
	hosts                                     *kommohost.List
}

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
  WIDGETQ_ADMIN_TOKEN          bearer token for the admin routes but /healthz (required
                               when -admin-addr is not loopback); a comma-separated list
                               accepts any of them, for rotation

Flags:
`

// envFlag is one setting: its flag, its variable, its default and help.
type envFlag struct {
	name, env, def, help string
}

var settings = []envFlag{
	{"redis-url", "REDIS_URL", "", "Redis: redis://, rediss://, redis-sentinel://, or a comma-separated list of cluster nodes (unset: an embedded Redis)"},
	{"embedded-addr", "WIDGETQ_EMBEDDED_ADDR", redisconn.EmbeddedAddr, "where to serve the embedded Redis when no REDIS_URL is given"},
	{"prefix", "WIDGETQ_PREFIX", store.DefaultPrefix, "prefix of widgetq's Redis keys (the same for every worker and enqueue)"},
	{"kommo-hosts", kommohost.EnvVar, kommohost.Default, "hosts that may receive an account's token and the client secret: .suffix, host or IP, comma-separated; https only (http only for a listed loopback host, e.g. 127.0.0.1 for the sandbox)"},
	{"client-id", "KOMMO_CLIENT_ID", "", "the integration's OAuth client_id (unset: tokens are used as stored, never refreshed)"},
	{"client-secret", "KOMMO_CLIENT_SECRET", "", "the integration's OAuth client_secret"},
	{"redirect-uri", "KOMMO_REDIRECT_URI", "", "the integration's redirect URI, sent with token refreshes"},
	{"concurrency", "WIDGETQ_CONCURRENCY", "50", "tasks run at once by this process"},
	{"rate-per-account", "WIDGETQ_RATE_PER_ACCOUNT", "7", "requests per second to one account, over all workers (Kommo's limit is 7)"},
	{"rate-global", "WIDGETQ_RATE_GLOBAL", "0", "requests per second over all accounts and workers (0: no cap)"},
	{"queues", "WIDGETQ_QUEUES", tasks.DefaultQueue, "queues to serve, with priorities: name[:weight],…"},
	{"shards", "WIDGETQ_SHARDS", "1", "each queue is split by account into this many (name-0…name-N-1), as producers were told; all are served"},
	{"shutdown-timeout", "WIDGETQ_SHUTDOWN_TIMEOUT", "25s", "on SIGTERM, how long running tasks may finish before they go back to the queue"},
	{"request-timeout", "WIDGETQ_REQUEST_TIMEOUT", "30s", "bound on each request to Kommo"},
	{"retry-base", "WIDGETQ_RETRY_BASE", "2s", "first retry delay after a retryable failure (exponential, with jitter)"},
	{"retry-cap", "WIDGETQ_RETRY_CAP", "10m", "longest retry delay"},
	{"block-for", "WIDGETQ_BLOCK_FOR", "24h", "how long an account blocked by Kommo (HTML 403) is left alone, unless unblocked"},
	{"ip-block-accounts", "WIDGETQ_IP_BLOCK_ACCOUNTS", "3", "HTML 403 blocks from this many accounts within -ip-block-window mean Kommo blocks the IP: every worker pauses all Kommo traffic"},
	{"ip-block-window", "WIDGETQ_IP_BLOCK_WINDOW", "5m", "the window of -ip-block-accounts"},
	{"ip-block-pause", "WIDGETQ_IP_BLOCK_PAUSE", "1h", "how long all Kommo traffic stays paused after an IP block, unless `enqueue accounts unblock --all`"},
	{"log-format", "WIDGETQ_LOG_FORMAT", "text", "log format: text or json"},
	{"log-level", "WIDGETQ_LOG_LEVEL", "info", "log level: debug, info, warn or error"},
	{"admin-addr", "WIDGETQ_ADMIN_ADDR", admin.DefaultAddr, "serve /healthz, /readyz and /metrics here (empty: off); beyond loopback WIDGETQ_ADMIN_TOKEN is required. Unset and the default taken: the next free port up to 9099"},
	{"admin-ui-writable", "WIDGETQ_ADMIN_UI_WRITABLE", "false", "let the console delete, run and archive tasks (/ui) and replay failures (/results) (default: view only)"},
	{"debug-addr", "WIDGETQ_DEBUG_ADDR", "", "serve Go's pprof profiles at this loopback address (e.g. 127.0.0.1:6060); empty: off"},
}

func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (*config, error) {
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	vals := map[string]*string{}
	for _, s := range settings {
		help := fmt.Sprintf("%s [%s]", s.help, s.env)
		vals[s.name] = fs.String(s.name, s.def, help)
	}
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usageText)
		fs.PrintDefaults()
	}
	for _, a := range args {
		if a == "-demo" || a == "--demo" {
			return nil, usagef("the demo is its own command now: make demo (go run ./cmd/demo)")
		}
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
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	get := func(name string) (string, string) {
		for _, s := range settings {
			if s.name == name {
				if !set[name] {
					if v := getenv(s.env); v != "" {
						return v, s.env
					}
				}
				return *vals[name], "-" + name
			}
		}
		panic("unknown setting " + name)
	}
	c := &config{}
	var err error
	c.redisURL, _ = get("redis-url")
	c.embeddedAddr, _ = get("embedded-addr")
	c.prefix, _ = get("prefix")
	if v, src := get("kommo-hosts"); true {
		var herr error
		if c.hosts, herr = kommohost.Parse(v); herr != nil {
			err = errors.Join(err, usagef("%s: %v", src, strings.TrimPrefix(herr.Error(), kommohost.EnvVar+": ")))
		}
	}
	c.clientID, _ = get("client-id")
	c.clientSecret, _ = get("client-secret")
	c.redirectURI, _ = get("redirect-uri")
	c.debugAddr, _ = get("debug-addr")
	if c.debugAddr != "" {
		host, _, herr := net.SplitHostPort(c.debugAddr)
		if ip := net.ParseIP(host); herr != nil || (host != "localhost" && (ip == nil || !ip.IsLoopback())) {
			err = errors.Join(err, usagef("debug-addr: want a loopback host:port, got %q", c.debugAddr))
		}
	}
	c.adminAddr, _ = get("admin-addr")
	c.adminExplicit = set["admin-addr"] || getenv("WIDGETQ_ADMIN_ADDR") != ""
	c.adminTokens = bearer.Parse(getenv("WIDGETQ_ADMIN_TOKEN"))
	if v, src := get("admin-ui-writable"); v != "" {
		b, berr := strconv.ParseBool(v)
		if berr != nil {
			err = errors.Join(err, usagef("%s: want true or false, got %q", src, v))
		}
		c.uiWritable = b
	}
	if c.adminAddr != "" {
		if aerr := admin.CheckAddr(c.adminAddr, c.adminTokens); aerr != nil {
			err = errors.Join(err, usagef("admin-addr: %v", aerr))
		}
	}
	intVal := func(name string, lo int) int {
		v, src := get(name)
		n, e := strconv.Atoi(strings.TrimSpace(v))
		if e != nil || n < lo {
			err = errors.Join(err, usagef("%s: want an integer ≥ %d, got %q", src, lo, v))
		}
		return n
	}
	floatVal := func(name string, positive bool) float64 {
		v, src := get(name)
		f, e := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if e != nil || f < 0 || (positive && f == 0) || f > 1e6 {
			want := "a number ≥ 0"
			if positive {
				want = "a number > 0"
			}
			err = errors.Join(err, usagef("%s: want %s, got %q", src, want, v))
		}
		return f
	}
	durVal := func(name string) time.Duration {
		v, src := get(name)
		d, e := time.ParseDuration(strings.TrimSpace(v))
		if e != nil || d <= 0 {
			err = errors.Join(err, usagef("%s: want a positive duration like 30s, got %q", src, v))
		}
		return d
	}
	c.concurrency = intVal("concurrency", 1)
	c.ratePerAccount = floatVal("rate-per-account", true)
	c.rateGlobal = floatVal("rate-global", false)
	c.shutdownTimeout = durVal("shutdown-timeout")
	c.requestTimeout = durVal("request-timeout")
	c.retryBase = durVal("retry-base")
	c.retryCap = durVal("retry-cap")
	c.blockFor = durVal("block-for")
	c.ipBlockAccounts = intVal("ip-block-accounts", 1)
	c.ipBlockWindow = durVal("ip-block-window")
	c.ipBlockPause = durVal("ip-block-pause")
	if c.retryCap < c.retryBase {
		err = errors.Join(err, usagef("retry-cap %s is below retry-base %s", c.retryCap, c.retryBase))
	}
	v, src := get("queues")
	var qerr error
	if c.queues, qerr = parseQueues(v); qerr != nil {
		err = errors.Join(err, usagef("%s: %v", src, qerr))
	}
	if shards := intVal("shards", 1); shards > 1 {
		sharded := map[string]int{}
		for q, w := range c.queues {
			for _, s := range tasks.ShardQueues(q, shards) {
				sharded[s] = w
			}
		}
		c.queues = sharded
	}
	if v, src := get("log-format"); v != "text" && v != "json" {
		err = errors.Join(err, usagef("%s: want text or json, got %q", src, v))
	} else {
		c.logFormat = v
	}
	if v, src := get("log-level"); c.logLevel.UnmarshalText([]byte(v)) != nil {
		err = errors.Join(err, usagef("%s: want debug, info, warn or error, got %q", src, v))
	}
	if c.clientID != "" && c.clientSecret == "" {
		err = errors.Join(err, usagef("KOMMO_CLIENT_SECRET (-client-secret) is required with KOMMO_CLIENT_ID"))
	}
	var kerr error
	if c.keys, kerr = seal.FromEnv(getenv("WIDGETQ_SECRET_KEY"), getenv("WIDGETQ_SECRET_KEY_PREVIOUS")); kerr != nil {
		err = errors.Join(err, usagef("%v", kerr))
	}
	if strings.ContainsAny(c.prefix, "{}: ") || c.prefix == "" {
		err = errors.Join(err, usagef("prefix: %q must be non-empty without braces, colons or spaces", c.prefix))
	}
	if err != nil {
		return nil, usagef("%s", strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	return c, nil
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

func newLogger(c *config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: c.logLevel}
	if c.logFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

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
	if c.debugAddr != "" {
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		dbg := &http.Server{Addr: c.debugAddr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = dbg.ListenAndServe() }()
		defer dbg.Close()
		log.Info("pprof served", "addr", c.debugAddr)
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
	} else {
		conn, err = redisconn.Parse(c.redisURL)
		if err != nil {
			return usagef("%v", err)
		}
	}
	rdb := conn.Client()
	defer rdb.Close()
	if err := conn.WaitUp(ctx, rdb, log); err != nil {
		return err
	}
	// Concurrent tasks' script calls (rate reservations, result records)
	// share round trips.
	pipe := autopipe.New(rdb, 4, 256)
	defer pipe.Close()
	st := store.New(pipe, c.prefix).WithKeys(c.keys)
	if c.keys.Enabled() {
		if err := st.CheckKeys(ctx); err != nil {
			return usagef("WIDGETQ_SECRET_KEY: stored credentials do not open with it (%v); give the key they were sealed with, or the old one as WIDGETQ_SECRET_KEY_PREVIOUS", err)
		}
	} else {
		log.Warn("no WIDGETQ_SECRET_KEY: access and refresh tokens and widget settings rest in Redis in plaintext")
		if err := st.CheckKeys(ctx); err != nil {
			return usagef("stored credentials are sealed: set WIDGETQ_SECRET_KEY (%v)", err)
		}
	}
	lim, err := ratelimit.New(pipe, ratelimit.Config{PerAccount: c.ratePerAccount, Global: c.rateGlobal, Prefix: c.prefix})
	if err != nil {
		return usagef("%v", err)
	}
	var oauth *kommo.OAuthConfig
	if c.clientID != "" {
		oauth = &kommo.OAuthConfig{ClientID: c.clientID, ClientSecret: c.clientSecret, RedirectURL: c.redirectURI}
	} else {
		log.Warn("no KOMMO_CLIENT_ID: access tokens are used as stored and never refreshed")
	}
	m := metrics.New()
	h := worker.NewHandler(st, lim, worker.Config{
		OAuth: oauth, Hosts: c.hosts, RequestTimeout: c.requestTimeout, BlockFor: c.blockFor,
		IPBlockAccounts: c.ipBlockAccounts, IPBlockWindow: c.ipBlockWindow, IPBlockPause: c.ipBlockPause,
		Policy: retry.Policy{Base: c.retryBase, Cap: c.retryCap}, Logger: log, Metrics: m,
	})
	var serving atomic.Bool
	insp := asynq.NewInspectorFromRedisClient(rdb)
	if c.adminAddr != "" {
		ui := console.UI("/ui", conn.Opt, c.uiWritable)
		results := &console.Results{Store: st, Prefix: "/results"}
		if c.uiWritable {
			results.Replayer = &replay.Replayer{RDB: rdb, Store: st}
		}
		defer ui.Close()
		l, err := admin.Listen(admin.Candidates(c.adminAddr, c.adminExplicit))
		if err != nil {
			return err
		}
		addr := admin.Serve(ctx, l, admin.Handler(admin.Config{Tokens: c.adminTokens, Metrics: m, Ready: func(ctx context.Context) error {
			if !serving.Load() {
				return errors.New("not serving tasks (starting or stopping)")
			}
			return conn.Ping(ctx, rdb)
		}, Detail: func(ctx context.Context) string {
			p, err := st.KommoPaused(ctx)
			if err != nil || p.For(time.Now()) == 0 {
				return ""
			}
			return fmt.Sprintf("kommo: all traffic paused until %s (HTML 403 blocks from accounts %v at once: an IP block); `enqueue accounts unblock --all` lifts it",
				p.Until.Format(time.RFC3339), p.Accounts)
		}, Extra: map[string]http.Handler{"/ui/": ui, "GET /results": results, "POST /results/replay": http.HandlerFunc(results.Replay)}}))
		if addr != c.adminAddr && !strings.HasSuffix(c.adminAddr, ":0") {
			log.Warn("admin address taken (another worker on this host?): serving on the next free port; give each worker -admin-addr to choose", "wanted", c.adminAddr, "addr", addr)
		}
		log.Info("admin server listening", "addr", addr, "token_required", len(c.adminTokens) > 0)
		names := make([]string, 0, len(c.queues))
		for q := range c.queues {
			names = append(names, q)
		}
		go m.RefreshLoop(ctx, 10*time.Second, insp, names, func() (metrics.State, error) {
			n, err := st.CountBlocked(ctx)
			if err != nil {
				return metrics.State{}, err
			}
			p, err := st.KommoPaused(ctx)
			return metrics.State{Blocked: n, KommoPausedFor: p.For(time.Now())}, err
		})
	}
	srv, mux := worker.NewServer(conn.Opt, h, worker.ServerConfig{
		Concurrency: c.concurrency, Queues: c.queues, ShutdownTimeout: c.shutdownTimeout, Logger: log,
		HealthCheck: func(err error) {
			if err != nil {
				log.Error("Redis health check failed", "redis", conn.Display, "error", err)
			}
		},
	})
	if err := srv.Start(mux); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	serving.Store(true)
	go reconcileLoop(ctx, h, insp, c.queues, log)
	log.Info("worker started", "redis", conn.Display, "concurrency", c.concurrency, "queues", fmt.Sprint(c.queues),
		"rate_per_account", c.ratePerAccount, "rate_global", c.rateGlobal, "prefix", c.prefix, "secrets_sealed", c.keys.Enabled(), "secret_key_id", c.keys.KeyID())
	<-ctx.Done()
	serving.Store(false)
	log.Info("stopping: no new tasks; running ones may finish", "within", c.shutdownTimeout.String())
	srv.Shutdown()
	log.Info("worker stopped")
	return nil
}

// reconcileLoop gives a verdict, every minute, to tasks asynq archived
// without one (see worker.Handler.Reconcile): at start over the last day,
// then over the last quarter hour (passes overlap; a verdict is written
// once). Every worker runs it; the writes are conditional, so they agree.
func reconcileLoop(ctx context.Context, h *worker.Handler, insp *asynq.Inspector, queues map[string]int, log *slog.Logger) {
	names := make([]string, 0, len(queues))
	for q := range queues {
		names = append(names, q)
	}
	look := 24 * time.Hour
	t := time.NewTimer(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if n, err := h.Reconcile(ctx, insp, names, time.Now().Add(-look)); err != nil && ctx.Err() == nil {
			log.Warn("reconcile archived tasks", "error", err)
		} else if n > 0 {
			log.Warn("gave archived tasks their verdict", "tasks", n, "class", worker.ClassInterrupted)
		}
		look = 15 * time.Minute
		t.Reset(time.Minute)
	}
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
