// Package replay moves failed tasks from asynq's archive back to their
// queues as fresh tasks — a new enqueue ID and the whole retry budget —
// and sets their results back to queued. Each move is journaled in Redis
// before the archived task is deleted, so an interrupted replay loses
// nothing: the next one finishes it (FinishJournal). `enqueue replay` and
// the console's replay button use it.
package replay

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/widgetq/widgetq/internal/store"
	"github.com/widgetq/widgetq/tasks"
)

// Journal is what a replay needs of widgetq's store: the journal of moves
// in progress and the queued mark of a result (*store.Store provides it).
type Journal interface {
	JournalPut(ctx context.Context, e store.JournalEntry) error
	JournalDel(ctx context.Context, taskID string) error
	JournalAll(ctx context.Context) ([]store.JournalEntry, error)
	MarkQueued(ctx context.Context, q store.Queued) (bool, error)
	MarkQueuedBatch(ctx context.Context, qs []store.Queued, bm store.BatchMarks) error
}

// Replayer replays on one Redis and store.
type Replayer struct {
	RDB   redis.UniversalClient
	Store Journal
}

// Outcome is what became of one failed result.
type Outcome string

const (
	Replayed    Outcome = "replayed"
	WouldReplay Outcome = "would_replay"
	// Skipped: the task is not archived (already queued again, running…).
	Skipped Outcome = "skipped"
	// Lost: the archived task is gone (asynq keeps 10,000 per queue for 90
	// days): enqueue it again from its source.
	Lost Outcome = "lost"
)

// Done is one result's replay.
type Done struct {
	TaskID  string
	Outcome Outcome
	// State is the task's state when Skipped.
	State string
}

// One replays the task of a failed result, looking for it in the result's
// queue, then in queues.
func (p *Replayer) One(ctx context.Context, r store.Result, queues []string, dryRun bool) (Done, error) {
	insp := asynq.NewInspectorFromRedisClient(p.RDB)
	id := r.TaskID
	if id == "" {
		id = TaskIDOf(r.Operation, r.AccountID, r.WidgetCode)
	}
	d := Done{TaskID: id}
	info, queue := findTask(insp, append([]string{r.Queue}, queues...), id)
	switch {
	case info == nil:
		d.Outcome = Lost
		return d, nil
	case info.State != asynq.TaskStateArchived && !(info.State == asynq.TaskStateCompleted && drifted(r)):
		// A drift (enqueue verify) replays the install asynq still keeps as
		// completed; anything else must be archived.
		d.Outcome, d.State = Skipped, info.State.String()
		return d, nil
	case dryRun:
		d.Outcome = WouldReplay
		return d, nil
	}
	e := store.JournalEntry{TaskID: id, Queue: queue, Type: info.Type, Payload: info.Payload, MaxRetry: info.MaxRetry, Timeout: info.Timeout, Retention: info.Retention}
	if err := p.Store.JournalPut(ctx, e); err != nil {
		return d, err
	}
	if err := insp.DeleteTask(queue, id); err != nil && !errors.Is(err, asynq.ErrTaskNotFound) {
		return d, fmt.Errorf("replay %s: delete archived task: %w", id, err)
	}
	if err := p.requeue(ctx, e); err != nil {
		return d, fmt.Errorf("replay %s: %w (journaled: the next replay finishes it)", id, err)
	}
	d.Outcome = Replayed
	return d, nil
}

// requeue enqueues a journaled task afresh — a new enqueue ID, the whole
// retry budget — marks its result queued, and forgets the journal entry.
func (p *Replayer) requeue(ctx context.Context, e store.JournalEntry) error {
	opts := []asynq.Option{asynq.Queue(e.Queue), asynq.MaxRetry(e.MaxRetry)}
	if e.Timeout > 0 {
		opts = append(opts, asynq.Timeout(e.Timeout))
	}
	if e.Retention > 0 {
		opts = append(opts, asynq.Retention(e.Retention))
	}
	var t *asynq.Task
	var op string
	var account int64
	var code, enqueueID, batch, integ string
	switch e.Type {
	case tasks.TypeInstallWidget:
		p, err := tasks.DecodeInstallWidget(e.Payload)
		if err != nil {
			return fmt.Errorf("archived payload: %w", err)
		}
		p.EnqueueID = tasks.NewEnqueueID()
		t, err = tasks.NewInstallWidgetTask(p, opts...)
		if err != nil {
			return err
		}
		op, account, code, enqueueID, batch, integ = "install", p.AccountID, p.WidgetCode, p.EnqueueID, p.BatchID, p.Integration
	case tasks.TypeUninstallWidget:
		p, err := tasks.DecodeUninstallWidget(e.Payload)
		if err != nil {
			return fmt.Errorf("archived payload: %w", err)
		}
		p.EnqueueID = tasks.NewEnqueueID()
		t, err = tasks.NewUninstallWidgetTask(p, opts...)
		if err != nil {
			return err
		}
		op, account, code, enqueueID, batch, integ = "uninstall", p.AccountID, p.WidgetCode, p.EnqueueID, p.BatchID, p.Integration
	default:
		return fmt.Errorf("unknown task type %q", e.Type)
	}
	client := asynq.NewClientFromRedisClient(p.RDB)
	if _, err := client.EnqueueContext(ctx, t); err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
		return err
	}
	q := store.Queued{Op: op, Queue: e.Queue, AccountID: account, Code: code, TaskID: e.TaskID, EnqueueID: enqueueID, Integration: integ}
	if batch != "" {
		// Back in its batch, which reopens until the task is final again.
		if err := p.Store.MarkQueuedBatch(ctx, []store.Queued{q}, store.BatchMarks{ID: batch}); err != nil {
			return err
		}
	} else if _, err := p.Store.MarkQueued(ctx, q); err != nil {
		return err
	}
	return p.Store.JournalDel(ctx, e.TaskID)
}

// FinishJournal completes the moves an interrupted replay left: a task
// still archived is moved, one already queued is left, one nowhere is
// queued from the journal.
func (p *Replayer) FinishJournal(ctx context.Context) (int, error) {
	insp := asynq.NewInspectorFromRedisClient(p.RDB)
	entries, err := p.Store.JournalAll(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range entries {
		info, err := insp.GetTaskInfo(e.Queue, e.TaskID)
		switch {
		case err == nil && info.State == asynq.TaskStateArchived:
			if err := insp.DeleteTask(e.Queue, e.TaskID); err != nil && !errors.Is(err, asynq.ErrTaskNotFound) {
				return n, err
			}
			fallthrough
		case err != nil && (errors.Is(err, asynq.ErrTaskNotFound) || strings.Contains(err.Error(), "not found")):
			if err := p.requeue(ctx, e); err != nil {
				return n, fmt.Errorf("finish replay of %s: %w", e.TaskID, err)
			}
			n++
		case err == nil:
			// Already back in the queue: only the journal entry is left.
			if err := p.Store.JournalDel(ctx, e.TaskID); err != nil {
				return n, err
			}
			n++
		default:
			return n, fmt.Errorf("finish replay of %s: %w", e.TaskID, err)
		}
	}
	return n, nil
}

func findTask(insp *asynq.Inspector, queues []string, id string) (*asynq.TaskInfo, string) {
	for _, q := range queues {
		if q == "" {
			continue
		}
		if info, err := insp.GetTaskInfo(q, id); err == nil {
			return info, q
		}
	}
	return nil, ""
}

// TaskIDOf is the task ID of an operation on an account's widget.
func TaskIDOf(op string, account int64, code string) string {
	if op == "uninstall" {
		return tasks.UninstallTaskID(account, code)
	}
	return tasks.InstallTaskID(account, code)
}

// drifted reports whether a failure is a drift `enqueue verify` found.
func drifted(r store.Result) bool {
	return r.LastError != nil && strings.HasPrefix(r.LastError.Class, "drift_")
}
