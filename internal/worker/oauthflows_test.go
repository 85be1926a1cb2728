package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/widgetq/widgetq/internal/kommo/sandbox"
	"github.com/widgetq/widgetq/internal/store"
	"github.com/widgetq/widgetq/internal/worker"
	"github.com/widgetq/widgetq/tasks"
)

func installTask(t *testing.T, account int64) *asynq.Task {
	t.Helper()
	return widgetTask(t, account, sandbox.WidgetAsterisk, seed)
}

// widgetTask is an install of code into account with settings.
func widgetTask(t *testing.T, account int64, code, settings string) *asynq.Task {
	t.Helper()
	task, err := tasks.NewInstallWidgetTask(tasks.InstallWidgetPayload{AccountID: account, WidgetCode: code, Settings: json.RawMessage(settings)})
	if err != nil {
		t.Fatal(err)
	}
	return task
}

// TestASubdomainChangeIsFollowedOnce: the account was renamed in Kommo; its
// stored host answers 404. The worker asks the token's api_domain for the
// current subdomain, stores the new base URL and installs there, in the
// same attempt.
func TestASubdomainChangeIsFollowedOnce(t *testing.T) {
	t.Parallel()
	e := setup(t, sandbox.Config{})
	e.addAccounts(t, 1, 2)
	if err := e.sb.RenameAccount("a1", "a1renamed"); err != nil {
		t.Fatal(err)
	}
	h := e.handler(t, worker.Config{})
	ctx := context.Background()
	if err := h.RunAttempt(ctx, installTask(t, 1), worker.Attempt{TaskID: "install:1:" + sandbox.WidgetAsterisk, Queue: e.queue, MaxRetry: 5}); err != nil {
		t.Fatalf("install after the rename: %v", err)
	}
	r, _ := e.st.Result(ctx, 1, sandbox.WidgetAsterisk)
	a, _ := e.st.GetAccount(ctx, 1, "")
	if r.Status != store.StatusInstalled || a.BaseURL != sandbox.BaseURL(e.srv.URL, "a1renamed") {
		t.Fatalf("result %s, base URL %s", r.Status, a.BaseURL)
	}
	if _, ok := e.sb.Installed("a1renamed", sandbox.WidgetAsterisk); !ok {
		t.Fatal("not installed at the new subdomain")
	}
	// An unknown widget's 404 is Kommo's problem+json: no subdomain is
	// asked, nothing moves.
	before := e.sb.Counters().Total.Requests
	task, _ := tasks.NewInstallWidgetTask(tasks.InstallWidgetPayload{AccountID: 2, WidgetCode: "no_such_widget"})
	_ = h.RunAttempt(ctx, task, worker.Attempt{TaskID: "install:2:no_such_widget", Queue: e.queue, MaxRetry: 5})
	if a2, _ := e.st.GetAccount(ctx, 2, ""); a2.BaseURL != sandbox.BaseURL(e.srv.URL, "a2") {
		t.Fatalf("account 2 moved to %s", a2.BaseURL)
	}
	if n := e.sb.Counters().Total.Requests - before; n != 1 {
		t.Fatalf("%d requests for an unknown widget, want 1 (no subdomain question)", n)
	}
}

// TestRevokedCredentialsFailWithoutARequest: after Kommo's revoke hook,
// the integration's pending tasks for the account fail token_revoked and
// nothing is sent.
func TestRevokedCredentialsFailWithoutARequest(t *testing.T) {
	t.Parallel()
	e := setup(t, sandbox.Config{})
	e.addAccounts(t, 1, 1)
	ctx := context.Background()
	if ok, err := e.st.MarkRevoked(ctx, 1, ""); !ok || err != nil {
		t.Fatalf("mark revoked: %v %v", ok, err)
	}
	h := e.handler(t, worker.Config{})
	err := h.RunAttempt(ctx, installTask(t, 1), worker.Attempt{TaskID: "install:1:" + sandbox.WidgetAsterisk, Queue: e.queue, MaxRetry: 5})
	r, _ := e.st.Result(ctx, 1, sandbox.WidgetAsterisk)
	if !errors.Is(err, asynq.SkipRetry) || r.Status != store.StatusFailed || r.LastError.Class != "token_revoked" || !strings.Contains(r.LastError.Detail, "revoke hook") {
		t.Fatalf("%v; %+v", err, r.LastError)
	}
	if n := e.sb.Counters().Total.Requests; n != 0 {
		t.Fatalf("%d requests sent for revoked credentials", n)
	}
}

// TestConnectStoresTheAccountAndQueuesItsInstalls: an install redirect's
// code, exchanged by a worker with the integration's own client.
func TestConnectStoresTheAccountAndQueuesItsInstalls(t *testing.T) {
	t.Parallel()
	e := setup(t, sandbox.Config{Clients: []sandbox.Client{{ID: "vendor-a", Secret: "SA", RedirectURI: "https://v.example/cb"}}})
	if err := e.sb.AddAccount(sandbox.AccountSpec{ID: 77, Subdomain: "a77"}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := e.st.PutIntegration(ctx, store.Integration{Name: "vendor-a", ClientID: "vendor-a", ClientSecret: "SA", RedirectURI: "https://v.example/cb",
		Widgets: []string{sandbox.WidgetAsterisk}, InstallOnConnect: map[string]json.RawMessage{sandbox.WidgetAsterisk: json.RawMessage(seed)}}); err != nil {
		t.Fatal(err)
	}
	code, err := e.sb.IssueCodeFor("vendor-a", "a77", 0)
	if err != nil {
		t.Fatal(err)
	}
	task, err := tasks.NewConnectAccountTask(tasks.ConnectAccountPayload{Integration: "vendor-a", BaseURL: sandbox.BaseURL(e.srv.URL, "a77"), Code: code, ReceivedAt: time.Now()}, code)
	if err != nil {
		t.Fatal(err)
	}
	cfg := worker.Config{Producer: e.prod}
	h := e.handler(t, cfg)
	at := worker.Attempt{TaskID: tasks.ConnectTaskID("vendor-a", code), Queue: e.queue, MaxRetry: 5}
	if err := h.RunAttempt(ctx, task, at); err != nil {
		t.Fatalf("connect: %v", err)
	}
	a, err := e.st.GetAccount(ctx, 77, "vendor-a")
	if err != nil || a.BaseURL != sandbox.BaseURL(e.srv.URL, "a77") || a.RefreshToken == "" {
		t.Fatalf("stored %v %v", a, err)
	}
	pending, _ := asynq.NewInspectorFromRedisClient(e.r.Client).ListPendingTasks(e.queue)
	if len(pending) != 1 || pending[0].ID != tasks.InstallTaskID(77, sandbox.WidgetAsterisk) {
		t.Fatalf("pending after connect: %d", len(pending))
	}
	p, _ := tasks.DecodeInstallWidget(pending[0].Payload)
	if p.Integration != "vendor-a" {
		t.Fatalf("install-on-connect payload integration %q", p.Integration)
	}
	// The same code again (a redelivery): Kommo refuses it, the task
	// fails for good, the stored credentials stay.
	err = h.RunAttempt(ctx, task, at)
	if !errors.Is(err, asynq.SkipRetry) || strings.Contains(err.Error(), code) {
		t.Fatalf("a spent code: %v", err)
	}
	if b, _ := e.st.GetAccount(ctx, 77, "vendor-a"); b.AccessToken != a.AccessToken {
		t.Fatal("a refused exchange changed the stored credentials")
	}
	if c := e.sb.Counters(); c.Clients["vendor-a"].Requests < 2 {
		t.Fatalf("client requests %+v", c.Clients)
	}
}

// TestEveryTaskEventIsWrittenWithItsResult: with webhooks on, each final
// result of an install or uninstall, succeeded or failed, writes its event
// to the outbox in the same step; retries write none.
func TestEveryTaskEventIsWrittenWithItsResult(t *testing.T) {
	t.Parallel()
	e := setup(t, sandbox.Config{})
	e.addAccounts(t, 1, 2)
	h := e.handler(t, worker.Config{Events: true})
	ctx := context.Background()
	run := func(task *asynq.Task, id string, retried int) {
		t.Helper()
		_ = h.RunAttempt(ctx, task, worker.Attempt{TaskID: id, Queue: e.queue, Retried: retried, MaxRetry: 5})
	}
	run(installTask(t, 1), "install:1:"+sandbox.WidgetAsterisk, 0)
	un, _ := tasks.NewUninstallWidgetTask(tasks.UninstallWidgetPayload{AccountID: 1, WidgetCode: sandbox.WidgetAsterisk})
	run(un, "uninstall:1:"+sandbox.WidgetAsterisk, 0)
	bad, _ := tasks.NewInstallWidgetTask(tasks.InstallWidgetPayload{AccountID: 2, WidgetCode: "no_such_widget"})
	run(bad, "install:2:no_such_widget", 0)
	unbad, _ := tasks.NewUninstallWidgetTask(tasks.UninstallWidgetPayload{AccountID: 2, WidgetCode: "no_such_widget"})
	run(unbad, "uninstall:2:no_such_widget", 0)
	// A retryable failure on a middle attempt: no event.
	_ = e.sb.SetFaults("a2", sandbox.Faults{ErrorRate: 1, ErrorStatuses: []int{503}})
	run(installTask(t, 2), "install:2:"+sandbox.WidgetAsterisk, 1)
	es, err := e.st.OutboxPeek(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, en := range es {
		var ev struct {
			Type string `json:"type"`
		}
		_ = json.Unmarshal([]byte(en.Event), &ev)
		types = append(types, ev.Type)
	}
	if strings.Join(types, " ") != "install.succeeded uninstall.succeeded install.failed uninstall.failed" {
		t.Fatalf("outbox events: %v", types)
	}
}

// TestVerifyRecordsDrift: an install checked later — still standing, its
// settings changed in Kommo, or uninstalled there — gets verified_at or a
// drift result naming what changed, never a settings value.
func TestVerifyRecordsDrift(t *testing.T) {
	t.Parallel()
	e := setup(t, sandbox.Config{})
	e.addAccounts(t, 1, 2)
	h := e.handler(t, worker.Config{})
	ctx := context.Background()
	for id := int64(1); id <= 2; id++ {
		if err := h.RunAttempt(ctx, installTask(t, id), worker.Attempt{TaskID: tasks.InstallTaskID(id, sandbox.WidgetAsterisk), Queue: e.queue, MaxRetry: 5}); err != nil {
			t.Fatal(err)
		}
	}
	verify := func(id int64) *store.Result {
		t.Helper()
		r, _ := e.st.Result(ctx, id, sandbox.WidgetAsterisk)
		task, err := tasks.NewVerifyWidgetTask(tasks.VerifyWidgetPayload{AccountID: id, WidgetCode: sandbox.WidgetAsterisk, EnqueueID: r.EnqueueID})
		if err != nil {
			t.Fatal(err)
		}
		if err := h.RunAttempt(ctx, task, worker.Attempt{TaskID: tasks.VerifyTaskID(id, sandbox.WidgetAsterisk), Queue: e.queue, MaxRetry: 5}); err != nil {
			t.Fatalf("verify %d: %v", id, err)
		}
		r, _ = e.st.Result(ctx, id, sandbox.WidgetAsterisk)
		return r
	}
	r, _ := e.st.Result(ctx, 1, sandbox.WidgetAsterisk)
	if _, ok := r.SettingsDigest["login"]; !ok || r.SettingsDigest["password"] != "" {
		t.Fatalf("digest %v: want login's, never the pass", r.SettingsDigest)
	}
	if r = verify(1); r.Status != store.StatusInstalled || r.VerifiedAt.IsZero() {
		t.Fatalf("standing install: %+v", r)
	}
	// A user changes the login in Kommo.
	kommoCall(t, e, 1, "POST", `{"login":"someone-else","password":"eXaMp1E","phones":{"504141":"1039"},"script_path":"https://example.com/"}`)
	if r = verify(1); r.Status != store.StatusFailed || r.LastError.Class != worker.ClassDriftSettings || !strings.Contains(r.LastError.Detail, "keys: login") ||
		strings.Contains(r.LastError.Detail, "someone-else") {
		t.Fatalf("settings drift: %+v %+v", r, r.LastError)
	}
	// A user uninstalls it in Kommo.
	kommoCall(t, e, 2, "DELETE", "")
	if r = verify(2); r.Status != store.StatusFailed || r.LastError.Class != worker.ClassDriftUninstalled {
		t.Fatalf("uninstall drift: %+v %+v", r, r.LastError)
	}
}

// kommoCall changes a widget in the sandbox as a user of the account would.
func kommoCall(t *testing.T, e *env, account int64, method, body string) {
	t.Helper()
	a, err := e.st.GetAccount(context.Background(), account, "")
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(method, a.BaseURL+"/api/v4/widgets/"+sandbox.WidgetAsterisk, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+a.AccessToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		t.Fatalf("%s widget in account %d: %d", method, account, resp.StatusCode)
	}
}
