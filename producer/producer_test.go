package producer_test

import (
	"context"
	"testing"

	"github.com/hibiken/asynq"

	"github.com/widgetq/widgetq/internal/redistest"
	"github.com/widgetq/widgetq/internal/store"
	"github.com/widgetq/widgetq/producer"
	"github.com/widgetq/widgetq/tasks"
)

func TestUninstallManyGivesEachItsOutcome(t *testing.T) {
	t.Parallel()
	r := redistest.New(t)
	prefix := redistest.Unique(t)
	queue := "q-" + prefix
	p := producer.New(r.Client, prefix, asynq.Queue(queue))
	defer p.Close()
	ctx := context.Background()
	st := store.New(r.Client, prefix)
	if err := st.PutAccount(ctx, store.Account{ID: 1, BaseURL: "https://one.kommo.com", AccessToken: "x"}); err != nil {
		t.Fatal(err)
	}
	batch := []tasks.UninstallWidgetPayload{{AccountID: 1, WidgetCode: "w"}, {AccountID: 2, WidgetCode: "w"}, {AccountID: 1, WidgetCode: "bad code"}}
	dry := p.UninstallMany(ctx, batch, producer.BatchOptions{RequireAccounts: true, DryRun: true})
	if dry[0].Outcome != producer.Queued {
		t.Fatalf("dry run: %+v", dry)
	}
	if qi, err := asynq.NewInspectorFromRedisClient(r.Client).GetQueueInfo(queue); err == nil && qi.Size != 0 {
		t.Fatalf("a dry run queued %d", qi.Size)
	}
	res := p.UninstallMany(ctx, batch, producer.BatchOptions{RequireAccounts: true})
	want := []producer.Outcome{producer.Queued, producer.Invalid, producer.Invalid}
	for i, w := range want {
		if res[i].Outcome != w {
			t.Errorf("item %d: %s (%v), want %s", i, res[i].Outcome, res[i].Err, w)
		}
	}
	if res[0].TaskID != "uninstall:1:w" {
		t.Fatalf("task ID %q", res[0].TaskID)
	}
	if again := p.UninstallMany(ctx, batch[:1], producer.BatchOptions{}); again[0].Outcome != producer.AlreadyQueued {
		t.Fatalf("again: %+v", again[0])
	}
	got, err := st.Result(ctx, 1, "w")
	if err != nil || got.Status != store.StatusQueued || got.Operation != "uninstall" || got.Queue != queue {
		t.Fatalf("result %+v %v", got, err)
	}
}

// TestQueuedMarksNameTheIntegration: a queued result names the payload's
// integration, else its widget's registered owner — the one a worker will
// run it as — before any worker ran it.
func TestQueuedMarksNameTheIntegration(t *testing.T) {
	t.Parallel()
	r := redistest.New(t)
	prefix := redistest.Unique(t)
	p := producer.New(r.Client, prefix, asynq.Queue("q-"+prefix))
	defer p.Close()
	ctx := context.Background()
	st := store.New(r.Client, prefix)
	if err := st.PutIntegration(ctx, store.Integration{Name: "vendor-a", ClientID: "a", ClientSecret: "s", RedirectURI: "https://v.example/a", Widgets: []string{"w_a"}}); err != nil {
		t.Fatal(err)
	}
	res := p.InstallMany(ctx, []tasks.InstallWidgetPayload{{AccountID: 1, WidgetCode: "w_a"}, {AccountID: 1, WidgetCode: "w_free"}, {AccountID: 2, WidgetCode: "w_a", Integration: "vendor-b"}}, producer.BatchOptions{})
	for i, want := range []string{"vendor-a", "", "vendor-b"} {
		if res[i].Err != nil {
			t.Fatal(res[i].Err)
		}
		acct, code := int64(1), []string{"w_a", "w_free", "w_a"}[i]
		if i == 2 {
			acct = 2
		}
		got, err := st.Result(ctx, acct, code)
		if err != nil || got.Integration != want {
			t.Errorf("item %d: integration %q (%v), want %q", i, got.Integration, err, want)
		}
	}
}
