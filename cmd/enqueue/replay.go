package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/spf13/cobra"

	"github.com/widgetq/widgetq/internal/store"
	"github.com/widgetq/widgetq/tasks"
)

type replayOptions struct {
	resultFilter
	sinceRaw string
	all      bool
	dryRun   bool
}

func newReplayCmd(a *app) *cobra.Command {
	var o replayOptions
	cmd := &cobra.Command{
		Use:   "replay [--account ID] [--widget CODE] [--class C] [--since T] [--all] [--dry-run]",
		Short: "Queue failed tasks again, with their full retry budget",
		Long: `Queues again the failed tasks the filters select (or every failed task
with --all), each as a fresh task with its whole retry budget — asynq's own
run-archived-task would give an exhausted task a single try — and sets its
result back to queued. It prints what it replayed.

--class is the last error's class (e.g. server, network, blocked,
token_revoked); --since is an RFC 3339 time or a duration (2h) and selects
results updated since then.

Each move from the archive is journaled in Redis first, so a replay that is
interrupted loses no task: the next replay (or this one's retry) finishes it.`,
		Args:    cobra.NoArgs,
		PreRunE: a.needRedis,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.sinceRaw != "" {
				t, err := parseSince(o.sinceRaw, time.Now())
				if err != nil {
					return usagef("--since: %v", err)
				}
				o.since = t
			}
			if !o.all && o.account == 0 && o.widget == "" && o.class == "" && o.since.IsZero() {
				return usagef("replay needs a filter (--account, --widget, --class, --since) or --all")
			}
			return a.replay(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.Int64Var(&o.account, "account", 0, "only this account")
	f.StringVar(&o.widget, "widget", "", "only this widget code")
	f.StringVar(&o.class, "class", "", "only failures of this class")
	f.StringVar(&o.sinceRaw, "since", "", "only failures recorded since: RFC 3339 or a duration like 2h")
	f.BoolVar(&o.all, "all", false, "every failed task")
	f.BoolVar(&o.dryRun, "dry-run", false, "show what would be replayed, change nothing")
	return cmd
}

func parseSince(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("want an RFC 3339 time or a duration like 2h, got %q", s)
}

func (a *app) replay(ctx context.Context, o replayOptions) error {
	insp := asynq.NewInspectorFromRedisClient(a.rdb)
	if !o.dryRun {
		if n, err := a.finishJournal(ctx, insp); err != nil {
			return err
		} else if n > 0 {
			fmt.Fprintf(a.stdout, "finished %d replays an earlier run left half done\n", n)
		}
	}
	queues, err := insp.Queues()
	if err != nil {
		return fmt.Errorf("list queues: %w", err)
	}
	o.status = string(store.StatusFailed)
	var picked []store.Result
	if err := a.eachResult(ctx, o.resultFilter, func(r *store.Result) error { picked = append(picked, *r); return nil }); err != nil {
		return err
	}
	replayed, skipped, lost := 0, 0, 0
	for _, r := range picked {
		id := r.TaskID
		if id == "" {
			id = taskIDOf(r.Operation, r.AccountID, r.WidgetCode)
		}
		info, queue := findTask(insp, append([]string{r.Queue}, queues...), id)
		class := ""
		if r.LastError != nil {
			class = r.LastError.Class
		}
		switch {
		case info == nil:
			lost++
			fmt.Fprintf(a.stderr, "cannot replay %s (%s): the archived task is gone (asynq keeps 10,000 per queue for 90 days); enqueue it again from its source\n", id, class)
			continue
		case info.State != asynq.TaskStateArchived:
			skipped++
			fmt.Fprintf(a.stdout, "skipped %s: already %s\n", id, info.State)
			continue
		}
		if o.dryRun {
			replayed++
			fmt.Fprintf(a.stdout, "would replay %s (%s: %s)\n", id, class, clip(detailOf(r), 80))
			continue
		}
		e := store.JournalEntry{TaskID: id, Queue: queue, Type: info.Type, Payload: info.Payload, MaxRetry: info.MaxRetry, Timeout: info.Timeout, Retention: info.Retention}
		if err := a.st.JournalPut(ctx, e); err != nil {
			return err
		}
		if err := insp.DeleteTask(queue, id); err != nil && !errors.Is(err, asynq.ErrTaskNotFound) {
			return fmt.Errorf("replay %s: delete archived task: %w", id, err)
		}
		if err := a.requeue(ctx, e); err != nil {
			return fmt.Errorf("replay %s: %w (journaled: the next replay finishes it)", id, err)
		}
		replayed++
		fmt.Fprintf(a.stdout, "replayed %s (%s: %s)\n", id, class, clip(detailOf(r), 80))
	}
	verb := "replayed"
	if o.dryRun {
		verb = "would replay"
	}
	fmt.Fprintf(a.stdout, "%s %d, skipped %d, cannot replay %d (of %d failed results selected)\n", verb, replayed, skipped, lost, len(picked))
	if lost > 0 {
		return &exitError{code: exitFailure}
	}
	return nil
}

func detailOf(r store.Result) string {
	if r.LastError == nil {
		return ""
	}
	if r.LastError.Detail != "" {
		return r.LastError.Detail
	}
	return r.LastError.Title
}

func taskIDOf(op string, account int64, code string) string {
	if op == "uninstall" {
		return tasks.UninstallTaskID(account, code)
	}
	return tasks.InstallTaskID(account, code)
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

// requeue enqueues a journaled task afresh — a new enqueue ID, the whole
// retry budget — marks its result queued, and forgets the journal entry.
func (a *app) requeue(ctx context.Context, e store.JournalEntry) error {
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
	var code, enqueueID string
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
		op, account, code, enqueueID = "install", p.AccountID, p.WidgetCode, p.EnqueueID
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
		op, account, code, enqueueID = "uninstall", p.AccountID, p.WidgetCode, p.EnqueueID
	default:
		return fmt.Errorf("unknown task type %q", e.Type)
	}
	client := asynq.NewClientFromRedisClient(a.rdb)
	if _, err := client.EnqueueContext(ctx, t); err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
		return err
	}
	if _, err := a.st.MarkQueued(ctx, store.Queued{Op: op, Queue: e.Queue, AccountID: account, Code: code, TaskID: e.TaskID, EnqueueID: enqueueID}); err != nil {
		return err
	}
	return a.st.JournalDel(ctx, e.TaskID)
}

// finishJournal completes the moves an interrupted replay left: a task
// still archived is moved, one already queued is left, one nowhere is
// queued from the journal.
func (a *app) finishJournal(ctx context.Context, insp *asynq.Inspector) (int, error) {
	entries, err := a.st.JournalAll(ctx)
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
			if err := a.requeue(ctx, e); err != nil {
				return n, fmt.Errorf("finish replay of %s: %w", e.TaskID, err)
			}
			n++
		case err == nil:
			// Already back in the queue: only the journal entry is left.
			if err := a.st.JournalDel(ctx, e.TaskID); err != nil {
				return n, err
			}
			n++
		default:
			return n, fmt.Errorf("finish replay of %s: %w", e.TaskID, err)
		}
	}
	return n, nil
}
