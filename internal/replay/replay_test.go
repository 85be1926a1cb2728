package replay_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/widgetq/widgetq/internal/redistest"
	"github.com/widgetq/widgetq/internal/replay"
	"github.com/widgetq/widgetq/internal/store"
	"github.com/widgetq/widgetq/internal/waitfor"
	"github.com/widgetq/widgetq/tasks"
)

type fixture struct {
	rp    *replay.Replayer
	st    *store.Store
	insp  *asynq.Inspector
	queue string
}

func setup(t *testing.T) *fixture {
	t.Helper()
	r := redistest.New(t)
	prefix := redistest.Unique(t)
	f := &fixture{st: store.New(r.Client, prefix), insp: asynq.NewInspectorFromRedisClient(r.Client), queue: "q-" + prefix}
	f.rp = &replay.Replayer{RDB: r.Client, Store: f.st}
	t.Cleanup(func() { _ = f.insp.DeleteQueue(f.queue, true) })
	return f
}

// archived enqueues an install for account and archives it, as asynq
// does with a task that failed for good.
func (f *fixture) archived(t *testing.T, account int64) string {
	t.Helper()
	task, err := tasks.NewInstallWidgetTask(tasks.InstallWidgetPayload{AccountID: account, WidgetCode: "w", Settings: json.RawMessage(`{}`)}, asynq.Queue(f.queue))
	if err != nil {
		t.Fatal(err)
	}
	info, err := asynq.NewClientFromRedisClient(f.st.Redis()).Enqueue(task)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.insp.ArchiveTask(f.queue, info.ID); err != nil {
		t.Fatal(err)
	}
	return info.ID
}

func TestOneMovesAnArchivedTaskBackWithItsWholeBudget(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	id := f.archived(t, 1)
	res := store.Result{AccountID: 1, WidgetCode: "w", Operation: "install", Queue: f.queue, Status: store.StatusFailed}
	if d, err := f.rp.One(ctx, res, nil, true); err != nil || d.Outcome != replay.WouldReplay {
		t.Fatalf("dry run: %+v %v", d, err)
	}
	d, err := f.rp.One(ctx, res, nil, false)
	if err != nil || d.Outcome != replay.Replayed || d.TaskID != id {
		t.Fatalf("replay: %+v %v", d, err)
	}
	info, err := f.insp.GetTaskInfo(f.queue, id)
	if err != nil || info.State != asynq.TaskStatePending || info.Retried != 0 {
		t.Fatalf("after the replay: %+v %v", info, err)
	}
	if r, err := f.st.Result(ctx, 1, "w"); err != nil || r.Status != store.StatusQueued {
		t.Fatalf("result: %+v %v", r, err)
	}
	if j, _ := f.st.JournalAll(ctx); len(j) != 0 {
		t.Fatalf("journal left: %+v", j)
	}
	// Pending now: a second replay leaves it; one that is gone is lost.
	if d, _ := f.rp.One(ctx, res, nil, false); d.Outcome != replay.Skipped || d.State != "pending" {
		t.Fatalf("again: %+v", d)
	}
	if d, _ := f.rp.One(ctx, store.Result{AccountID: 2, WidgetCode: "w", Operation: "install", Queue: f.queue}, nil, false); d.Outcome != replay.Lost {
		t.Fatalf("gone: %+v", d)
	}
}

// TestFinishJournalCompletesAnInterruptedMove: a replay journaled its move
// and died before deleting the archived task; the next finishes it.
func TestFinishJournalCompletesAnInterruptedMove(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	id := f.archived(t, 3)
	info, err := f.insp.GetTaskInfo(f.queue, id)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.st.JournalPut(ctx, store.JournalEntry{TaskID: id, Queue: f.queue, Type: info.Type, Payload: info.Payload, MaxRetry: info.MaxRetry}); err != nil {
		t.Fatal(err)
	}
	n, err := f.rp.FinishJournal(ctx)
	if err != nil || n != 1 {
		t.Fatalf("finished %d: %v", n, err)
	}
	if info, err := f.insp.GetTaskInfo(f.queue, id); err != nil || info.State != asynq.TaskStatePending {
		t.Fatalf("after finishing: %+v %v", info, err)
	}
	if j, _ := f.st.JournalAll(ctx); len(j) != 0 {
		t.Fatalf("journal left: %+v", j)
	}
}

// TestADriftReplaysTheCompletedInstall: enqueue verify found the widget
// uninstalled in Kommo; the install task asynq keeps as completed is what
// a replay queues again. Any other failure needs an archived task.
func TestADriftReplaysTheCompletedInstall(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	task, err := tasks.NewInstallWidgetTask(tasks.InstallWidgetPayload{AccountID: 3, WidgetCode: "w", Settings: json.RawMessage(`{}`)}, asynq.Queue(f.queue))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := asynq.NewClientFromRedisClient(f.st.Redis()).Enqueue(task); err != nil {
		t.Fatal(err)
	}
	srv := asynq.NewServerFromRedisClient(f.st.Redis(), asynq.Config{Concurrency: 1, Queues: map[string]int{f.queue: 1}, LogLevel: asynq.FatalLevel})
	mux := asynq.NewServeMux()
	mux.HandleFunc(tasks.TypeInstallWidget, func(context.Context, *asynq.Task) error { return nil })
	if err := srv.Start(mux); err != nil {
		t.Fatal(err)
	}
	waitfor.Until(t, 20*time.Second, func() (bool, string) {
		info, err := f.insp.GetTaskInfo(f.queue, tasks.InstallTaskID(3, "w"))
		return err == nil && info.State == asynq.TaskStateCompleted, "not completed yet"
	})
	srv.Shutdown()
	res := store.Result{AccountID: 3, WidgetCode: "w", Operation: "install", Queue: f.queue, Status: store.StatusFailed,
		LastError: &store.ErrorInfo{Class: "server", At: time.Now()}}
	if d, _ := f.rp.One(ctx, res, nil, false); d.Outcome != replay.Skipped || d.State != "completed" {
		t.Fatalf("a server failure with a completed task: %+v", d)
	}
	res.LastError.Class = "drift_uninstalled"
	if d, err := f.rp.One(ctx, res, nil, false); err != nil || d.Outcome != replay.Replayed {
		t.Fatalf("a drift: %+v %v", d, err)
	}
	if info, err := f.insp.GetTaskInfo(f.queue, tasks.InstallTaskID(3, "w")); err != nil || info.State != asynq.TaskStatePending {
		t.Fatalf("after the replay: %+v %v", info, err)
	}
}
