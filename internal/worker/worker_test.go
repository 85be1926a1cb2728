package worker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/widgetq/widgetq/internal/fleettest"
	"github.com/widgetq/widgetq/internal/kommo"
	"github.com/widgetq/widgetq/internal/kommo/sandbox"
	"github.com/widgetq/widgetq/internal/kommohost"
	"github.com/widgetq/widgetq/internal/ratelimit"
	"github.com/widgetq/widgetq/internal/redistest"
	"github.com/widgetq/widgetq/internal/retry"
	"github.com/widgetq/widgetq/internal/seal"
	"github.com/widgetq/widgetq/internal/store"
	"github.com/widgetq/widgetq/internal/waitfor"
	"github.com/widgetq/widgetq/internal/worker"
	"github.com/widgetq/widgetq/producer"
	"github.com/widgetq/widgetq/tasks"
)

type env struct {
	r      *redistest.Redis
	prefix string
	queue  string
	st     *store.Store
	sb     *sandbox.Server
	srv    *httptest.Server
	prod   *producer.Producer
	logs   *fleettest.Buffer
}

func setup(t testing.TB, cfg sandbox.Config) *env {
	t.Helper()
	e := &env{r: redistest.New(t), logs: &fleettest.Buffer{}}
	e.prefix = redistest.Unique(t)
	e.queue = "q-" + e.prefix
	redistest.Forget(t, e.r.Client, e.prefix, e.queue)
	e.st = store.New(e.r.Client, e.prefix)
	e.sb = sandbox.New(cfg)
	e.srv = httptest.NewServer(e.sb)
	e.sb.SetAPIDomain(strings.TrimPrefix(e.srv.URL, "http://"))
	t.Cleanup(func() { e.sb.Close(); e.srv.Close() })
	e.prod = producer.New(e.r.Client, e.prefix, asynq.Queue(e.queue))
	return e
}

// addAccounts creates accounts first..first+n-1 in the sandbox and in the
// store, with an administrator's tokens.
func (e *env) addAccounts(t testing.TB, first, n int) {
	t.Helper()
	for id := first; id < first+n; id++ {
		sub := fmt.Sprintf("a%d", id)
		if err := e.sb.AddAccount(sandbox.AccountSpec{ID: id, Subdomain: sub}); err != nil {
			t.Fatal(err)
		}
		tok, err := e.sb.IssueTokens(sub, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := e.st.PutAccount(context.Background(), store.Account{ID: int64(id), BaseURL: sandbox.BaseURL(e.srv.URL, sub),
			AccessToken: tok.AccessToken, RefreshToken: tok.RefreshToken, ExpiresAt: tok.ExpiresAt}); err != nil {
			t.Fatal(err)
		}
	}
}

func (e *env) oauth() *kommo.OAuthConfig {
	return &kommo.OAuthConfig{ClientID: sandbox.DefaultClientID, ClientSecret: sandbox.DefaultClientSecret}
}

// startWorker runs one in-process worker until the test ends, or until
// the function it returns is called.
// sandboxHosts allows the sandbox's loopback address, as
// WIDGETQ_KOMMO_HOSTS=127.0.0.1 does.
var sandboxHosts, _ = kommohost.Parse("127.0.0.1")

func (e *env) startWorker(t *testing.T, wc worker.Config, lc ratelimit.Config, concurrency int) (stop func()) {
	t.Helper()
	if wc.OAuth == nil {
		wc.OAuth = e.oauth()
	}
	if wc.Hosts == nil {
		wc.Hosts = sandboxHosts
	}
	if wc.Policy == (retry.Policy{}) {
		wc.Policy = retry.Policy{Base: 100 * time.Millisecond, Cap: time.Second}
	}
	wc.Logger = slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	w, err := worker.New(context.Background(), e.r.Client, e.r.Opt(), worker.Options{
		Prefix: e.prefix, Keys: e.st.Keys(), Handler: wc, RatePerAccount: lc.PerAccount, RateGlobal: lc.Global,
		Concurrency: concurrency, Queues: map[string]int{e.queue: 1}, ShutdownTimeout: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- w.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-ran; err != nil {
				t.Errorf("worker: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func (e *env) install(t *testing.T, account int, code string, settings string) {
	t.Helper()
	out, err := e.prod.Install(context.Background(), tasks.InstallWidgetPayload{AccountID: int64(account), WidgetCode: code, Settings: json.RawMessage(settings)})
	if err != nil || out != producer.Queued {
		t.Fatalf("enqueue %d/%s: %v %v", account, code, out, err)
	}
}

// installFillers enqueues n filler widgets into one account.
func (e *env) installFillers(t *testing.T, account, n int) []key {
	t.Helper()
	var keys []key
	for i := range n {
		code := fmt.Sprintf("filler_%04d", i+1)
		e.install(t, account, code, `{"note":"x"}`)
		keys = append(keys, key{int64(account), code})
	}
	return keys
}

type key struct {
	account int64
	code    string
}

// waitFinal waits until every result is final and returns them.
func (e *env) waitFinal(t *testing.T, keys []key, within time.Duration) map[key]*store.Result {
	t.Helper()
	var out map[key]*store.Result
	waitfor.Until(t, within, func() (bool, string) {
		out = map[key]*store.Result{}
		for _, k := range keys {
			if r, err := e.st.Result(context.Background(), k.account, k.code); err == nil && r.Status.Final() {
				out[k] = r
			}
		}
		counts, _ := e.st.CountByStatus(context.Background())
		return len(out) == len(keys), fmt.Sprintf("%d of %d results not final; by status %v; sandbox %+v", len(keys)-len(out), len(keys), counts, e.sb.Counters().Total)
	})
	return out
}

const seed = `{"login":"example","password":"eXaMp1E","phones":{"504141":"1039"},"script_path":"https://example.com/"}`

func TestInstallsEveryAccountOnce(t *testing.T) {
	t.Parallel()
	e := setup(t, sandbox.Config{})
	e.addAccounts(t, 100, 30)
	e.startWorker(t, worker.Config{}, ratelimit.Config{}, 20)
	var keys []key
	for id := 100; id < 130; id++ {
		e.install(t, id, sandbox.WidgetAsterisk, seed)
		keys = append(keys, key{int64(id), sandbox.WidgetAsterisk})
	}
	// The same install again is not queued twice.
	if out, _ := e.prod.Install(context.Background(), tasks.InstallWidgetPayload{AccountID: 100, WidgetCode: sandbox.WidgetAsterisk, Settings: json.RawMessage(seed)}); out != producer.AlreadyQueued {
		t.Fatalf("second enqueue: %s", out)
	}
	res := e.waitFinal(t, keys, 30*time.Second)
	c := e.sb.Counters()
	for _, k := range keys {
		r := res[k]
		if r.Status != store.StatusInstalled || r.Attempts != 1 || r.WidgetID != 101 || r.WidgetVersion != "1.0.3" || r.LastError != nil || r.FinishedAt.IsZero() {
			t.Fatalf("result %+v", r)
		}
		if n := c.Installs(int(k.account), k.code); n != 1 {
			t.Fatalf("account %d installed %d times", k.account, n)
		}
	}
	if c.Total.RateLimited != 0 {
		t.Fatalf("%d 429s", c.Total.RateLimited)
	}
	logs := e.logs.String()
	if strings.Contains(logs, "eXaMp1E") || strings.Count(logs, `"outcome":"installed"`) != 30 {
		t.Fatalf("logs: secret shown or not one line per install:\n%.2000s", logs)
	}
	for _, attr := range []string{`"account":100`, `"widget":"amo_asterisk"`, `"task_id":"install:100:amo_asterisk"`, `"attempt":1`, `"duration_ms":`} {
		if !strings.Contains(logs, attr) {
			t.Fatalf("log lines lack %s", attr)
		}
	}
}

// TestATokenAboutToExpireIsRefreshedBeforeTheRequest: the task's state is
// read without the refresh token; one stored still gets an access token
// within a minute of its expiry refreshed before anything is sent (a 401
// would mean the old one went out first).
func TestATokenAboutToExpireIsRefreshedBeforeTheRequest(t *testing.T) {
	t.Parallel()
	e := setup(t, sandbox.Config{})
	e.addAccounts(t, 1, 1)
	ctx := context.Background()
	a, err := e.st.GetAccount(ctx, 1, "")
	if err != nil {
		t.Fatal(err)
	}
	a.ExpiresAt = time.Now().Add(30 * time.Second) // within the refresh leeway
	if err := e.st.PutAccount(ctx, *a); err != nil {
		t.Fatal(err)
	}
	e.sb.ExpireAccessTokens("a1") // the old token would be answered 401
	e.startWorker(t, worker.Config{}, ratelimit.Config{}, 2)
	e.install(t, 1, sandbox.WidgetAsterisk, seed)
	res := e.waitFinal(t, []key{{1, sandbox.WidgetAsterisk}}, 30*time.Second)
	if r := res[key{1, sandbox.WidgetAsterisk}]; r.Status != store.StatusInstalled {
		t.Fatalf("%+v %+v", r, r.LastError)
	}
	c := e.sb.Counters()
	unauthorized := int64(0)
	for _, byStatus := range c.Requests {
		unauthorized += byStatus["401"]
	}
	if unauthorized != 0 || c.Total.Refreshes != 1 {
		t.Fatalf("%d answers 401, %d refreshes; want the token refreshed once before any request (requests %v)", unauthorized, c.Total.Refreshes, c.Requests)
	}
	if b, _ := e.st.GetAccount(ctx, 1, ""); b.RefreshToken == a.RefreshToken || b.AccessToken == a.AccessToken {
		t.Fatal("the refreshed pair was not stored")
	}
}

func TestPermanentFailuresAfterOneAttempt(t *testing.T) {
	t.Parallel()
	e := setup(t, sandbox.Config{})
	e.addAccounts(t, 1, 5)
	ctx := context.Background()
	// Account 3's token is a plain user's, not an administrator's.
	user, _ := e.sb.IssueTokens("a3", 32)
	a3, _ := e.st.GetAccount(ctx, 3, "")
	a3.AccessToken, a3.RefreshToken = user.AccessToken, user.RefreshToken
	_ = e.st.PutAccount(ctx, *a3)
	// Account 4's token has expired and its refresh token is revoked.
	e.sb.ExpireAccessTokens("a4")
	e.sb.RevokeTokens("a4")
	e.startWorker(t, worker.Config{}, ratelimit.Config{}, 10)

	e.install(t, 1, sandbox.WidgetAsterisk, `{"login":"x","password":"hunter22","phones":{"abc":"1"}}`)
	e.install(t, 2, "no_such_widget", `{}`)
	e.install(t, 3, sandbox.WidgetAsterisk, seed)
	e.install(t, 4, sandbox.WidgetAsterisk, seed)
	e.install(t, 999, sandbox.WidgetAsterisk, seed)
	keys := []key{{1, sandbox.WidgetAsterisk}, {2, "no_such_widget"}, {3, sandbox.WidgetAsterisk}, {4, sandbox.WidgetAsterisk}, {999, sandbox.WidgetAsterisk}}
	res := e.waitFinal(t, keys, 30*time.Second)
	want := map[int64]struct{ class, detail string }{
		1:   {"invalid", "phones.abc: key must be a user ID"},
		2:   {"not_found", "Widget not found"},
		3:   {"forbidden", "administrators"},
		4:   {"token_revoked", "Token has been revoked"},
		999: {"account_unknown", "no credentials stored for account 999"},
	}
	for _, k := range keys {
		r := res[k]
		w := want[k.account]
		if r.Status != store.StatusFailed || r.Attempts != 1 || r.LastError == nil || r.LastError.Class != w.class || !strings.Contains(r.LastError.Detail, w.detail) {
			t.Errorf("account %d: %+v %+v, want failed/%s with %q after one attempt", k.account, r, r.LastError, w.class, w.detail)
		}
	}
	if n := e.sb.Counters().Total.Installs; n != 0 {
		t.Fatalf("%d installs happened", n)
	}
	if strings.Contains(e.logs.String(), "hunter22") {
		t.Fatal("a pass setting reached the log")
	}
	// Permanent failures are archived, not retried.
	insp := asynq.NewInspectorFromRedisClient(e.r.Client)
	waitfor.Until(t, 10*time.Second, func() (bool, string) {
		arch, _ := insp.ListArchivedTasks(e.queue)
		return len(arch) == len(keys), fmt.Sprintf("%d archived tasks, want %d", len(arch), len(keys))
	})
}

func TestAmbiguousFailureIsCheckedBeforeInstallingAgain(t *testing.T) {
	t.Parallel()
	e := setup(t, sandbox.Config{})
	e.addAccounts(t, 1, 2)
	// The install reaches Kommo and takes effect, but its answer is cut off.
	if err := e.sb.SetFaults("a1", sandbox.Faults{TruncateRate: 1, Limit: 1, Routes: []string{"POST /api/v4/widgets/{code}"}}); err != nil {
		t.Fatal(err)
	}
	// And for a2 Kommo fails with a 503 before installing.
	if err := e.sb.SetFaults("a2", sandbox.Faults{ErrorRate: 1, ErrorStatuses: []int{503}, Limit: 1, Routes: []string{"POST /api/v4/widgets/{code}"}}); err != nil {
		t.Fatal(err)
	}
	e.startWorker(t, worker.Config{}, ratelimit.Config{}, 4)
	e.install(t, 1, sandbox.WidgetAsterisk, seed)
	e.install(t, 2, sandbox.WidgetAsterisk, seed)
	res := e.waitFinal(t, []key{{1, sandbox.WidgetAsterisk}, {2, sandbox.WidgetAsterisk}}, 30*time.Second)
	r1, r2 := res[key{1, sandbox.WidgetAsterisk}], res[key{2, sandbox.WidgetAsterisk}]
	if r1.Status != store.StatusAlreadyInstalled || r1.Attempts != 2 {
		t.Fatalf("after a cut-off answer: %+v", r1)
	}
	if r2.Status != store.StatusInstalled || r2.Attempts != 2 {
		t.Fatalf("after a 503: %+v", r2)
	}
	c := e.sb.Counters()
	if c.Installs(1, sandbox.WidgetAsterisk) != 1 || c.Installs(2, sandbox.WidgetAsterisk) != 1 {
		t.Fatalf("installs %d and %d, want 1 each", c.Installs(1, sandbox.WidgetAsterisk), c.Installs(2, sandbox.WidgetAsterisk))
	}
}

func TestRetryableFailuresExhaustTheBudget(t *testing.T) {
	t.Parallel()
	e := setup(t, sandbox.Config{})
	e.addAccounts(t, 1, 1)
	_ = e.sb.SetFaults("a1", sandbox.Faults{ErrorRate: 1, ErrorStatuses: []int{502}, ErrorHTML: true, Routes: []string{"POST /api/v4/widgets/{code}"}})
	e.startWorker(t, worker.Config{}, ratelimit.Config{}, 2)
	_, err := e.prod.Install(context.Background(), tasks.InstallWidgetPayload{AccountID: 1, WidgetCode: sandbox.WidgetAsterisk, Settings: json.RawMessage(seed)}, asynq.MaxRetry(3))
	if err != nil {
		t.Fatal(err)
	}
	r := e.waitFinal(t, []key{{1, sandbox.WidgetAsterisk}}, 30*time.Second)[key{1, sandbox.WidgetAsterisk}]
	if r.Status != store.StatusFailed || r.Attempts != 3 || r.LastError.Class != "server" || r.LastError.HTTPStatus != 502 || r.LastError.RequestID == "" {
		t.Fatalf("result %+v %+v", r, r.LastError)
	}
}

func TestA429PausesTheAccountBeforeItIsBlocked(t *testing.T) {
	t.Parallel()
	// Kommo allows 7/s and blocks after 10 violations in a minute; the
	// worker is misconfigured to send 30/s to one account.
	e := setup(t, sandbox.Config{Widgets: append(sandbox.DefaultCatalog(), sandbox.FillerWidgets(24, 500)...)})
	e.addAccounts(t, 1, 1)
	e.startWorker(t, worker.Config{RateLimitPause: 300 * time.Millisecond}, ratelimit.Config{PerAccount: 30}, 20)
	keys := e.installFillers(t, 1, 24)
	res := e.waitFinal(t, keys, 90*time.Second)
	for _, k := range keys {
		if res[k].Status != store.StatusInstalled {
			t.Fatalf("%s: %+v %+v", k.code, res[k], res[k].LastError)
		}
	}
	c := e.sb.Counters()
	if c.Total.RateLimited == 0 {
		t.Fatal("no 429 at 30/s: the test did not test anything")
	}
	if c.Total.Blocks != 0 {
		t.Fatalf("the account was blocked after %d 429s", c.Total.RateLimited)
	}
	t.Logf("%d 429s, no block", c.Total.RateLimited)
}

func TestBlockedAccountsFailFastWithoutCallingKommo(t *testing.T) {
	t.Parallel()
	e := setup(t, sandbox.Config{})
	e.addAccounts(t, 1, 1)
	e.sb.Block("a1", time.Hour)
	e.startWorker(t, worker.Config{}, ratelimit.Config{}, 1)
	e.install(t, 1, sandbox.WidgetAsterisk, seed)
	r := e.waitFinal(t, []key{{1, sandbox.WidgetAsterisk}}, 20*time.Second)[key{1, sandbox.WidgetAsterisk}]
	if r.Status != store.StatusFailed || r.LastError.Class != "blocked" || r.LastError.HTTPStatus != 403 {
		t.Fatalf("first: %+v %+v", r, r.LastError)
	}
	before := e.sb.Counters().Total.Requests
	e.install(t, 1, sandbox.WidgetCustom, `{"config":1}`)
	r = e.waitFinal(t, []key{{1, sandbox.WidgetCustom}}, 20*time.Second)[key{1, sandbox.WidgetCustom}]
	if r.Status != store.StatusFailed || r.LastError.Class != "blocked" || !strings.Contains(r.LastError.Detail, "nothing was sent") {
		t.Fatalf("second: %+v %+v", r, r.LastError)
	}
	if after := e.sb.Counters().Total.Requests; after != before {
		t.Fatalf("%d requests reached a blocked account", after-before)
	}
	if b, _ := e.st.Blocked(context.Background(), 1); b == nil {
		t.Fatal("no block mark")
	}
}

func TestGarbagePayloadsAreArchived(t *testing.T) {
	t.Parallel()
	e := setup(t, sandbox.Config{})
	e.addAccounts(t, 1, 1)
	e.startWorker(t, worker.Config{}, ratelimit.Config{}, 2)
	client := asynq.NewClientFromRedisClient(e.r.Client)
	for i, p := range []string{`not json`, `{"account_id":-1,"widget_code":"w"}`, `{"account_id":1,"widget_code":"../x"}`, `{"account_id":1,"widget_code":"w","settings":[1]}`, `{"surprise":1}`, "\xff"} {
		if _, err := client.Enqueue(asynq.NewTask(tasks.TypeInstallWidget, []byte(p)), asynq.Queue(e.queue), asynq.TaskID(fmt.Sprint("garbage", i))); err != nil {
			t.Fatal(err)
		}
	}
	// A good task after them still runs.
	e.install(t, 1, sandbox.WidgetAsterisk, seed)
	e.waitFinal(t, []key{{1, sandbox.WidgetAsterisk}}, 20*time.Second)
	insp := asynq.NewInspectorFromRedisClient(e.r.Client)
	var arch []*asynq.TaskInfo
	waitfor.Until(t, 10*time.Second, func() (bool, string) {
		arch, _ = insp.ListArchivedTasks(e.queue)
		return len(arch) == 6, fmt.Sprintf("%d archived, want 6", len(arch))
	})
	for _, a := range arch {
		if !strings.Contains(a.LastErr, "invalid") {
			t.Fatalf("archived with %q", a.LastErr)
		}
	}
}

func TestDeferralsCostNoExtraRequest(t *testing.T) {
	t.Parallel()
	e := setup(t, sandbox.Config{Widgets: append(sandbox.DefaultCatalog(), sandbox.FillerWidgets(6, 500)...)})
	e.addAccounts(t, 1, 1)
	// 3 requests/s for the account and at most 100 ms of waiting in
	// process: most tasks are deferred at least once.
	e.startWorker(t, worker.Config{MaxWait: 100 * time.Millisecond}, ratelimit.Config{PerAccount: 3}, 6)
	keys := e.installFillers(t, 1, 6)
	res := e.waitFinal(t, keys, 60*time.Second)
	for _, k := range keys {
		if res[k].Status != store.StatusInstalled || res[k].Attempts != 1 {
			t.Fatalf("%s: %+v", k.code, res[k])
		}
	}
	if !strings.Contains(e.logs.String(), `"outcome":"deferred"`) {
		t.Fatal("nothing was deferred: the test did not test anything")
	}
	// One template GET and one POST per widget: a deferred run that sent
	// nothing leaves no in-flight mark to make the next run check first.
	if n := e.sb.Counters().Total.Requests; n != 12 {
		t.Fatalf("%d requests to Kommo, want 12", n)
	}
}

func TestSealedSettingsReachKommoOnlyThroughAWorkerWithTheKey(t *testing.T) {
	t.Parallel()
	e := setup(t, sandbox.Config{})
	e.addAccounts(t, 1, 2)
	sk := bytes.Repeat([]byte{9}, seal.KeySize)
	if err := e.prod.SealSettings(sk); err != nil {
		t.Fatal(err)
	}
	e.install(t, 1, sandbox.WidgetAsterisk, seed)
	// A worker without the key cannot open the settings: retried as an
	// internal failure that names the setting, nothing sent to Kommo.
	stop := e.startWorker(t, worker.Config{MaxWait: time.Second}, ratelimit.Config{}, 2)
	var r *store.Result
	waitfor.Until(t, 20*time.Second, func() (bool, string) {
		r, _ = e.st.Result(context.Background(), 1, sandbox.WidgetAsterisk)
		return r != nil && r.LastError != nil, fmt.Sprintf("no attempt recorded: %+v", r)
	})
	if r.Status != store.StatusRetrying || r.LastError.Class != worker.ClassInternal || !strings.Contains(r.LastError.Detail, "WIDGETQ_SECRET_KEY") {
		t.Fatalf("without the key: %+v %+v", r, r.LastError)
	}
	if _, ok := e.sb.Installed("a1", sandbox.WidgetAsterisk); ok {
		t.Fatal("installed without its settings")
	}
	// A worker with the key installs it, with the settings as given.
	stop()
	k, _ := seal.New(sk)
	e.st = store.New(e.r.Client, e.prefix).WithKeys(k)
	e.startWorker(t, worker.Config{}, ratelimit.Config{}, 2)
	e.install(t, 2, sandbox.WidgetAsterisk, seed)
	res := e.waitFinal(t, []key{{1, sandbox.WidgetAsterisk}, {2, sandbox.WidgetAsterisk}}, 30*time.Second)
	for k, r := range res {
		if r.Status != store.StatusInstalled {
			t.Fatalf("%v: %+v", k, r)
		}
	}
	got, ok := e.sb.Installed("a2", sandbox.WidgetAsterisk)
	var m map[string]any
	if !ok || json.Unmarshal(got, &m) != nil || m["password"] != "eXaMp1E" {
		t.Fatalf("Kommo got settings %s", got)
	}
	if strings.Contains(e.logs.String(), "eXaMp1E") {
		t.Fatal("a password reached the log")
	}
}

func TestReconcileGivesArchivedTasksTheirVerdict(t *testing.T) {
	t.Parallel()
	e := setup(t, sandbox.Config{})
	ctx := context.Background()
	e.addAccounts(t, 1, 3)
	for id := 1; id <= 3; id++ {
		e.install(t, id, sandbox.WidgetAsterisk, seed)
	}
	// Account 1's task was on its last attempt (retrying) when its worker
	// died, and asynq archived it; 2's worker had recorded failed itself;
	// 3 was enqueued again since (a newer enqueueing's result).
	r1, _ := e.st.Result(ctx, 1, sandbox.WidgetAsterisk)
	r1.Status, r1.Attempts = store.StatusRetrying, 11
	if err := e.st.Record(ctx, r1); err != nil {
		t.Fatal(err)
	}
	r2, _ := e.st.Result(ctx, 2, sandbox.WidgetAsterisk)
	r2.Status, r2.LastError = store.StatusFailed, &store.ErrorInfo{Class: "server", Detail: "503"}
	if err := e.st.Record(ctx, r2); err != nil {
		t.Fatal(err)
	}
	r3, _ := e.st.Result(ctx, 3, sandbox.WidgetAsterisk)
	r3.EnqueueID = "newer"
	if err := e.st.Record(ctx, r3); err != nil {
		t.Fatal(err)
	}
	// Something other than widgetq's handler archives the three (as
	// asynq's recoverer does after a lost lease).
	srv := asynq.NewServer(e.r.Opt(), asynq.Config{Concurrency: 3, Queues: map[string]int{e.queue: 1}, LogLevel: asynq.FatalLevel})
	mux := asynq.NewServeMux()
	mux.HandleFunc(tasks.TypeInstallWidget, func(context.Context, *asynq.Task) error {
		return fmt.Errorf("asynq: task lease expired: %w", asynq.SkipRetry)
	})
	if err := srv.Start(mux); err != nil {
		t.Fatal(err)
	}
	insp := asynq.NewInspectorFromRedisClient(e.r.Client)
	waitfor.Until(t, 20*time.Second, func() (bool, string) {
		qi, err := insp.GetQueueInfo(e.queue)
		return err == nil && qi.Archived == 3, fmt.Sprintf("not archived: %+v %v", qi, err)
	})
	srv.Shutdown()

	lim, _ := ratelimit.New(e.r.Client, ratelimit.Config{Prefix: e.prefix})
	h := worker.NewHandler(e.st, lim, worker.Config{Hosts: sandboxHosts, Logger: slog.New(slog.NewJSONHandler(e.logs, nil))})
	n, err := h.Reconcile(ctx, insp, []string{e.queue, "no-such-queue"}, time.Now().Add(-time.Hour))
	if err != nil || n != 1 {
		t.Fatalf("reconciled %d, %v; want 1", n, err)
	}
	got, _ := e.st.Result(ctx, 1, sandbox.WidgetAsterisk)
	if got.Status != store.StatusFailed || got.LastError == nil || got.LastError.Class != worker.ClassInterrupted || got.Attempts != 11 ||
		!strings.Contains(got.LastError.Detail, "lease expired") || got.FinishedAt.IsZero() {
		t.Fatalf("account 1: %+v %+v", got, got.LastError)
	}
	if got, _ := e.st.Result(ctx, 2, sandbox.WidgetAsterisk); got.LastError == nil || got.LastError.Class != "server" {
		t.Fatalf("account 2's own verdict was overwritten: %+v", got.LastError)
	}
	if got, _ := e.st.Result(ctx, 3, sandbox.WidgetAsterisk); got.Status != store.StatusQueued || got.EnqueueID != "newer" {
		t.Fatalf("account 3's newer result was overwritten: %+v", got)
	}
	// A second pass writes nothing.
	if n, err := h.Reconcile(ctx, insp, []string{e.queue}, time.Now().Add(-time.Hour)); n != 0 || err != nil {
		t.Fatalf("second pass: %d %v", n, err)
	}
}
