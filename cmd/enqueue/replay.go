package main

import (
	"context"
	"fmt"
	"time"

	"github.com/hibiken/asynq"
	"github.com/spf13/cobra"

	"github.com/widgetq/widgetq/internal/replay"
	"github.com/widgetq/widgetq/internal/store"
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
		Use:   "replay [--account ID] [--widget CODE] [--integration NAME] [--batch ID] [--class C] [--since T] [--all] [--dry-run]",
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
			if !o.all && o.account == 0 && o.widget == "" && o.class == "" && o.integ == "" && o.batch == "" && o.since.IsZero() {
				return usagef("replay needs a filter (--account, --widget, --integration, --batch, --class, --since) or --all")
			}
			return a.replay(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.Int64Var(&o.account, "account", 0, "only this account")
	f.StringVar(&o.widget, "widget", "", "only this widget code")
	f.StringVar(&o.class, "class", "", "only failures of this class")
	f.StringVar(&o.integ, "integration", "", "only this integration's failures")
	f.StringVar(&o.batch, "batch", "", "only this batch's failures (the batch reopens)")
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
	rp := &replay.Replayer{RDB: a.rdb, Store: a.st}
	if !o.dryRun {
		if n, err := rp.FinishJournal(ctx); err != nil {
			return err
		} else if n > 0 {
			fmt.Fprintf(a.stdout, "finished %d replays an earlier run left half done\n", n)
		}
	}
	queues, err := asynq.NewInspectorFromRedisClient(a.rdb).Queues()
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
		class := ""
		if r.LastError != nil {
			class = r.LastError.Class
		}
		d, err := rp.One(ctx, r, queues, o.dryRun)
		if err != nil {
			return err
		}
		switch d.Outcome {
		case replay.Lost:
			lost++
			fmt.Fprintf(a.stderr, "cannot replay %s (%s): the archived task is gone (asynq keeps 10,000 per queue for 90 days); enqueue it again from its source\n", d.TaskID, class)
		case replay.Skipped:
			skipped++
			fmt.Fprintf(a.stdout, "skipped %s: already %s\n", d.TaskID, d.State)
		case replay.WouldReplay:
			replayed++
			fmt.Fprintf(a.stdout, "would replay %s (%s: %s)\n", d.TaskID, class, clip(detailOf(r), 80))
		default:
			replayed++
			fmt.Fprintf(a.stdout, "replayed %s (%s: %s)\n", d.TaskID, class, clip(detailOf(r), 80))
		}
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
