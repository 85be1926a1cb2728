package main

import (
	"context"
	"strings"
	"testing"

	"github.com/hibiken/asynq"

	"github.com/widgetq/widgetq/internal/store"
	"github.com/widgetq/widgetq/tasks"
)

func TestVerifyQueuesAChecksPerInstalledResult(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := context.Background()
	for id, st := range map[int64]store.Status{5: store.StatusInstalled, 6: store.StatusAlreadyInstalled, 7: store.StatusFailed} {
		if err := e.st.Record(ctx, &store.Result{AccountID: id, WidgetCode: "w", Operation: "install", EnqueueID: "e", Status: st, BatchID: "b_00000000000000e5"}); err != nil {
			t.Fatal(err)
		}
	}
	if o := e.cli(t, "", "verify"); o.code != 2 || !strings.Contains(o.stderr, "needs a filter") {
		t.Fatalf("no filter: %+v", o)
	}
	o := e.cli(t, "", "verify", "--batch", "b_00000000000000e5")
	if o.code != 0 || !strings.Contains(o.stdout, "queued 2 checks (0 already queued)") {
		t.Fatalf("verify: %+v", o)
	}
	if o := e.cli(t, "", "verify", "--widget", "w"); !strings.Contains(o.stdout, "queued 0 checks (2 already queued)") {
		t.Fatalf("again: %+v", o)
	}
	pending, _ := asynq.NewInspectorFromRedisClient(e.r.Client).ListPendingTasks(e.queue)
	ids := map[string]bool{}
	for _, p := range pending {
		if p.Type == tasks.TypeVerifyWidget {
			ids[p.ID] = true
		}
	}
	if len(ids) != 2 || !ids[tasks.VerifyTaskID(5, "w")] || !ids[tasks.VerifyTaskID(6, "w")] {
		t.Fatalf("verify tasks %v", ids)
	}
}
