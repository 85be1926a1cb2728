package httpapi_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/widgetq/widgetq/internal/httpapi"
	"github.com/widgetq/widgetq/internal/kommohost"
	"github.com/widgetq/widgetq/internal/redistest"
	"github.com/widgetq/widgetq/internal/store"
	"github.com/widgetq/widgetq/producer"
	"github.com/widgetq/widgetq/tasks"
)

// oauthSetup is setup with two integrations registered (vendor-a with a
// state), the default one from the environment, and a log to search.
func oauthSetup(t *testing.T) (*fixture, *asynq.Inspector, string, *bytes.Buffer) {
	t.Helper()
	r := redistest.New(t)
	prefix := redistest.Unique(t)
	hosts, _ := kommohost.Parse("")
	st := store.New(r.Client, prefix).WithHosts(hosts)
	ctx := context.Background()
	for _, i := range []store.Integration{
		{Name: "vendor-a", ClientID: "client-a", ClientSecret: "SECRET-A", RedirectURI: "https://v.example/a", State: "st-a", Widgets: []string{"w_a"}},
		{Name: "vendor-b", ClientID: "client-b", ClientSecret: "SECRET-B", RedirectURI: "https://v.example/b"},
	} {
		if err := st.PutIntegration(ctx, i); err != nil {
			t.Fatal(err)
		}
	}
	queue := "q-" + prefix
	prod := producer.New(r.Client, prefix, asynq.Queue(queue))
	t.Cleanup(func() { prod.Close() })
	var logs bytes.Buffer
	_, router := spec(t)
	srv := &httpapi.Server{Prod: prod, Store: st, Tokens: []string{token}, Logger: slog.New(slog.NewJSONHandler(&logs, nil)),
		Default: &store.Integration{Name: "default", ClientID: "env-client", ClientSecret: "ENV-SECRET"}}
	insp := asynq.NewInspectorFromRedisClient(r.Client)
	return &fixture{h: srv.Handler(), st: st, router: router}, insp, queue, &logs
}

func TestInstallRedirectQueuesTheCodesExchange(t *testing.T) {
	t.Parallel()
	f, insp, queue, logs := oauthSetup(t)
	cb := func(q url.Values) (int, map[string]any) {
		t.Helper()
		code, m, _ := f.call(t, "GET", "/oauth/callback?"+q.Encode(), "", "", q.Get("code") != "")
		return code, m
	}
	q := url.Values{"code": {"def-CODE-9f8e"}, "referer": {"acme.kommo.com"}, "client_id": {"client-a"}, "state": {"st-a"}}
	if code, m := cb(q); code != 202 || m["integration"] != "vendor-a" {
		t.Fatalf("good redirect: %d %v", code, m)
	}
	// The same redirect twice queues one exchange.
	if code, _ := cb(q); code != 202 {
		t.Fatalf("second redirect: %d", code)
	}
	pending, _ := insp.ListPendingTasks(queue)
	if len(pending) != 1 || pending[0].Type != tasks.TypeConnectAccount {
		t.Fatalf("pending %d tasks", len(pending))
	}
	p, err := tasks.DecodeConnectAccount(pending[0].Payload)
	if err != nil || p.Integration != "vendor-a" || p.BaseURL != "https://acme.kommo.com" || p.Code != "def-CODE-9f8e" {
		t.Fatalf("payload %+v %v", p, err)
	}
	// Refused, nothing queued: a wrong state, an unknown client, a referer
	// off the allow-list, a missing code.
	for _, c := range []struct {
		mod   func(url.Values)
		field string
	}{
		{func(q url.Values) { q.Set("state", "forged") }, "state"},
		{func(q url.Values) { q.Del("state") }, "state"},
		{func(q url.Values) { q.Set("client_id", "someone-else") }, "client_id"},
		{func(q url.Values) { q.Set("referer", "attacker.example") }, "referer"},
		{func(q url.Values) { q.Set("referer", "acme.kommo.com.attacker.example/x") }, "referer"},
		{func(q url.Values) { q.Del("code") }, "code"},
	} {
		bad := url.Values{}
		for k, v := range q {
			bad[k] = v
		}
		bad.Set("code", "def-OTHER")
		c.mod(bad)
		code, m := cb(bad)
		if (code != 403 && code != 400) || m["field"] != c.field {
			t.Errorf("%v: %d %v, want refused naming %s", bad, code, m, c.field)
		}
	}
	if pending, _ := insp.ListPendingTasks(queue); len(pending) != 1 {
		t.Fatalf("%d tasks queued after refusals", len(pending))
	}
	// An integration registered without a state takes any; the default
	// one comes from the environment.
	if code, m := cb(url.Values{"code": {"c2"}, "referer": {"beta.amocrm.ru"}, "client_id": {"client-b"}, "from_widget": {"1"}}); code != 202 || m["integration"] != "vendor-b" {
		t.Fatalf("vendor-b: %d %v", code, m)
	}
	if code, m := cb(url.Values{"code": {"c3"}, "referer": {"gamma.kommo.com"}, "client_id": {"env-client"}}); code != 202 || m["integration"] != "default" {
		t.Fatalf("default: %d %v", code, m)
	}
	if strings.Contains(logs.String(), "CODE-9f8e") || strings.Contains(logs.String(), "SECRET") {
		t.Fatalf("the log holds a code or a secret:\n%s", logs.String())
	}
}

func TestRevokeHookVerifiesKommosSignature(t *testing.T) {
	t.Parallel()
	f, _, _, logs := oauthSetup(t)
	ctx := context.Background()
	for _, integ := range []string{"vendor-a", "vendor-b"} {
		if err := f.st.PutAccount(ctx, store.Account{ID: 31, Integration: integ, BaseURL: "https://acme.kommo.com", AccessToken: "t"}); err != nil {
			t.Fatal(err)
		}
	}
	sig := func(secret, client, account string) string {
		return hex.EncodeToString(httpapi.RevokeSignature(secret, client, account))
	}
	revoke := func(client, account, signature string) int {
		t.Helper()
		code, _, _ := f.call(t, "GET", "/oauth/revoked?"+url.Values{"client_uuid": {client}, "account_id": {account}, "signature": {signature}}.Encode(), "", "", false)
		return code
	}
	// Signed with another secret, for another account, or not hex: refused.
	for _, c := range [][3]string{
		{"client-a", "31", sig("SECRET-B", "client-a", "31")},
		{"client-a", "31", sig("SECRET-A", "client-a", "32")},
		{"client-a", "31", "zz"},
		{"nobody", "31", sig("SECRET-A", "nobody", "31")},
	} {
		if code := revoke(c[0], c[1], c[2]); code != 403 {
			t.Fatalf("%v: %d, want 403", c, code)
		}
	}
	if a, _ := f.st.GetAccount(ctx, 31, "vendor-a"); !a.RevokedAt.IsZero() {
		t.Fatal("a refused call marked the credentials")
	}
	if code := revoke("client-a", "31", sig("SECRET-A", "client-a", "31")); code != 204 {
		t.Fatalf("signed call: %d", code)
	}
	if a, _ := f.st.GetAccount(ctx, 31, "vendor-a"); a.RevokedAt.IsZero() {
		t.Fatal("vendor-a's credentials not marked revoked")
	}
	if a, _ := f.st.GetAccount(ctx, 31, "vendor-b"); !a.RevokedAt.IsZero() {
		t.Fatal("vendor-b's credentials marked revoked by vendor-a's hook")
	}
	// New credentials (the account connects again) clear the mark.
	if err := f.st.PutAccount(ctx, store.Account{ID: 31, Integration: "vendor-a", BaseURL: "https://acme.kommo.com", AccessToken: "t2"}); err != nil {
		t.Fatal(err)
	}
	if a, _ := f.st.GetAccount(ctx, 31, "vendor-a"); !a.RevokedAt.IsZero() {
		t.Fatal("new credentials still marked revoked")
	}
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var m map[string]any
		_ = json.Unmarshal([]byte(l), &m)
		lines = append(lines, m)
	}
	if len(lines) < 5 || strings.Contains(logs.String(), "SECRET") {
		t.Fatalf("log:\n%s", logs.String())
	}
}

func TestIdempotencyKeyAnswersTheFirstAnswerAgain(t *testing.T) {
	t.Parallel()
	f, insp, queue, _ := oauthSetup(t)
	ctx := context.Background()
	for _, id := range []int64{41, 42} {
		if err := f.st.PutAccount(ctx, store.Account{ID: id, BaseURL: "https://acme.kommo.com", AccessToken: "t"}); err != nil {
			t.Fatal(err)
		}
	}
	post := func(key, body string) (int, string, http.Header) {
		t.Helper()
		req := httptest.NewRequest("POST", "http://127.0.0.1:8080/v1/installs", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+token)
		if key != "" {
			req.Header.Set("Idempotency-Key", key)
		}
		rec := httptest.NewRecorder()
		f.h.ServeHTTP(rec, req)
		return rec.Code, rec.Body.String(), rec.Header()
	}
	body := `[{"account_id":41,"widget_code":"w"},{"account_id":42,"widget_code":"w"}]`
	code1, ans1, _ := post("key-1", body)
	if code1 != 200 || !strings.Contains(ans1, `"batch_id":"b_`) {
		t.Fatalf("first: %d %s", code1, ans1)
	}
	// The client lost the answer and sends it again: the same answer, and
	// nothing enqueued twice (not even "already queued").
	code2, ans2, h2 := post("key-1", body)
	if code2 != 200 || ans2 != ans1 || h2.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("repeat: %d %s %v", code2, ans2, h2)
	}
	// The same key with another body: 409, nothing enqueued.
	if code, ans, _ := post("key-1", `[{"account_id":41,"widget_code":"other"}]`); code != 409 || !strings.Contains(ans, "Idempotency-Key") {
		t.Fatalf("conflict: %d %s", code, ans)
	}
	if pending, _ := insp.ListPendingTasks(queue); len(pending) != 2 {
		t.Fatalf("%d tasks queued, want 2", len(pending))
	}
	// Without a key, a repeat is answered afresh (already queued).
	if _, ans, _ := post("", body); !strings.Contains(ans, `"already_queued":2`) {
		t.Fatalf("no key: %s", ans)
	}
}

func TestResultsPagesWithACursor(t *testing.T) {
	t.Parallel()
	f, _, _, _ := oauthSetup(t)
	ctx := context.Background()
	for i := int64(1); i <= 7; i++ {
		r := &store.Result{AccountID: i, WidgetCode: "w", Operation: "install", Status: store.StatusInstalled, BatchID: "b_00000000000000d4"}
		if i%2 == 0 {
			r.Status, r.LastError, r.BatchID = store.StatusFailed, &store.ErrorInfo{Class: "server", At: time.Now()}, ""
		}
		if err := f.st.Record(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	var seen []float64
	path := "/v1/results?status=installed&batch=b_00000000000000d4&limit=2"
	for range 10 {
		code, m, raw := f.call(t, "GET", path, "", token, true)
		if code != 200 {
			t.Fatalf("%s: %d %s", path, code, raw)
		}
		for _, r := range m["results"].([]any) {
			seen = append(seen, r.(map[string]any)["account_id"].(float64))
		}
		next, _ := m["next_cursor"].(string)
		if next == "" {
			break
		}
		path = "/v1/results?status=installed&batch=b_00000000000000d4&limit=2&cursor=" + next
	}
	if fmt.Sprint(seen) != "[1 3 5 7]" {
		t.Fatalf("paged installed results: %v", seen)
	}
	if code, m, _ := f.call(t, "GET", "/v1/results?class=server", "", token, true); code != 200 || len(m["results"].([]any)) != 3 {
		t.Fatalf("class filter: %d %v", code, m)
	}
	if code, m, _ := f.call(t, "GET", "/v1/results?cursor=!!", "", token, false); code != 400 || m["field"] != "cursor" {
		t.Fatalf("bad cursor: %d %v", code, m)
	}
}
