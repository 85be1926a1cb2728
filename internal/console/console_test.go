package console

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/widgetq/widgetq/internal/redistest"
	"github.com/widgetq/widgetq/internal/replay"
	"github.com/widgetq/widgetq/internal/store"
	"github.com/widgetq/widgetq/internal/waitfor"
	"github.com/widgetq/widgetq/producer"
	"github.com/widgetq/widgetq/tasks"
)

func TestFormatPayloadHidesEverySettingValue(t *testing.T) {
	task, _ := tasks.NewInstallWidgetTask(tasks.InstallWidgetPayload{AccountID: 4, WidgetCode: "amo_x",
		Settings: []byte(`{"login":"LOGIN_V","password":"PASS_V","operators":{"1":{"login":"a","password":"LP_V"}}}`)})
	out := FormatPayload(tasks.TypeInstallWidget, task.Payload())
	for _, leak := range []string{"LOGIN_V", "PASS_V", "LP_V"} {
		if strings.Contains(out, leak) {
			t.Fatalf("shows %s: %s", leak, out)
		}
	}
	if !strings.Contains(out, `"password": "•••"`) || !strings.Contains(out, `"account_id": 4`) || !strings.Contains(out, "amo_x") {
		t.Fatalf("payload view: %s", out)
	}
	sealed, _ := tasks.NewInstallWidgetTask(tasks.InstallWidgetPayload{AccountID: 4, WidgetCode: "amo_x", SealedSettings: "wqs1.00000000.AAAA"})
	if out := FormatPayload(tasks.TypeInstallWidget, sealed.Payload()); !strings.Contains(out, "(sealed)") || strings.Contains(out, "wqs1") {
		t.Fatalf("sealed: %s", out)
	}
	if out := FormatPayload(tasks.TypeInstallWidget, []byte(`{"account_id":1,"widget_code":"w","password":"GARBAGE_V"}`)); strings.Contains(out, "GARBAGE_V") || !strings.Contains(out, "not a valid widgetq payload") {
		t.Fatalf("garbage: %s", out)
	}
	if out := FormatPayload("email:send", []byte(`{"to":"x@y"}`)); strings.Contains(out, "x@y") {
		t.Fatalf("another program's task: %s", out)
	}
	// A connect task's authorization code is a credential: never shown.
	connect := []byte(`{"integration":"vendor-a","base_url":"https://acme.kommo.com","code":"def-CODE-77","received_at":"2026-12-04T06:00:00Z"}`)
	if out := FormatPayload(tasks.TypeConnectAccount, connect); strings.Contains(out, "CODE-77") || !strings.Contains(out, "vendor-a") {
		t.Fatalf("connect task: %s", out)
	}
}

func TestResultsPageReplaysWhenWritable(t *testing.T) {
	r := redistest.New(t)
	prefix := redistest.Unique(t)
	queue := "q-" + prefix
	st := store.New(r.Client, prefix)
	prod := producer.New(r.Client, prefix, asynq.Queue(queue))
	defer prod.Close()
	ctx := context.Background()
	if _, err := prod.Install(ctx, tasks.InstallWidgetPayload{AccountID: 1, WidgetCode: "w", Settings: []byte(`{"password":"PW_X"}`)}); err != nil {
		t.Fatal(err)
	}
	// The task fails for good: archived, its result failed.
	srv := asynq.NewServer(r.Opt(), asynq.Config{Concurrency: 1, Queues: map[string]int{queue: 1}, LogLevel: asynq.FatalLevel})
	mux := asynq.NewServeMux()
	mux.HandleFunc(tasks.TypeInstallWidget, func(context.Context, *asynq.Task) error { return asynq.SkipRetry })
	if err := srv.Start(mux); err != nil {
		t.Fatal(err)
	}
	insp := asynq.NewInspectorFromRedisClient(r.Client)
	waitfor.Until(t, 20*time.Second, func() (bool, string) {
		qi, err := insp.GetQueueInfo(queue)
		return err == nil && qi.Archived == 1, "not archived"
	})
	srv.Shutdown()
	res, _ := st.Result(ctx, 1, "w")
	res.Status, res.LastError = store.StatusFailed, &store.ErrorInfo{Class: "server", Detail: "503", At: time.Now()}
	if err := st.Record(ctx, res); err != nil {
		t.Fatal(err)
	}

	view := &Results{Store: st, Prefix: "/results"}
	rec := httptest.NewRecorder()
	view.ServeHTTP(rec, httptest.NewRequest("GET", "/results", nil))
	if !strings.Contains(rec.Body.String(), "enqueue replay --account 1 --widget w") || strings.Contains(rec.Body.String(), "<button>replay</button>") {
		t.Fatalf("view-only page: %s", rec.Body.String())
	}
	rec = httptest.NewRecorder()
	view.Replay(rec, httptest.NewRequest("POST", "/results/replay?account=1&widget=w", nil))
	if rec.Code != http.StatusForbidden {
		t.Fatalf("view-only replay: %d", rec.Code)
	}

	h := &Results{Store: st, Prefix: "/results", Replayer: &replay.Replayer{RDB: r.Client, Store: st}}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/results", nil))
	if !strings.Contains(rec.Body.String(), "<button>replay</button>") || strings.Contains(rec.Body.String(), "PW_X") {
		t.Fatalf("writable page: %s", rec.Body.String())
	}
	req := httptest.NewRequest("POST", "/results/replay", strings.NewReader("account=1&widget=w"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "https://evil.example")
	rec = httptest.NewRecorder()
	h.Replay(rec, req)
	if rec.Code != http.StatusForbidden {
		t.Fatalf("cross-origin replay: %d", rec.Code)
	}
	req = httptest.NewRequest("POST", "/results/replay", strings.NewReader("account=1&widget=w"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "http://"+req.Host)
	rec = httptest.NewRecorder()
	h.Replay(rec, req)
	if rec.Code != http.StatusSeeOther || !strings.Contains(rec.Header().Get("Location"), "replayed") {
		t.Fatalf("replay: %d %v", rec.Code, rec.Header())
	}
	if got, _ := st.Result(ctx, 1, "w"); got.Status != store.StatusQueued {
		t.Fatalf("after replay: %s", got.Status)
	}
	if qi, _ := insp.GetQueueInfo(queue); qi.Pending != 1 || qi.Archived != 0 {
		t.Fatalf("queue after replay: %+v", qi)
	}
}

func TestResultsPageFiltersByIntegration(t *testing.T) {
	t.Parallel()
	r := redistest.New(t)
	st := store.New(r.Client, redistest.Unique(t))
	ctx := context.Background()
	for id, integ := range map[int64]string{11: "vendor-a", 12: "vendor-b", 13: ""} {
		if err := st.Record(ctx, &store.Result{AccountID: id, WidgetCode: "w", Integration: integ, Operation: "install", Status: store.StatusFailed,
			LastError: &store.ErrorInfo{Class: "server", At: time.Now()}}); err != nil {
			t.Fatal(err)
		}
	}
	view := &Results{Store: st, Prefix: "/results"}
	get := func(q string) string {
		rec := httptest.NewRecorder()
		view.ServeHTTP(rec, httptest.NewRequest("GET", "/results?"+q, nil))
		return rec.Body.String()
	}
	page := get("integration=vendor-b")
	if !strings.Contains(page, "<td>12</td>") || strings.Contains(page, "<td>11</td>") || strings.Contains(page, "<td>13</td>") ||
		!strings.Contains(page, "enqueue replay --integration vendor-b") && !strings.Contains(page, "enqueue replay --account 12") {
		t.Fatalf("vendor-b's page:\n%s", page)
	}
	// Results from before integrations are the default's.
	if page := get("integration=default"); !strings.Contains(page, "<td>13</td>") || !strings.Contains(page, "<td>default</td>") || strings.Contains(page, "<td>12</td>") {
		t.Fatalf("default's page:\n%s", page)
	}
}
