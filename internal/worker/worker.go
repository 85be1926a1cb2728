package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"net/http"
	"net/http/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/widgetq/widgetq/internal/admin"
	"github.com/widgetq/widgetq/internal/autopipe"
	"github.com/widgetq/widgetq/internal/console"
	"github.com/widgetq/widgetq/internal/metrics"
	"github.com/widgetq/widgetq/internal/ratelimit"
	"github.com/widgetq/widgetq/internal/replay"
	"github.com/widgetq/widgetq/internal/seal"
	"github.com/widgetq/widgetq/internal/store"
	"github.com/widgetq/widgetq/internal/webhook"
	"github.com/widgetq/widgetq/producer"
	"github.com/widgetq/widgetq/tasks"
)

// Options configure a worker process: everything cmd/worker reads from its
// flags and environment. Zero fields take defaults.
type Options struct {
	// Prefix is the key prefix every widgetq process shares (default
	// store.DefaultPrefix).
	Prefix string
	// Keys seal and open tokens and settings in Redis (nil: plaintext).
	Keys *seal.Keys
	// Handler is the task handler's configuration (OAuth, hosts, timeouts,
	// retry policy, IP-block breaker, logger). Its Metrics is set by New.
	Handler Config
	// RatePerAccount, RateAccountTotal and RateGlobal are the limiter's
	// rates: per (integration, account), per account over all integrations,
	// over everything (defaults 7, 50 or RatePerAccount if higher, none).
	RatePerAccount, RateAccountTotal, RateGlobal float64
	// Concurrency, Queues and ShutdownTimeout tune the asynq server.
	Concurrency     int
	Queues          map[string]int
	ShutdownTimeout time.Duration
	// AdminAddr serves /healthz, /readyz, /metrics and the console (empty:
	// off). AdminExplicit says it was set by the operator: when it is
	// taken, the worker refuses to start instead of taking the next port.
	AdminAddr     string
	AdminExplicit bool
	// AdminTokens are accepted as bearer tokens on the admin routes; at
	// least one is required beyond loopback.
	AdminTokens []string
	// UIWritable lets the console change tasks and replay failures.
	UIWritable bool
	// DebugAddr serves Go's pprof on a loopback address (empty: off).
	DebugAddr string
	// Display names the Redis in logs (no password).
	Display string
	// Webhook signs and delivers events (off without a secret): the
	// worker then writes each final result's event with it, relays the
	// outbox into the webhooks queue and serves that queue.
	Webhook webhook.Config
}

// Validate names the first setting out of range, by its flag's name.
func (o Options) Validate() error {
	var errs []error
	bad := func(setting, format string, args ...any) {
		errs = append(errs, &SettingError{Setting: setting, Msg: fmt.Sprintf(format, args...)})
	}
	if o.Prefix != "" && strings.ContainsAny(o.Prefix, "{}: ") {
		bad("prefix", "%q must be non-empty without braces, colons or spaces", o.Prefix)
	}
	if o.Concurrency < 0 {
		bad("concurrency", "want an integer ≥ 1, got %d", o.Concurrency)
	}
	if o.RatePerAccount < 0 || o.RatePerAccount > 1e6 || math.IsNaN(o.RatePerAccount) {
		bad("rate-per-account", "want a number > 0, got %v", o.RatePerAccount)
	}
	if o.RateAccountTotal < 0 || o.RateAccountTotal > 1e6 || math.IsNaN(o.RateAccountTotal) {
		bad("rate-per-account-total", "want a number ≥ 0, got %v", o.RateAccountTotal)
	}
	if o.RateGlobal < 0 || o.RateGlobal > 1e6 || math.IsNaN(o.RateGlobal) {
		bad("rate-global", "want a number ≥ 0, got %v", o.RateGlobal)
	}
	for q, w := range o.Queues {
		if q == "" || w < 1 {
			bad("queues", "queue %q: weight must be a positive integer", q)
		}
	}
	if p := o.Handler.Policy; p.Base > 0 && p.Cap > 0 && p.Cap < p.Base {
		bad("retry-cap", "%s is below retry-base %s", p.Cap, p.Base)
	}
	if o.AdminAddr != "" {
		if err := admin.CheckAddr(o.AdminAddr, o.AdminTokens); err != nil {
			bad("admin-addr", "%v", err)
		}
	}
	if o.DebugAddr != "" && !admin.IsLoopback(o.DebugAddr) {
		bad("debug-addr", "want a loopback host:port, got %q", o.DebugAddr)
	}
	if oa := o.Handler.OAuth; oa != nil && oa.ClientID != "" && oa.ClientSecret == "" {
		bad("client-secret", "KOMMO_CLIENT_SECRET (-client-secret) is required with KOMMO_CLIENT_ID")
	}
	return errors.Join(errs...)
}

// SettingError is a setting out of range, named as its flag is.
type SettingError struct {
	Setting string
	Msg     string
}

func (e *SettingError) Error() string { return e.Setting + ": " + e.Msg }

// Worker is one worker process's parts: the handler, the asynq server, and
// the background loops (admin server, metrics refresh, reconciler), which
// it owns: Run starts them and returns when they have all stopped.
type Worker struct {
	opts    Options
	opt     asynq.RedisConnOpt
	rdb     redis.UniversalClient
	pipe    *autopipe.Client
	prod    *producer.Producer
	st      *store.Store
	h       *Handler
	m       *metrics.Metrics
	log     *slog.Logger
	serving atomic.Bool
}

// New builds a worker on rdb (opt is the same Redis for asynq): it fills
// defaults, validates, and checks that the stored credentials open with
// the configured keys. Nothing runs until Run.
func New(ctx context.Context, rdb redis.UniversalClient, opt asynq.RedisConnOpt, o Options) (*Worker, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if o.Prefix == "" {
		o.Prefix = store.DefaultPrefix
	}
	if o.Handler.Logger == nil {
		o.Handler.Logger = slog.Default()
	}
	w := &Worker{opts: o, opt: opt, rdb: rdb, log: o.Handler.Logger, m: metrics.New()}
	// Concurrent tasks' script calls — each task's read and reservation,
	// its result, and asynq's completion of it — share round trips: one
	// pipeline in flight, the calls that arrive meanwhile go in the next
	// (naive_ratio: 1.8 round trips per install instead of 3.7).
	w.pipe = autopipe.NewWith(rdb, PipeOptions())
	w.st = store.New(w.pipe, o.Prefix).WithKeys(o.Keys).WithHosts(o.Handler.Hosts)
	done, err := w.st.Migrate(ctx)
	if err != nil {
		w.pipe.Close()
		return nil, err
	}
	for _, d := range done {
		w.log.Info("migrated", "change", d)
	}
	if err := w.checkKeys(ctx); err != nil {
		w.pipe.Close()
		return nil, err
	}
	lim, err := ratelimit.New(w.pipe, ratelimit.Config{PerAccount: o.RatePerAccount, PerAccountTotal: o.RateAccountTotal, Global: o.RateGlobal, Prefix: o.Prefix,
		OnMissedSlot: w.m.MissedSlot})
	if err != nil {
		w.pipe.Close()
		return nil, err
	}
	hc := o.Handler
	hc.Metrics = w.m
	hc.Events = o.Webhook.Enabled()
	if hc.Producer == nil {
		// Installs queued on an account's connection.
		w.prod = producer.New(rdb, o.Prefix)
		hc.Producer = w.prod
	}
	w.h = NewHandler(w.st, lim, hc)
	return w, nil
}

// PipeOptions are the options of the worker's auto-pipeline (the bench's
// floor handler runs on the same).
func PipeOptions() autopipe.Options {
	return autopipe.Options{Loops: 1, MaxBatch: 256, Direct: asynqDequeue}
}

// asynqDequeue picks asynq's dequeue from the script calls: its first key
// is a queue's pending list. The server dequeues one task at a time while
// its free workers wait: a dequeue never waits for a batch.
func asynqDequeue(keys []string) bool {
	return len(keys) > 0 && strings.HasSuffix(keys[0], ":pending")
}

// ErrKeys is a secret key that does not fit the stored credentials.
var ErrKeys = errors.New("secret key")

func (w *Worker) checkKeys(ctx context.Context) error {
	err := w.st.CheckKeys(ctx)
	switch {
	case err == nil:
		if !w.opts.Keys.Enabled() {
			w.log.Warn("no WIDGETQ_SECRET_KEY: access and refresh tokens and widget settings rest in Redis in plaintext")
		}
		return nil
	case w.opts.Keys.Enabled():
		return fmt.Errorf("%w: WIDGETQ_SECRET_KEY: stored credentials do not open with it (%v); give the key they were sealed with, or the old one as WIDGETQ_SECRET_KEY_PREVIOUS", ErrKeys, err)
	default:
		return fmt.Errorf("%w: stored credentials are sealed: set WIDGETQ_SECRET_KEY (%v)", ErrKeys, err)
	}
}

// Handler returns the worker's task handler.
func (w *Worker) Handler() *Handler { return w.h }

// Store returns the worker's store.
func (w *Worker) Store() *store.Store { return w.st }

// Run serves tasks until ctx ends, then lets running tasks finish for the
// shutdown timeout, stops every loop it started and returns once they have
// all stopped. A port it cannot bind fails it at once.
func (w *Worker) Run(ctx context.Context) error {
	defer w.pipe.Close()
	if w.prod != nil {
		defer w.prod.Close()
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait() // after cancel: every loop has ended when Run returns
	if oa := w.opts.Handler.OAuth; oa == nil || oa.ClientID == "" {
		w.log.Warn("no KOMMO_CLIENT_ID: access tokens are used as stored and never refreshed")
	}
	if w.opts.DebugAddr != "" {
		w.serveDebug(ctx, &wg)
	}
	insp := asynq.NewInspectorFromRedisClient(w.rdb)
	queues := w.queueNames()
	if w.opts.AdminAddr != "" {
		if err := w.serveAdmin(ctx, &wg, insp, queues); err != nil {
			return err
		}
	}
	queuesServed := w.opts.Queues
	if w.opts.Webhook.Enabled() {
		queuesServed = maps.Clone(w.opts.Queues)
		if queuesServed == nil {
			queuesServed = map[string]int{tasks.DefaultQueue: 1}
		}
		if _, ok := queuesServed[w.opts.Webhook.QueueName()]; !ok {
			queuesServed[w.opts.Webhook.QueueName()] = 1
		}
	}
	srv, mux := NewServer(w.opt, w.h, ServerConfig{
		Client:      w.pipe,
		Concurrency: w.opts.Concurrency, Queues: queuesServed, ShutdownTimeout: w.opts.ShutdownTimeout, Logger: w.log,
		HealthCheck: func(err error) {
			if err != nil {
				w.log.Error("Redis health check failed", "redis", w.opts.Display, "error", err)
			}
		},
	})
	if w.opts.Webhook.Enabled() {
		wc := w.opts.Webhook
		wc.Logger, wc.Count = w.log, w.m.Webhook
		mux.HandleFunc(webhook.TypeDeliver, webhook.NewDeliverer(wc).Handle)
		relay := &webhook.Relay{Outbox: w.st, Client: asynq.NewClientFromRedisClient(w.rdb), Config: wc}
		wg.Add(1)
		every := wc.RelayEvery
		if every <= 0 {
			every = 250 * time.Millisecond
		}
		go func() { defer wg.Done(); relay.Loop(ctx, every) }()
	}
	if err := srv.Start(mux); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	w.serving.Store(true)
	wg.Add(1)
	go func() { defer wg.Done(); w.reconcileLoop(ctx, insp, queues) }()
	w.log.Info("worker started", "redis", w.opts.Display, "concurrency", w.opts.Concurrency, "queues", fmt.Sprint(w.opts.Queues),
		"rate_per_account", w.opts.RatePerAccount, "rate_global", w.opts.RateGlobal, "prefix", w.opts.Prefix,
		"secrets_sealed", w.opts.Keys.Enabled(), "secret_key_id", w.opts.Keys.KeyID())
	<-ctx.Done()
	w.serving.Store(false)
	w.log.Info("stopping: no new tasks; running ones may finish", "within", w.opts.ShutdownTimeout.String())
	srv.Shutdown()
	w.log.Info("worker stopped")
	return nil
}

func (w *Worker) queueNames() []string {
	names := make([]string, 0, len(w.opts.Queues))
	for q := range w.opts.Queues {
		names = append(names, q)
	}
	if len(names) == 0 {
		names = append(names, tasks.DefaultQueue)
	}
	return names
}

func (w *Worker) serveDebug(ctx context.Context, wg *sync.WaitGroup) {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	dbg := &http.Server{Addr: w.opts.DebugAddr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	wg.Add(2)
	go func() { defer wg.Done(); _ = dbg.ListenAndServe() }()
	go func() { defer wg.Done(); <-ctx.Done(); _ = dbg.Close() }()
	w.log.Info("pprof served", "addr", w.opts.DebugAddr)
}

func (w *Worker) serveAdmin(ctx context.Context, wg *sync.WaitGroup, insp *asynq.Inspector, queues []string) error {
	l, err := admin.Listen(admin.Candidates(w.opts.AdminAddr, w.opts.AdminExplicit))
	if err != nil {
		return err
	}
	ui := console.UI("/ui", w.opt, w.opts.UIWritable)
	results := &console.Results{Store: w.st, Prefix: "/results"}
	if w.opts.UIWritable {
		results.Replayer = &replay.Replayer{RDB: w.rdb, Store: w.st}
	}
	addr, served := admin.Serve(ctx, l, admin.Handler(admin.Config{Tokens: w.opts.AdminTokens, Metrics: w.m,
		Ready: func(ctx context.Context) error {
			if !w.serving.Load() {
				return errors.New("not serving tasks (starting or stopping)")
			}
			if err := w.rdb.Ping(ctx).Err(); err != nil {
				return fmt.Errorf("Redis at %s does not answer: %v", w.opts.Display, err)
			}
			return nil
		},
		Detail: func(ctx context.Context) string {
			p, err := w.st.KommoPaused(ctx)
			if err != nil || p.For(time.Now()) == 0 {
				return ""
			}
			return fmt.Sprintf("kommo: all traffic paused until %s (HTML 403 blocks from accounts %v at once: an IP block); `enqueue accounts unblock --all` lifts it",
				p.Until.Format(time.RFC3339), p.Accounts)
		},
		Extra: map[string]http.Handler{"/ui/": ui, "GET /results": results, "POST /results/replay": http.HandlerFunc(results.Replay)}}))
	if addr != w.opts.AdminAddr && !strings.HasSuffix(w.opts.AdminAddr, ":0") {
		w.log.Warn("admin address taken (another worker on this host?): serving on the next free port; give each worker -admin-addr to choose", "wanted", w.opts.AdminAddr, "addr", addr)
	}
	w.log.Info("admin server listening", "addr", addr, "token_required", len(w.opts.AdminTokens) > 0)
	wg.Add(2)
	go func() { defer wg.Done(); <-served; ui.Close() }()
	go func() {
		defer wg.Done()
		w.m.RefreshLoop(ctx, 10*time.Second, insp, queues, func() (metrics.State, error) {
			n, err := w.st.CountBlocked(ctx)
			if err != nil {
				return metrics.State{}, err
			}
			p, err := w.st.KommoPaused(ctx)
			st := metrics.State{Blocked: n, KommoPausedFor: p.For(time.Now())}
			if w.opts.Webhook.Enabled() {
				if at, oerr := w.st.OutboxOldest(ctx); oerr == nil && !at.IsZero() {
					st.WebhookOldest = time.Since(at)
				}
				if qi, qerr := insp.GetQueueInfo(w.opts.Webhook.QueueName()); qerr == nil {
					st.WebhookOldest = max(st.WebhookOldest, qi.Latency)
				}
			}
			return st, err
		})
	}()
	return nil
}

// reconcileLoop gives a verdict, every minute, to tasks asynq archived
// without one (see Handler.Reconcile): at start over the last day, then
// over the last quarter hour (passes overlap; a verdict is written once).
// Every worker runs it; the writes are conditional, so they agree.
func (w *Worker) reconcileLoop(ctx context.Context, insp *asynq.Inspector, queues []string) {
	look := 24 * time.Hour
	t := time.NewTimer(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if n, err := w.h.Reconcile(ctx, insp, queues, time.Now().Add(-look)); err != nil && ctx.Err() == nil {
			w.log.Warn("reconcile archived tasks", "error", err)
		} else if n > 0 {
			w.log.Warn("gave archived tasks their verdict", "tasks", n, "class", ClassInterrupted)
		}
		look = 15 * time.Minute
		t.Reset(time.Minute)
	}
}
