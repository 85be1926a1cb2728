// Package worker runs widgetq's tasks: for each, it loads the account,
// waits for the account's and the global rate budget, gets a valid access
// token (refreshing it once, under the account's lock, storing the new
// pair first), checks the settings against the widget's template, calls
// Kommo, and records a result for the account — whatever Kommo does on the
// way. The retry policy (internal/retry) decides what happens next.
package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/hibiken/asynq"

	"github.com/widgetq/widgetq/internal/kommo"
	"github.com/widgetq/widgetq/internal/kommohost"
	"github.com/widgetq/widgetq/internal/metrics"
	"github.com/widgetq/widgetq/internal/ratelimit"
	"github.com/widgetq/widgetq/internal/retry"
	"github.com/widgetq/widgetq/internal/seal"
	"github.com/widgetq/widgetq/internal/store"
	"github.com/widgetq/widgetq/internal/webhook"
	"github.com/widgetq/widgetq/producer"
	"github.com/widgetq/widgetq/tasks"
)

// Classes the worker adds to kommo's.
const (
	// ClassAccountUnknown: no credentials are stored for the account.
	ClassAccountUnknown = "account_unknown"
	// ClassInternal: widgetq's own Redis failed, or the worker lacks the
	// secret key a value was sealed with; retried like a 5xx.
	ClassInternal = "internal"
	// ClassHostNotAllowed: the account's base URL is not on the Kommo host
	// allow-list (WIDGETQ_KOMMO_HOSTS); nothing is sent to it.
	ClassHostNotAllowed = "host_not_allowed"
)

// Config tunes the handler. Zero fields take defaults.
type Config struct {
	// OAuth is the integration's client; nil or without a ClientID, tokens
	// are used as stored and never refreshed.
	OAuth *kommo.OAuthConfig
	// Hosts is the allow-list of Kommo hosts: an account whose base URL is
	// not on it fails host_not_allowed before any request, and the default
	// Transport's dialer refuses private and link-local addresses it does
	// not list (nil: kommohost.Default).
	Hosts *kommohost.List
	// Transport carries requests to Kommo (default: a clone of
	// http.DefaultTransport with larger idle pools, dialing only what
	// Hosts allows). Redirects are never followed.
	Transport http.RoundTripper
	// RequestTimeout bounds each request to Kommo (default 30s).
	RequestTimeout time.Duration
	// MaxWait is the longest a task waits in process for rate budget;
	// beyond it the task is deferred (default 2s).
	MaxWait time.Duration
	// RateLimitPause pauses an account after a 429 without Retry-After
	// (default 5s).
	RateLimitPause time.Duration
	// BlockFor is how long an account stays marked blocked after Kommo's
	// HTML 403, unless an operator clears it (default 24h).
	BlockFor time.Duration
	// IPBlockAccounts, IPBlockWindow and IPBlockPause are the circuit
	// breaker for an IP block: when Kommo's HTML 403 arrives from this many
	// distinct accounts within the window with no success between them
	// (default 5 in 5 min), every
	// worker stops all Kommo traffic for the pause (default 1h), or until
	// `enqueue accounts unblock --all`. Tasks wait, deferred, without
	// spending an attempt.
	IPBlockAccounts int
	IPBlockWindow   time.Duration
	IPBlockPause    time.Duration
	// TemplateTTL is how long a widget's settings_template is cached
	// (default 10 min).
	TemplateTTL time.Duration
	// RegistryTTL is how long the integrations registry is cached (default
	// 10s): a new integration or a rotated secret is seen within it.
	RegistryTTL time.Duration
	// Policy is the retry policy.
	Policy retry.Policy
	// Logger gets one line per attempt (default slog.Default()).
	Logger *slog.Logger
	// UserAgent is sent to Kommo.
	UserAgent string
	// Metrics, when set, counts tasks and Kommo requests.
	Metrics *metrics.Metrics
	// Producer queues the install-on-connect widgets of an account that
	// connected (nil: they are not queued, and a warning says so).
	Producer *producer.Producer
	// Events writes each final result's webhook event to the outbox with
	// the result (set when WIDGETQ_WEBHOOK_SECRET is).
	Events bool
}

// WithDefaults fills the zero fields.
func (c Config) WithDefaults() Config {
	if c.Transport == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConns = 1000
		t.MaxIdleConnsPerHost = 100
		t.Proxy = nil // an environment proxy would be dialed instead of the checked host
		t.DialContext = c.Hosts.DialContext(&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}, nil)
		c.Transport = t
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = kommo.DefaultTimeout
	}
	if c.MaxWait <= 0 {
		c.MaxWait = 2 * time.Second
	}
	if c.RateLimitPause <= 0 {
		c.RateLimitPause = 5 * time.Second
	}
	if c.BlockFor <= 0 {
		c.BlockFor = 24 * time.Hour
	}
	if c.IPBlockAccounts <= 0 {
		c.IPBlockAccounts = 5
	}
	if c.IPBlockWindow <= 0 {
		c.IPBlockWindow = 5 * time.Minute
	}
	if c.IPBlockPause <= 0 {
		c.IPBlockPause = time.Hour
	}
	if c.TemplateTTL <= 0 {
		c.TemplateTTL = 10 * time.Minute
	}
	if c.RegistryTTL <= 0 {
		c.RegistryTTL = 10 * time.Second
	}
	c.Policy = c.Policy.WithDefaults()
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.UserAgent == "" {
		c.UserAgent = kommo.DefaultUserAgent
	}
	return c
}

// State is what the handler reads and writes of widgetq's own state,
// declared here where it is consumed; *store.Store provides it.
type State interface {
	// BeginWith reads a task's result, account, block mark and the Kommo
	// pause in one round trip, marks the result in flight, and makes the
	// rate reservation of the attempt's first request (the script part)
	// when the task may reach Kommo.
	BeginWith(ctx context.Context, account int64, integ, code string, markInFlight bool, part *store.ScriptPart) (store.TaskState, error)
	ClearInFlight(ctx context.Context, account int64, code string) error
	Record(ctx context.Context, r *store.Result) error
	RecordUnfinished(ctx context.Context, r *store.Result) (bool, error)
	Result(ctx context.Context, account int64, code string) (*store.Result, error)
	MarkBlocked(ctx context.Context, b store.Block, ttl time.Duration) error
	NoteBlock(ctx context.Context, account int64, window time.Duration, threshold int, pause time.Duration) (*store.KommoPause, error)
	// The token pair an integration holds for the account, and its refresh
	// lock, for the refresher.
	GetAccount(ctx context.Context, n int64, integ string) (*store.Account, error)
	SaveTokens(ctx context.Context, n int64, integ, access, refresh string, expiry time.Time) error
	// PutAccount stores the credentials of an account that connected;
	// MoveAccount its new base URL after a subdomain change.
	PutAccount(ctx context.Context, a store.Account) error
	MoveAccount(ctx context.Context, n int64, integ, baseURL string) (bool, error)
	RefreshLock(n int64, integ string) *store.Lock
	// The integrations registry: clients and widget owners.
	Registry
	// Keys open sealed settings.
	Keys() *seal.Keys
}

// Handler runs install and uninstall tasks. It is safe for concurrent use.
type Handler struct {
	st        State
	lim       *ratelimit.Limiter
	cfg       Config
	templates templateCache
	integs    *integrations
	hosts     *hostChecks
}

// NewHandler returns a handler on the store and limiter.
func NewHandler(st State, lim *ratelimit.Limiter, cfg Config) *Handler {
	cfg = cfg.WithDefaults()
	for _, s := range TaskSeries() {
		cfg.Metrics.DeclareTask(s[0], s[1], s[2])
	}
	return &Handler{st: st, lim: lim, cfg: cfg, templates: templateCache{ttl: cfg.TemplateTTL, m: map[string]*templateEntry{}},
		integs: &integrations{reg: st, fallback: cfg.OAuth, ttl: cfg.RegistryTTL, now: time.Now}, hosts: &hostChecks{list: cfg.Hosts}}
}

// TaskSeries lists every (type, outcome, class) the handler counts in
// widgetq_tasks_total, so that each series is on /metrics at zero from
// the first scrape: successes and deferrals without a class, retries with
// each retryable class, failures with every class, and rejected payloads.
func TaskSeries() [][3]string {
	var retrying, failing []string
	for _, c := range kommo.Classes {
		if c.Retryable() {
			retrying = append(retrying, string(c))
		}
		failing = append(failing, string(c))
	}
	retrying = append(retrying, ClassInternal)
	failing = append(failing, ClassAccountUnknown, ClassHostNotAllowed, ClassIntegrationUnknown, ClassInternal)
	var out [][3]string
	for _, t := range []struct {
		typ       string
		successes []store.Status
	}{
		{tasks.TypeInstallWidget, []store.Status{store.StatusInstalled, store.StatusAlreadyInstalled}},
		{tasks.TypeUninstallWidget, []store.Status{store.StatusUninstalled}},
	} {
		for _, st := range t.successes {
			out = append(out, [3]string{t.typ, string(st), ""})
		}
		out = append(out, [3]string{t.typ, "deferred", ""}, [3]string{t.typ, "rejected", string(kommo.ClassInvalid)})
		for _, c := range retrying {
			out = append(out, [3]string{t.typ, string(store.StatusRetrying), c})
		}
		for _, c := range failing {
			out = append(out, [3]string{t.typ, string(store.StatusFailed), c})
		}
	}
	return out
}

// Register routes widgetq's task types to the handler.
func (h *Handler) Register(mux *asynq.ServeMux) {
	mux.HandleFunc(tasks.TypeInstallWidget, h.HandleInstall)
	mux.HandleFunc(tasks.TypeUninstallWidget, h.HandleUninstall)
	mux.HandleFunc(tasks.TypeConnectAccount, h.HandleConnect)
	mux.HandleFunc(tasks.TypeVerifyWidget, h.HandleVerify)
}

// attempt is one run of one task.
type attempt struct {
	op         string
	account    int64
	integ      string
	oauth      *kommo.OAuthConfig
	code       string
	enqueueID  string
	taskID     string
	queue      string
	retryCount int
	maxRetry   int
	prev       *store.Result
	acct       *store.Account
	// refreshStored: the store holds a refresh token acct does not carry
	// (the task's state is read without it).
	refreshStored bool
	block         *store.Block
	kommoPause    *store.KommoPause
	// outcome
	status store.Status
	widget *kommo.Widget
	// waited is the time spent waiting for rate budget.
	waited time.Duration
	// sentChange is set once an install or uninstall request is about to
	// go out: from then on its effect is unknown until Kommo answers.
	sentChange bool
	// prepErr is a failure found before the task's state was read (an
	// unregistered integration).
	prepErr error
	// rehomed is set once the attempt asked Kommo for the account's
	// current subdomain.
	rehomed bool
	// batch is the task's batch ("": none).
	batch string
	// digest fingerprints the installed settings' non-secret values.
	digest map[string]string
	// slot is the rate slot reserved with the task's state, for its first
	// request (nil: none, or spent).
	slot *slot
	mu   sync.Mutex
}

// slot is a reservation made before the attempt's first request: the
// time it is due, or why none was made (the budget is spent further
// ahead than the attempt may wait).
type slot struct {
	at  time.Time
	err error
}

// slotGrace is how late a request may use the slot reserved with its
// task's state. A request sent well after its slot (its token refresh
// waited for another process's refresh lock, or the process stalled)
// could reach Kommo close behind the next slot's request: it reserves a
// slot of its own instead, and the stale one goes unused. The limiter's
// margin absorbs about 40 ms of lateness a second, which network jitter
// and the answer's own way back share: the state read adds at most 5 ms.
const slotGrace = 5 * time.Millisecond

// takeSlot returns the reserved slot once; later requests reserve their
// own.
func (a *attempt) takeSlot() *slot {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.slot
	a.slot = nil
	return s
}

// taskType is the attempt's asynq task type.
func (a *attempt) taskType() string {
	if a.op == "uninstall" {
		return tasks.TypeUninstallWidget
	}
	return tasks.TypeInstallWidget
}

// final reports whether a retryable failure now would exhaust the budget:
// the task's attempts are MaxRetry+1 in asynq's count, but widgetq stops
// one short, so that a deferral (which asynq would archive once the count
// is spent) is always possible.
func (a *attempt) final() bool { return a.retryCount+1 >= a.maxRetry }

// redelivered reports whether this enqueueing already succeeded, with one
// of ok: asynq hands a task back when a stopping worker's time is up, even
// if its handler then went on to finish and record the install. Such a run
// sends nothing and keeps the verdict.
func (a *attempt) redelivered(ok ...store.Status) bool {
	if a.prev == nil || a.enqueueID == "" || a.prev.EnqueueID != a.enqueueID {
		return false
	}
	for _, s := range ok {
		if a.prev.Status == s {
			a.status = s
			return true
		}
	}
	return false
}

// budget is the rate budget the attempt's requests spend.
func (a *attempt) budget() ratelimit.Budget {
	return ratelimit.Budget{Account: a.account, Integration: a.integ}
}

// canDefer reports whether asynq will retry rather than archive an error.
func (a *attempt) canDefer() bool { return a.retryCount < a.maxRetry }

func (a *attempt) addWait(d time.Duration) {
	a.mu.Lock()
	a.waited += d
	a.mu.Unlock()
}

// permanent is a failure widgetq decides on before or without Kommo.
type permanent struct {
	class  string
	detail string
}

func (p *permanent) Error() string { return p.class + ": " + p.detail }

// internalErr is a failure of widgetq's own Redis.
type internalErr struct{ err error }

func (e *internalErr) Error() string { return e.err.Error() }
func (e *internalErr) Unwrap() error { return e.err }

// HandleInstall runs an install-widget task.
func (h *Handler) HandleInstall(ctx context.Context, t *asynq.Task) error {
	start := time.Now()
	p, err := tasks.DecodeInstallWidget(t.Payload())
	if err != nil {
		return h.badPayload(ctx, t, err)
	}
	a, err := h.begin(ctx, "install", p.AccountID, p.Integration, p.WidgetCode, p.EnqueueID)
	if err != nil {
		return err
	}
	a.batch = p.BatchID
	if a.prepErr != nil {
		return h.finish(ctx, a, a.prepErr, start)
	}
	err = h.install(ctx, a, p)
	if err != nil && h.rehome(ctx, a, err) {
		err = h.install(ctx, a, p) // once more, at the account's new host
	}
	return h.finish(ctx, a, err, start)
}

// HandleUninstall runs an uninstall-widget task.
func (h *Handler) HandleUninstall(ctx context.Context, t *asynq.Task) error {
	start := time.Now()
	p, err := tasks.DecodeUninstallWidget(t.Payload())
	if err != nil {
		return h.badPayload(ctx, t, err)
	}
	a, err := h.begin(ctx, "uninstall", p.AccountID, p.Integration, p.WidgetCode, p.EnqueueID)
	if err != nil {
		return err
	}
	a.batch = p.BatchID
	if a.prepErr != nil {
		return h.finish(ctx, a, a.prepErr, start)
	}
	err = h.uninstall(ctx, a)
	if err != nil && h.rehome(ctx, a, err) {
		err = h.uninstall(ctx, a)
	}
	return h.finish(ctx, a, err, start)
}

// badPayload archives a task whose payload is not ours: nothing to retry,
// no account to record it for.
func (h *Handler) badPayload(ctx context.Context, t *asynq.Task, err error) error {
	id := attemptOf(ctx).TaskID
	h.cfg.Metrics.Task(t.Type(), "rejected", string(kommo.ClassInvalid))
	h.cfg.Logger.LogAttrs(ctx, slog.LevelError, "task rejected", slog.String("task_id", id), slog.String("type", t.Type()),
		slog.String("class", string(kommo.ClassInvalid)), slog.String("error", err.Error()))
	return fmt.Errorf("%s: %w: %w", kommo.ClassInvalid, err, asynq.SkipRetry)
}

// begin resolves the task's integration and reads its state. An
// integration that is not registered is the attempt's prepErr: recorded
// like any permanent failure.
func (h *Handler) begin(ctx context.Context, op string, account int64, integ, code, enqueueID string) (*attempt, error) {
	a := &attempt{op: op, account: account, code: code, enqueueID: enqueueID}
	at := attemptOf(ctx)
	a.taskID, a.queue, a.retryCount, a.maxRetry = at.TaskID, at.Queue, at.Retried, at.MaxRetry
	var err error
	a.integ, a.oauth, err = h.integs.resolve(ctx, integ, code)
	var ie *internalErr
	if errors.As(err, &ie) {
		return nil, fmt.Errorf("%s: %w", ClassInternal, err)
	}
	a.prepErr = err
	// One round trip: the result so far, the account, its block mark, the
	// in-flight mark, set before anything may reach Kommo (a run that ends
	// before the install clears it with its verdict) — and the rate slot of
	// the first request, when the account may be sent to at all.
	var part *store.ScriptPart
	var rsv ratelimit.Reservation
	// An install whose widget's template is not cached waits for it
	// first (another task may be fetching it): a slot reserved now would
	// be stale by then, and a wasted slot of the global budget.
	if a.prepErr == nil && (op != "install" || h.templates.cached(code)) {
		rsv = h.lim.Reservation(a.budget(), h.maxWait(ctx, a))
		part = &store.ScriptPart{Lua: reservePart, Keys: rsv.Keys, Args: rsv.Args}
	}
	st, err := h.st.BeginWith(ctx, account, a.integ, code, a.prepErr == nil && op != "verify", part)
	if err != nil {
		// Redis is failing: a retry, not a verdict.
		return nil, fmt.Errorf("%s: %w", ClassInternal, err)
	}
	a.prev, a.acct, a.refreshStored, a.block, a.kommoPause = st.Result, st.Account, st.RefreshStored, st.Block, st.KommoPause
	if st.Part != nil {
		wait, err := rsv.Reserved(st.Part)
		a.slot = &slot{at: time.Now().Add(wait), err: err}
	}
	return a, nil
}

// reservePart is the limiter's reservation as Begin's script part.
const reservePart = ratelimit.ReserveLua + "local part = reserve\n"

// maxWait is how long an attempt's request may wait for rate budget
// before the task defers: MaxWait, or, when asynq would archive a
// deferral now, until the task's deadline less a request's time.
func (h *Handler) maxWait(ctx context.Context, a *attempt) time.Duration {
	if !a.canDefer() {
		if dl, ok := ctx.Deadline(); ok {
			return max(time.Until(dl)-h.cfg.RequestTimeout, h.cfg.MaxWait)
		}
	}
	return h.cfg.MaxWait
}

// kommoHTTP is the HTTP client of an attempt's requests to Kommo: each
// paced in the attempt's rate budget (waiting up to maxWait), none
// following a redirect — it would carry the request (and, on a refresh,
// the client secret) to a host nobody checked: Kommo's 3xx is an error.
func (h *Handler) kommoHTTP(a *attempt, maxWait time.Duration) *http.Client {
	return &http.Client{Transport: &pacedTransport{base: h.cfg.Transport, lim: h.lim, budget: a.budget(), maxWait: maxWait, a: a, m: h.cfg.Metrics},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// client builds the Kommo client of one attempt: requests paced by the
// limiter, tokens refreshed under the account's lock.
func (h *Handler) client(ctx context.Context, a *attempt, acct *store.Account) (*kommo.Client, error) {
	hc := h.kommoHTTP(a, h.maxWait(ctx, a))
	var auth kommo.Authenticator = kommo.StaticToken(acct.AccessToken)
	if a.oauth != nil && a.oauth.ClientID != "" {
		// The integration's own client: a refresh token refreshes only
		// with the client it was issued to.
		oauth := *a.oauth
		oauth.HTTPClient = hc
		if oauth.Timeout <= 0 {
			oauth.Timeout = h.cfg.RequestTimeout
		}
		auth = &kommo.RefreshingAuth{
			OAuth: &oauth, BaseURL: acct.BaseURL, Store: accountTokens{h.st, acct.ID, a.integ}, Lock: h.st.RefreshLock(acct.ID, a.integ),
			Current:       &kommo.Token{AccessToken: acct.AccessToken, RefreshToken: acct.RefreshToken, Expiry: acct.ExpiresAt},
			RefreshStored: a.refreshStored,
		}
	}
	return kommo.NewClient(acct.BaseURL, kommo.WithHTTPClient(hc), kommo.WithAuth(auth),
		kommo.WithTimeout(h.cfg.RequestTimeout), kommo.WithUserAgent(h.cfg.UserAgent))
}

// account loads the account and refuses blocked ones without a call.
func (h *Handler) account(_ context.Context, a *attempt) (*store.Account, error) {
	acct, blk := a.acct, a.block
	if acct == nil {
		if a.integ != store.DefaultIntegration {
			return nil, &permanent{ClassAccountUnknown, fmt.Sprintf("no credentials of integration %s stored for account %d", a.integ, a.account)}
		}
		return nil, &permanent{ClassAccountUnknown, fmt.Sprintf("no credentials stored for account %d", a.account)}
	}
	if err := h.hosts.check(acct.BaseURL); err != nil {
		return nil, &permanent{ClassHostNotAllowed, fmt.Sprintf("account %d: base_url: %v; nothing was sent (store the account again with its Kommo URL, or list the host)", a.account, err)}
	}
	if d := a.kommoPause.For(time.Now()); d > 0 && blk == nil {
		// Kommo blocks this IP: every request would be one more violation.
		// Come back later without spending an attempt; a minute at most,
		// so an operator's unblock --all takes effect soon.
		return nil, &retry.DeferError{Delay: min(d, time.Minute), Reason: fmt.Sprintf(
			"all Kommo traffic is paused until %s: HTML 403 blocks came from %d accounts at once (an IP block); `enqueue accounts unblock --all` lifts it",
			a.kommoPause.Until.Format(time.RFC3339), len(a.kommoPause.Accounts))}
	}
	if !acct.RevokedAt.IsZero() {
		return nil, &permanent{string(kommo.ClassTokenRevoked), fmt.Sprintf("integration %s was disconnected from account %d at %s (Kommo's revoke hook); nothing was sent: the account must install the integration again",
			a.integ, a.account, acct.RevokedAt.Format(time.RFC3339))}
	}
	if blk != nil {
		return nil, &permanent{string(kommo.ClassBlocked), fmt.Sprintf("account %d is marked blocked by Kommo since %s (until %s, or until an operator unblocks it); nothing was sent",
			a.account, blk.Since.Format(time.RFC3339), blk.Until.Format(time.RFC3339))}
	}
	return acct, nil
}

func (h *Handler) install(ctx context.Context, a *attempt, p tasks.InstallWidgetPayload) error {
	if a.redelivered(store.StatusInstalled, store.StatusAlreadyInstalled) {
		return nil
	}
	acct, err := h.account(ctx, a)
	if err != nil {
		return err
	}
	if a.prev != nil && a.prev.InFlight && a.prev.EnqueueID == a.enqueueID && a.canDefer() {
		// An earlier run was cut off (a worker stopping) after it may have
		// sent the install. Kommo may still be carrying it out: asking now
		// could miss it and install twice. Ask once it must have finished.
		if wait := time.Until(a.prev.InFlightSince.Add(h.cfg.RequestTimeout)); wait > 0 {
			return &retry.DeferError{Delay: wait, Reason: fmt.Sprintf("an earlier install of %s into account %d may still be under way; checking in %s", p.WidgetCode, a.account, wait.Round(time.Millisecond))}
		}
	}
	if p.SealedSettings != "" {
		plain, err := h.st.Keys().Open(p.SealedSettings)
		switch {
		case errors.Is(err, seal.ErrCorrupt):
			return &permanent{string(kommo.ClassInvalid), "sealed_settings: " + err.Error()}
		case err != nil:
			// The worker lacks the key the producer used: a configuration
			// to fix, not a verdict on the task.
			return &internalErr{fmt.Errorf("sealed_settings: %w", err)}
		}
		p.Settings, p.SealedSettings = json.RawMessage(plain), ""
		if err := p.Validate(); err != nil {
			return &permanent{string(kommo.ClassInvalid), err.Error()}
		}
	}
	c, err := h.client(ctx, a, acct)
	if err != nil {
		return &permanent{string(kommo.ClassInvalid), fmt.Sprintf("account %d: %v", a.account, err)}
	}
	tmpl, err := h.templates.get(ctx, p.WidgetCode, c)
	if err != nil {
		return err
	}
	checked, err := tmpl.check(p.Settings)
	if err != nil {
		var se *kommo.SettingsError
		if errors.As(err, &se) {
			se.Widget = p.WidgetCode
		}
		return &permanent{string(kommo.ClassInvalid), err.Error()}
	}
	if a.retryCount > 0 || (a.prev != nil && a.prev.InFlight && a.prev.EnqueueID == a.enqueueID) {
		// An earlier run may have reached Kommo without hearing back:
		// ask before installing a second time.
		w, _, err := c.GetWidget(ctx, p.WidgetCode)
		if err != nil {
			return err
		}
		if w.IsActiveInAccount {
			a.status, a.widget, a.digest = store.StatusAlreadyInstalled, w, checked.digest
			return nil
		}
	}
	w, _, err := c.InstallWidget(ctx, p.WidgetCode, p.Settings, checked.secrets...)
	if err != nil {
		return err
	}
	a.status, a.widget, a.digest = store.StatusInstalled, w, checked.digest
	return nil
}

func (h *Handler) uninstall(ctx context.Context, a *attempt) error {
	if a.redelivered(store.StatusUninstalled) {
		return nil
	}
	acct, err := h.account(ctx, a)
	if err != nil {
		return err
	}
	c, err := h.client(ctx, a, acct)
	if err != nil {
		return &permanent{string(kommo.ClassInvalid), fmt.Sprintf("account %d: %v", a.account, err)}
	}
	if _, err := c.UninstallWidget(ctx, a.code); err != nil {
		return err
	}
	a.status = store.StatusUninstalled
	return nil
}

// finish decides the attempt's verdict (decide) and carries it out:
// records the result, pauses or marks the account, counts and logs, and
// tells asynq what to do next.
func (h *Handler) finish(ctx context.Context, a *attempt, err error, start time.Time) error {
	dur := time.Since(start)
	a.mu.Lock()
	sent := a.sentChange
	a.mu.Unlock()
	v := decide(facts{
		canDefer: a.canDefer(), final: a.final(), sentChange: sent, prevInFlight: a.prev != nil && a.prev.InFlight,
		shuttingDown: errors.Is(ctx.Err(), context.Canceled), success: a.status, defaultPause: h.cfg.RateLimitPause,
	}, err)
	switch v.outcome {
	case deferred:
		var de *retry.DeferError
		errors.As(err, &de)
		if v.clearInFlight {
			if cerr := h.st.ClearInFlight(ctx, a.account, a.code); cerr != nil {
				h.cfg.Logger.Warn("could not clear the in-flight mark", "account", a.account, "widget", a.code, "error", cerr)
			}
		}
		h.cfg.Metrics.Deferred()
		h.count(a, "deferred", "")
		h.log(ctx, slog.LevelDebug, a, "deferred", "", dur, "", de.Reason)
		return de
	case interrupted:
		// asynq puts the task back; record nothing, and the in-flight mark
		// (if any) makes the next run check first.
		h.log(ctx, slog.LevelWarn, a, "interrupted", "", dur, "", "worker shutting down")
		return err
	}
	r := h.resultBase(a)
	r.Attempts++
	r.Status = v.status
	if v.outcome == succeeded {
		r.FinishedAt = time.Now().UTC()
		if a.widget != nil {
			r.WidgetID, r.WidgetVersion = a.widget.ID, string(a.widget.Version)
		}
		if a.digest != nil {
			r.SettingsDigest = a.digest
		}
		h.event(r, true)
		if rerr := h.st.Record(ctx, r); rerr != nil {
			// The install happened; a retry finds it active.
			return fmt.Errorf("%s: record result: %w", ClassInternal, rerr)
		}
		h.count(a, string(r.Status), "")
		h.log(ctx, slog.LevelInfo, a, string(r.Status), "", dur, "", "")
		return nil
	}
	info := errorInfo(err)
	r.LastError = &info
	if v.pause > 0 {
		if perr := h.lim.Penalize(ctx, a.budget(), v.pause); perr != nil {
			h.cfg.Logger.Warn("could not pause account after a 429", "account", a.account, "error", perr)
		}
	}
	if v.block {
		h.markBlocked(ctx, a, err, &info)
	}
	if v.outcome == failed {
		r.FinishedAt = time.Now().UTC()
		h.event(r, false)
	}
	if rerr := h.st.Record(ctx, r); rerr != nil {
		h.cfg.Logger.Error("could not record result", "account", a.account, "widget", a.code, "error", rerr)
		if v.outcome == failed {
			// Keep the task alive until its verdict is on record.
			return fmt.Errorf("%s: record result: %w", ClassInternal, rerr)
		}
	}
	h.count(a, string(r.Status), v.class)
	level := slog.LevelWarn
	if v.outcome == failed {
		level = slog.LevelError
	}
	h.log(ctx, level, a, string(r.Status), v.class, dur, info.RequestID, info.Detail)
	switch {
	case v.outcome == failed:
		return fmt.Errorf("%w: %w", err, asynq.SkipRetry)
	case v.delay > 0:
		return &retry.DeferError{Delay: v.delay, Reason: fmt.Sprintf("Kommo answered 429 for account %d", a.account)}
	}
	return err
}

// event attaches a final result's webhook event, written with the result.
func (h *Handler) event(r *store.Result, succeeded bool) {
	if !h.cfg.Events {
		return
	}
	d := webhook.TaskData{AccountID: r.AccountID, WidgetCode: r.WidgetCode, Integration: store.IntegrationOf(r.Integration), Status: string(r.Status), BatchID: r.BatchID}
	if r.LastError != nil {
		d.Class, d.Detail = r.LastError.Class, r.LastError.Detail
	}
	r.Event = webhook.TaskEvent(r.Operation, r.EnqueueID, succeeded, d, time.Now())
}

// count counts a run's outcome, by task type and class, and by
// integration.
func (h *Handler) count(a *attempt, outcome, class string) {
	h.cfg.Metrics.Task(a.taskType(), outcome, class)
	h.cfg.Metrics.IntegrationTask(a.integ, outcome)
}

// markBlocked marks the account blocked after Kommo's HTML 403 and counts
// the block towards an IP block, which pauses all Kommo traffic.
func (h *Handler) markBlocked(ctx context.Context, a *attempt, err error, info *store.ErrorInfo) {
	var ke *kommo.Error
	errors.As(err, &ke)
	if info.Detail == "" {
		info.Detail = fmt.Sprintf("Kommo blocks account %d (%s): only Kommo support lifts it; nothing more is sent to it for %s or until an operator unblocks it",
			a.account, firstNonEmpty(info.Title, "403"), h.cfg.BlockFor)
	}
	if berr := h.st.MarkBlocked(ctx, store.Block{AccountID: a.account, RequestID: ke.RequestID, Detail: info.Title}, h.cfg.BlockFor); berr != nil {
		h.cfg.Logger.Warn("could not mark account blocked", "account", a.account, "error", berr)
	}
	if p, perr := h.st.NoteBlock(ctx, a.account, h.cfg.IPBlockWindow, h.cfg.IPBlockAccounts, h.cfg.IPBlockPause); perr != nil {
		h.cfg.Logger.Warn("could not count the block towards an IP block", "account", a.account, "error", perr)
	} else if p != nil {
		h.cfg.Metrics.KommoPaused()
		h.cfg.Logger.Error("Kommo blocked several accounts at once: the IP is blocked; every worker pauses all Kommo traffic",
			"accounts", fmt.Sprint(p.Accounts), "within", h.cfg.IPBlockWindow.String(), "until", p.Until.Format(time.RFC3339),
			"lift", "enqueue accounts unblock --all")
	}
}

func (h *Handler) resultBase(a *attempt) *store.Result {
	r := &store.Result{AccountID: a.account, WidgetCode: a.code, Integration: a.integ, Operation: a.op, TaskID: a.taskID, Queue: a.queue, EnqueueID: a.enqueueID,
		BatchID: a.batch}
	if a.prev != nil && a.prev.EnqueueID == a.enqueueID {
		r.Attempts = a.prev.Attempts
		r.QueuedAt = a.prev.QueuedAt
		r.CreatedAt = a.prev.CreatedAt
		r.WidgetID, r.WidgetVersion = a.prev.WidgetID, a.prev.WidgetVersion
	} else if a.prev != nil {
		r.CreatedAt = a.prev.CreatedAt
	}
	return r
}

// retryable reports whether trying again may help.
func retryable(err error) bool {
	var ie *internalErr
	if errors.As(err, &ie) {
		return true
	}
	var p *permanent
	if errors.As(err, &p) {
		return false
	}
	return kommo.IsRetryable(err)
}

// classOf is the class errorInfo gives err, without building its detail.
func classOf(err error) string {
	var p *permanent
	var ie *internalErr
	var ke *kommo.Error
	switch {
	case errors.As(err, &p):
		return p.class
	case errors.As(err, &ie):
		return ClassInternal
	case errors.As(err, &ke):
		return string(ke.Class)
	}
	return string(kommo.ClassNetwork)
}

// errorInfo is what a result keeps of an error: its class and Kommo's
// words, never a secret (kommo.Error is scrubbed already).
func errorInfo(err error) store.ErrorInfo {
	now := time.Now().UTC()
	var p *permanent
	if errors.As(err, &p) {
		return store.ErrorInfo{Class: p.class, Detail: p.detail, At: now}
	}
	var ie *internalErr
	if errors.As(err, &ie) {
		return store.ErrorInfo{Class: ClassInternal, Detail: kommo.Redact(ie.Error()), At: now}
	}
	var ke *kommo.Error
	if errors.As(err, &ke) {
		info := store.ErrorInfo{Class: string(ke.Class), HTTPStatus: ke.StatusCode, Title: ke.Title, RequestID: ke.RequestID, At: now}
		var parts []string
		if ke.Detail != "" {
			parts = append(parts, ke.Detail)
		}
		for _, v := range ke.ValidationErrors {
			parts = append(parts, v.Path+": "+firstNonEmpty(v.Detail, v.Code))
		}
		if ke.Hint != "" {
			parts = append(parts, "hint: "+ke.Hint)
		}
		if ke.Err != nil {
			parts = append(parts, ke.Err.Error())
		}
		if len(parts) == 0 && ke.Body != "" && ke.Title == "" {
			parts = append(parts, ke.Body)
		}
		info.Detail = truncate(strings.Join(parts, "; "), 1000)
		return info
	}
	return store.ErrorInfo{Class: string(kommo.ClassNetwork), Detail: truncate(kommo.Redact(err.Error()), 1000), At: now}
}

func (h *Handler) log(ctx context.Context, level slog.Level, a *attempt, outcome, class string, dur time.Duration, requestID, detail string) {
	if !h.cfg.Logger.Enabled(ctx, level) {
		return
	}
	a.mu.Lock()
	waited := a.waited
	a.mu.Unlock()
	attrs := []slog.Attr{
		slog.String("op", a.op), slog.Int64("account", a.account), slog.String("integration", a.integ), slog.String("widget", a.code), slog.String("task_id", a.taskID),
		slog.Int("attempt", a.retryCount+1), slog.String("outcome", outcome), slog.Int64("duration_ms", dur.Milliseconds()),
		slog.Int64("rate_wait_ms", waited.Milliseconds()),
	}
	if class != "" {
		attrs = append(attrs, slog.String("class", class))
	}
	if requestID != "" {
		attrs = append(attrs, slog.String("request_id", requestID))
	}
	if detail != "" {
		attrs = append(attrs, slog.String("detail", detail))
	}
	h.cfg.Logger.LogAttrs(ctx, level, "attempt", attrs...)
}

// pacedTransport waits for the account's rate budget before each request
// (token requests included: Kommo counts them too).
type pacedTransport struct {
	base    http.RoundTripper
	lim     *ratelimit.Limiter
	budget  ratelimit.Budget
	maxWait time.Duration
	a       *attempt
	m       *metrics.Metrics
}

func (t *pacedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	start := time.Now()
	var err error
	if sl := t.a.takeSlot(); sl == nil || (sl.err == nil && start.Sub(sl.at) > slotGrace) {
		err = t.lim.Wait(req.Context(), t.budget, t.maxWait)
	} else if err = sl.err; err == nil {
		// Reserved with the task's state: no round trip of its own.
		err = t.lim.Redeem(req.Context(), t.budget, sl.at, t.maxWait)
	}
	t.a.addWait(time.Since(start))
	if err != nil {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, err
	}
	if req.Method != http.MethodGet {
		// An install or uninstall (or a token refresh) leaves now: until
		// Kommo answers, whether it took effect is unknown.
		t.a.mu.Lock()
		t.a.sentChange = true
		t.a.mu.Unlock()
	}
	sent := time.Now()
	resp, err := t.base.RoundTrip(req)
	status := 0
	if err == nil {
		status = resp.StatusCode
	}
	t.m.Request(req.Method, req.URL.Path, status, time.Since(sent))
	return resp, err
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

// accountTokens is one account's token pair in the store, as the Kommo
// client's refresher reads and writes it: read afresh on every load, and a
// new pair stored before it is used.
type accountTokens struct {
	st    State
	id    int64
	integ string
}

func (t accountTokens) LoadToken(ctx context.Context) (*kommo.Token, error) {
	a, err := t.st.GetAccount(ctx, t.id, t.integ)
	if err != nil {
		return nil, err
	}
	return &kommo.Token{AccessToken: a.AccessToken, RefreshToken: a.RefreshToken, Expiry: a.ExpiresAt}, nil
}

func (t accountTokens) SaveToken(ctx context.Context, tok *kommo.Token) error {
	return t.st.SaveTokens(ctx, t.id, t.integ, tok.AccessToken, tok.RefreshToken, tok.Expiry)
}
