package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/hibiken/asynq"

	"github.com/widgetq/widgetq/internal/kommo/sandbox"
	"github.com/widgetq/widgetq/internal/ratelimit"
	"github.com/widgetq/widgetq/internal/retry"
	"github.com/widgetq/widgetq/internal/store"
	"github.com/widgetq/widgetq/internal/worker"
	"github.com/widgetq/widgetq/tasks"
)

// TestOneAttemptInProcess runs single attempts through RunAttempt: a 503
// on a middle attempt is retried and recorded retrying; the same on the
// last attempt fails for good; a healthy Kommo installs.
func TestOneAttemptInProcess(t *testing.T) {
	t.Parallel()
	e := setup(t, sandbox.Config{})
	e.addAccounts(t, 1, 1)
	lim, err := ratelimit.New(e.r.Client, ratelimit.Config{Prefix: e.prefix})
	if err != nil {
		t.Fatal(err)
	}
	h := worker.NewHandler(e.st, lim, worker.Config{OAuth: e.oauth(), Hosts: sandboxHosts})
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
