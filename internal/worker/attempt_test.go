package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/widgetq/widgetq/internal/keyspace"
	"github.com/widgetq/widgetq/internal/kommo/sandbox"
	"github.com/widgetq/widgetq/internal/ratelimit"
	"github.com/widgetq/widgetq/internal/retry"
	"github.com/widgetq/widgetq/internal/store"
	"github.com/widgetq/widgetq/internal/worker"
	"github.com/widgetq/widgetq/tasks"
)

// handler is a handler on the test's store and sandbox, for RunAttempt.
func (e *env) handler(t *testing.T, cfg worker.Config) *worker.Handler {
	t.Helper()
	lim, err := ratelimit.New(e.r.Client, ratelimit.Config{Prefix: e.prefix})
	if err != nil {
		t.Fatal(err)
	}
	cfg.OAuth, cfg.Hosts = e.oauth(), sandboxHosts
	return worker.NewHandler(e.st, lim, cfg)
}

// TestOneAttemptInProcess runs single attempts through RunAttempt: a 503
// on a middle attempt is retried and recorded retrying; the same on the
// last attempt fails for good; a healthy Kommo installs.
func TestOneAttemptInProcess(t *testing.T) {
	t.Parallel()
	e := setup(t, sandbox.Config{})
	e.addAccounts(t, 1, 1)
	h := e.handler(t, worker.Config{})
	task, err := tasks.NewInstallWidgetTask(tasks.InstallWidgetPayload{AccountID: 1, WidgetCode: sandbox.WidgetAsterisk, Settings: json.RawMessage(seed)})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	run := func(retried int) (*store.Result, error) {
		t.Helper()
		err := h.RunAttempt(ctx, task, worker.Attempt{TaskID: "install:1:" + sandbox.WidgetAsterisk, Queue: e.queue, Retried: retried, MaxRetry: 5})
		r, rerr := e.st.Result(ctx, 1, sandbox.WidgetAsterisk)
		if rerr != nil {
			t.Fatal(rerr)
		}
		return r, err
	}
	_ = e.sb.SetFaults("a1", sandbox.Faults{ErrorRate: 1, ErrorStatuses: []int{503}, Routes: []string{"POST /api/v4/widgets/{code}"}})
	r, err := run(1)
	if err == nil || errors.Is(err, asynq.SkipRetry) || !retry.IsFailure(err) || r.Status != store.StatusRetrying || r.LastError.Class != "server" {
		t.Fatalf("a 503 on a middle attempt: %v; %+v", err, r)
	}
	r, err = run(4)
	if !errors.Is(err, asynq.SkipRetry) || r.Status != store.StatusFailed {
		t.Fatalf("a 503 on the last attempt: %v; %+v", err, r)
	}
	_ = e.sb.SetFaults("a1", sandbox.Faults{})
	r, err = run(0)
	if err != nil || (r.Status != store.StatusInstalled && r.Status != store.StatusAlreadyInstalled) {
		t.Fatalf("a healthy Kommo: %v; %+v", err, r)
	}
}

// TestAnInterruptedInstallIsCheckedOnlyOnceItMustHaveFinished: a run cut
// off by a stopping worker leaves its in-flight mark; the next run waits
// (deferred, nothing sent) until that install must have finished at Kommo,
// and only then asks and installs.
func TestAnInterruptedInstallIsCheckedOnlyOnceItMustHaveFinished(t *testing.T) {
	t.Parallel()
	e := setup(t, sandbox.Config{})
	e.addAccounts(t, 1, 1)
	p := tasks.InstallWidgetPayload{AccountID: 1, WidgetCode: sandbox.WidgetAsterisk, Settings: json.RawMessage(seed), EnqueueID: "e1"}
	task, err := tasks.NewInstallWidgetTask(p)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := e.st.MarkQueued(ctx, store.Queued{Op: "install", Queue: e.queue, AccountID: 1, Code: p.WidgetCode, TaskID: "t", EnqueueID: "e1"}); err != nil {
		t.Fatal(err)
	}
	// The interrupted run: its mark, set now.
	if _, err := e.st.Begin(ctx, 1, "", p.WidgetCode, true); err != nil {
		t.Fatal(err)
	}
	before := e.sb.Counters().Total.Requests
	at := worker.Attempt{TaskID: "t", Queue: e.queue, Retried: 0, MaxRetry: 5}
	h := e.handler(t, worker.Config{RequestTimeout: time.Hour})
	err = h.RunAttempt(ctx, task, at)
	var de *retry.DeferError
	if !errors.As(err, &de) || retry.IsFailure(err) || de.Delay < 59*time.Minute {
		t.Fatalf("within the request timeout: %v, want a deferral of about an hour", err)
	}
	if n := e.sb.Counters().Total.Requests; n != before {
		t.Fatalf("%d requests sent while the earlier install may be under way", n-before)
	}
	// The mark keeps the first run's time: a deferred run does not move it.
	if r, _ := e.st.Result(ctx, 1, p.WidgetCode); r == nil || !r.InFlight || time.Since(r.InFlightSince) > time.Minute {
		t.Fatalf("mark %+v", r)
	}
	// Once it must have finished: ask, then install (once).
	// (The mark, as if set a minute ago.)
	if err := e.r.Client.HSet(ctx, keyspace.New(e.prefix).Key("res", "1", p.WidgetCode), "inflight", time.Now().Add(-time.Minute).UTC().Format(time.RFC3339Nano)).Err(); err != nil {
		t.Fatal(err)
	}
	h = e.handler(t, worker.Config{RequestTimeout: 30 * time.Second})
	if err := h.RunAttempt(ctx, task, at); err != nil {
		t.Fatal(err)
	}
	r, _ := e.st.Result(ctx, 1, p.WidgetCode)
	if r.Status != store.StatusInstalled || r.InFlight || e.sb.Counters().Installs(1, p.WidgetCode) != 1 {
		t.Fatalf("result %+v; installs %d", r, e.sb.Counters().Installs(1, p.WidgetCode))
	}
}

// TestARedeliveredSuccessSendsNothing: asynq requeues a task when a
// stopping worker's time is up, even if its handler then finished and
// recorded the install; the next run of that enqueueing sends nothing.
func TestARedeliveredSuccessSendsNothing(t *testing.T) {
	t.Parallel()
	e := setup(t, sandbox.Config{})
	e.addAccounts(t, 1, 1)
	h := e.handler(t, worker.Config{})
	p := tasks.InstallWidgetPayload{AccountID: 1, WidgetCode: sandbox.WidgetAsterisk, Settings: json.RawMessage(seed), EnqueueID: "e7"}
	task, err := tasks.NewInstallWidgetTask(p)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	at := worker.Attempt{TaskID: "t", Queue: e.queue, MaxRetry: 5}
	if err := h.RunAttempt(ctx, task, at); err != nil {
		t.Fatal(err)
	}
	sent := e.sb.Counters().Total.Requests
	if err := h.RunAttempt(ctx, task, at); err != nil {
		t.Fatal(err)
	}
	r, _ := e.st.Result(ctx, 1, p.WidgetCode)
	if n := e.sb.Counters().Total.Requests; n != sent || r.Status != store.StatusInstalled || e.sb.Counters().Installs(1, p.WidgetCode) != 1 {
		t.Fatalf("redelivered: %d more requests, result %+v", n-sent, r)
	}
	// A new enqueueing of the same widget (a replay, a new bulk run) runs.
	p.EnqueueID = "e8"
	task, _ = tasks.NewInstallWidgetTask(p)
	if err := h.RunAttempt(ctx, task, at); err != nil {
		t.Fatal(err)
	}
	if n := e.sb.Counters().Total.Requests; n == sent {
		t.Fatal("a new enqueueing was skipped")
	}
}

// TestAnUnregisteredIntegrationFailsWithoutARequest: a payload naming an
// integration the registry does not have is recorded failed, its class
// integration_unknown, and nothing reaches Kommo.
func TestAnUnregisteredIntegrationFailsWithoutARequest(t *testing.T) {
	t.Parallel()
	e := setup(t, sandbox.Config{})
	e.addAccounts(t, 1, 1)
	h := e.handler(t, worker.Config{})
	task, err := tasks.NewInstallWidgetTask(tasks.InstallWidgetPayload{AccountID: 1, WidgetCode: sandbox.WidgetAsterisk, Settings: json.RawMessage(seed), Integration: "nobody"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	err = h.RunAttempt(ctx, task, worker.Attempt{TaskID: "install:1:" + sandbox.WidgetAsterisk, Queue: e.queue, MaxRetry: 5})
	r, rerr := e.st.Result(ctx, 1, sandbox.WidgetAsterisk)
	if !errors.Is(err, asynq.SkipRetry) || rerr != nil || r.Status != store.StatusFailed || r.LastError.Class != worker.ClassIntegrationUnknown || r.Integration != "nobody" {
		t.Fatalf("%v; %+v (%v)", err, r, rerr)
	}
	if n := e.sb.Counters().Total.Requests; n != 0 {
		t.Fatalf("%d requests reached Kommo", n)
	}
	// Credentials of another integration than the account's are missing:
	// account_unknown, naming the integration.
	if err := e.st.PutIntegration(ctx, store.Integration{Name: "vendor-x", ClientID: "x", ClientSecret: "sx", RedirectURI: "https://v.example/x", Widgets: []string{sandbox.WidgetAsterisk}}); err != nil {
		t.Fatal(err)
	}
	task, _ = tasks.NewInstallWidgetTask(tasks.InstallWidgetPayload{AccountID: 1, WidgetCode: sandbox.WidgetAsterisk, Settings: json.RawMessage(seed)})
	h = e.handler(t, worker.Config{}) // a fresh registry cache
	_ = h.RunAttempt(ctx, task, worker.Attempt{TaskID: "install:1:" + sandbox.WidgetAsterisk, Queue: e.queue, MaxRetry: 5})
	r, _ = e.st.Result(ctx, 1, sandbox.WidgetAsterisk)
	if r.Status != store.StatusFailed || r.LastError.Class != worker.ClassAccountUnknown || r.Integration != "vendor-x" || !strings.Contains(r.LastError.Detail, "vendor-x") {
		t.Fatalf("owner without credentials: %+v %+v", r, r.LastError)
	}
}

// countingReservations is a handler whose limiter judges by a frozen
// clock with a 1 µs interval (no margin): each reservation moves the
// budget's TAT by 1, so reservations(account) counts those made for the
// default integration's budget in account.
func (e *env) countingReservations(t *testing.T) (h *worker.Handler, reservations func(account string) int64) {
	t.Helper()
	frozen := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	lim, err := ratelimit.New(e.r.Client, ratelimit.Config{Prefix: e.prefix, PerAccount: 1e6, PerAccountTotal: 1e6, Margin: -1, Now: func() time.Time { return frozen }})
	if err != nil {
		t.Fatal(err)
	}
	return worker.NewHandler(e.st, lim, worker.Config{OAuth: e.oauth(), Hosts: sandboxHosts}), func(account string) int64 {
		tat, err := e.r.Client.Get(context.Background(), keyspace.New(e.prefix).Key("rl", "tat", account)).Int64()
		if err != nil {
			return 0
		}
		return tat - frozen.UnixMicro()
	}
}

// TestEachRequestSpendsOneReservationTheFirstMadeWithTheState: the rate
// slot of an attempt's first request is reserved in the script that reads
// the task's state, and spent by that request; later requests reserve
// their own; a task that may not reach the account reserves nothing. On a
// frozen limiter clock with a 1 µs interval, the budget's TAT moves 1 per
// reservation, so it counts them against the sandbox's requests.
func TestEachRequestSpendsOneReservationTheFirstMadeWithTheState(t *testing.T) {
	t.Parallel()
	e := setup(t, sandbox.Config{Widgets: sandbox.FillerWidgets(1, 500)})
	e.addAccounts(t, 1, 2)
	h, reservations := e.countingReservations(t)
	ctx := context.Background()
	install := func(account int64, code string) {
		t.Helper()
		if err := h.RunAttempt(ctx, widgetTask(t, account, code, `{}`), worker.Attempt{TaskID: "t", Queue: e.queue, MaxRetry: 5}); err != nil {
			t.Fatalf("install %s into %d: %v", code, account, err)
		}
	}
	// The first install also reads the widget's template: two requests.
	install(1, "filler_0001")
	// Again: the template is cached now, one request.
	install(1, "filler_0001")
	requests := e.sb.Counters().Accounts["1"].Requests
	if got := reservations("1"); requests != 3 || got != requests {
		t.Fatalf("account 1: %d requests, %d reservations; want 3 of each", requests, got)
	}
	// A blocked account: nothing sent, nothing reserved.
	if err := e.st.MarkBlocked(ctx, store.Block{AccountID: 2}, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := h.RunAttempt(ctx, widgetTask(t, 2, "filler_0001", `{}`), worker.Attempt{TaskID: "t2", Queue: e.queue, MaxRetry: 5}); !errors.Is(err, asynq.SkipRetry) {
		t.Fatalf("a blocked account's install: %v", err)
	}
	if got := reservations("2"); got != 0 || e.sb.Counters().Accounts["2"].Requests != 0 {
		t.Fatalf("a blocked account: %d reservations, %d requests", got, e.sb.Counters().Accounts["2"].Requests)
	}
}

// TestAStaleSlotIsNotUsed: a request sent long after the slot reserved
// with its task's state (here a token refresh that waited for another
// process's refresh lock) reserves a slot of its own: sent late on an old
// slot, it could reach Kommo right behind the next one's request. And an
// install whose widget's template is not cached reserves nothing with its
// state: it would wait for the template first.
func TestAStaleSlotIsNotUsed(t *testing.T) {
	t.Parallel()
	e := setup(t, sandbox.Config{Widgets: sandbox.FillerWidgets(1, 500)})
	e.addAccounts(t, 1, 2)
	h, reservations := e.countingReservations(t)
	ctx := context.Background()
	run := func(account int64) {
		t.Helper()
		if err := h.RunAttempt(ctx, widgetTask(t, account, "filler_0001", `{}`), worker.Attempt{TaskID: fmt.Sprint("t", account), Queue: e.queue, MaxRetry: 5}); err != nil {
			t.Fatalf("install into %d: %v", account, err)
		}
	}
	// The template is not cached: the first request (its GET) reserves
	// when it goes, and the install's POST too.
	run(1)
	if got, requests := reservations("1"), e.sb.Counters().Accounts["1"].Requests; requests != 2 || got != 2 {
		t.Fatalf("account 1: %d requests, %d reservations; want 2 of each", requests, got)
	}
	// Account 2's token has expired and another process holds its refresh
	// lock for 300 ms: the refresh goes out that late after the slot.
	a, err := e.st.GetAccount(ctx, 2, "")
	if err != nil {
		t.Fatal(err)
	}
	a.ExpiresAt = time.Now().Add(-time.Hour)
	if err := e.st.PutAccount(ctx, *a); err != nil {
		t.Fatal(err)
	}
	unlock, err := e.st.RefreshLock(2, "").Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	time.AfterFunc(300*time.Millisecond, unlock)
	run(2)
	c := e.sb.Counters()
	if c.Accounts["2"].Refreshes != 1 {
		t.Fatalf("account 2: %d refreshes, want 1", c.Accounts["2"].Refreshes)
	}
	if got, requests := reservations("2"), c.Accounts["2"].Requests; requests != 2 || got != 3 {
		t.Fatalf("account 2: %d requests, %d reservations; want 2 requests and 3 reservations (the stale one unused)", requests, got)
	}
}
