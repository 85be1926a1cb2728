package worker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hibiken/asynq"

	"github.com/widgetq/widgetq/internal/kommo"
	"github.com/widgetq/widgetq/internal/store"
	"github.com/widgetq/widgetq/tasks"
)

// ClassInterrupted: asynq archived the task without widgetq's verdict —
// the worker running its last attempt died or lost Redis, and asynq's
// recoverer archived it when the lease ran out. Replayable.
const ClassInterrupted = "interrupted"

// Reconcile gives a verdict to tasks asynq archived without one: for each
// task of widgetq's in the queues' archives, archived since since, whose
// result is still that enqueueing's and queued or retrying, it records
// failed with class interrupted. It never overwrites a worker's verdict or
// a newer enqueueing's result. It returns how many it recorded.
func (h *Handler) Reconcile(ctx context.Context, insp *asynq.Inspector, queues []string, since time.Time) (int, error) {
	const pageSize = 200
	n := 0
	known, err := insp.Queues()
	if err != nil {
		return 0, fmt.Errorf("reconcile: list queues: %w", err)
	}
	exists := map[string]bool{}
	for _, q := range known {
		exists[q] = true
	}
	for _, q := range queues {
		if !exists[q] {
			continue // nothing was ever queued there
		}
		qi, err := insp.GetQueueInfo(q)
		if err != nil {
			return n, fmt.Errorf("reconcile: queue %s: %w", q, err)
		}
		// The archive is in the order tasks arrived in it: walk it from
		// its newest page back to since.
	pages:
		for page := (qi.Archived + pageSize - 1) / pageSize; page >= 1; page-- {
			infos, err := insp.ListArchivedTasks(q, asynq.Page(page), asynq.PageSize(pageSize))
			if err != nil {
				return n, fmt.Errorf("reconcile: queue %s: %w", q, err)
			}
			for i := len(infos) - 1; i >= 0; i-- {
				ti := infos[i]
				if ti.LastFailedAt.Before(since) {
					break pages
				}
				if ctx.Err() != nil {
					return n, ctx.Err()
				}
				wrote, err := h.reconcileOne(ctx, q, ti)
				if err != nil {
					return n, err
				}
				if wrote {
					n++
				}
			}
		}
	}
	return n, nil
}

func (h *Handler) reconcileOne(ctx context.Context, queue string, ti *asynq.TaskInfo) (bool, error) {
	var account int64
	var code, enqueueID, op, batch, integ string
	switch ti.Type {
	case tasks.TypeInstallWidget:
		p, err := tasks.DecodeInstallWidget(ti.Payload)
		if err != nil {
			return false, nil // archived as invalid: no account to record for
		}
		account, code, enqueueID, op, batch, integ = p.AccountID, p.WidgetCode, p.EnqueueID, "install", p.BatchID, p.Integration
	case tasks.TypeUninstallWidget:
		p, err := tasks.DecodeUninstallWidget(ti.Payload)
		if err != nil {
			return false, nil
		}
		account, code, enqueueID, op, batch, integ = p.AccountID, p.WidgetCode, p.EnqueueID, "uninstall", p.BatchID, p.Integration
	default:
		return false, nil
	}
	prev, err := h.st.Result(ctx, account, code)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if prev.EnqueueID != enqueueID || prev.Status.Final() {
		return false, nil
	}
	detail := fmt.Sprintf("asynq archived the task without a verdict from widgetq (the worker running its last attempt stopped; asynq says: %s); whether Kommo acted is unknown until a replay asks",
		firstNonEmpty(ti.LastErr, "nothing"))
	now := time.Now().UTC()
	r := &store.Result{AccountID: account, WidgetCode: code, Operation: op, TaskID: ti.ID, Queue: queue, EnqueueID: enqueueID, BatchID: batch,
		Integration: firstNonEmpty(prev.Integration, integ),
		Status:      store.StatusFailed, Attempts: prev.Attempts, QueuedAt: prev.QueuedAt, CreatedAt: prev.CreatedAt,
		WidgetID: prev.WidgetID, WidgetVersion: prev.WidgetVersion, FinishedAt: now,
		LastError: &store.ErrorInfo{Class: ClassInterrupted, At: now, Detail: truncate(kommo.Redact(detail), 1000)}}
	h.event(r, false) // install.failed: the batch and its backend hear of it too
	wrote, err := h.st.RecordUnfinished(ctx, r)
	if wrote {
		h.cfg.Logger.Warn("reconciled an archived task", "op", op, "account", account, "widget", code, "task_id", ti.ID, "class", ClassInterrupted)
	}
	return wrote, err
}
