package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hibiken/asynq"
	"github.com/spf13/cobra"

	"github.com/widgetq/widgetq/internal/reseal"
	"github.com/widgetq/widgetq/internal/store"
	"github.com/widgetq/widgetq/producer"
	"github.com/widgetq/widgetq/tasks"
)

func newInstallCmd(a *app) *cobra.Command {
	var account int64
	var widget, settings, integ string
	cmd := &cobra.Command{
		Use:   "install --account ID --widget CODE [--settings JSON|@FILE] [--integration NAME]",
		Short: "Enqueue one install",
		Long: `Enqueues the install of a widget into an account. --settings is the
install body, a JSON object keyed by the widget's settings_template keys,
given inline or as @FILE. The account must have stored credentials.
--integration names whose credentials install it (default: the widget's
registered owner, else the integration named default).`,
		Args:    cobra.NoArgs,
		PreRunE: a.needRedis,
		RunE: func(cmd *cobra.Command, _ []string) error {
			raw := []byte(settings)
			if path, ok := strings.CutPrefix(settings, "@"); ok {
				b, err := os.ReadFile(path)
				if err != nil {
					return fmt.Errorf("cannot read settings file %s: %w", path, unwrapPathErr(err))
				}
				raw = b
			}
			p := tasks.InstallWidgetPayload{AccountID: account, WidgetCode: widget, Settings: json.RawMessage(raw), Integration: integ}
			if err := p.Validate(); err != nil {
				return &usageError{err}
			}
			res := a.prod.InstallMany(cmd.Context(), []tasks.InstallWidgetPayload{p}, producer.BatchOptions{RequireAccounts: true})[0]
			return a.report(res, p.AccountID, p.WidgetCode)
		},
	}
	f := cmd.Flags()
	f.Int64Var(&account, "account", 0, "account ID")
	f.StringVar(&widget, "widget", "", "widget code")
	f.StringVar(&settings, "settings", "", "settings: a JSON object, or @FILE")
	f.StringVar(&integ, "integration", "", "integration whose credentials to use (default: the widget's owner, else default)")
	_ = cmd.MarkFlagRequired("account")
	_ = cmd.MarkFlagRequired("widget")
	return cmd
}

func (a *app) report(res producer.Result, account int64, code string) error {
	switch res.Outcome {
	case producer.Queued:
		fmt.Fprintf(a.stdout, "queued %s\n", res.TaskID)
		if res.Err != nil {
			return res.Err
		}
	case producer.AlreadyQueued:
		fmt.Fprintf(a.stdout, "already queued %s (nothing added)\n", res.TaskID)
	case producer.Invalid:
		if errors.Is(res.Err, producer.ErrNoCredentials) {
			return fmt.Errorf("%w: import it first (enqueue accounts import / add)", res.Err)
		}
		return &usageError{res.Err}
	default:
		return res.Err
	}
	return nil
}

func newUninstallCmd(a *app) *cobra.Command {
	var account int64
	var widget, integ string
	cmd := &cobra.Command{
		Use:     "uninstall --account ID --widget CODE [--integration NAME]",
		Short:   "Enqueue one uninstall",
		Args:    cobra.NoArgs,
		PreRunE: a.needRedis,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p := tasks.UninstallWidgetPayload{AccountID: account, WidgetCode: widget, Integration: integ}
			if err := p.Validate(); err != nil {
				return &usageError{err}
			}
			exist, err := a.st.AccountsExist(cmd.Context(), []int64{account})
			if err != nil {
				return err
			}
			if !exist[account] {
				return fmt.Errorf("account %d: %w: import it first", account, producer.ErrNoCredentials)
			}
			out, err := a.prod.Uninstall(cmd.Context(), p)
			if err != nil {
				return err
			}
			return a.report(producer.Result{Outcome: out, TaskID: tasks.UninstallTaskID(account, widget)}, account, widget)
		},
	}
	cmd.Flags().Int64Var(&account, "account", 0, "account ID")
	cmd.Flags().StringVar(&widget, "widget", "", "widget code")
	cmd.Flags().StringVar(&integ, "integration", "", "integration whose credentials to use (default: the widget's owner, else default)")
	_ = cmd.MarkFlagRequired("account")
	_ = cmd.MarkFlagRequired("widget")
	return cmd
}

type resultFilter struct {
	account int64
	widget  string
	status  string
	class   string
	since   time.Time
	integ   string
	batch   string
}

func (f resultFilter) match(r *store.Result) bool {
	if f.widget != "" && r.WidgetCode != f.widget {
		return false
	}
	if f.integ != "" && store.IntegrationOf(r.Integration) != f.integ {
		return false
	}
	if f.batch != "" && r.BatchID != f.batch {
		return false
	}
	if f.class != "" && (r.LastError == nil || r.LastError.Class != f.class) {
		return false
	}
	if !f.since.IsZero() && r.UpdatedAt.Before(f.since) {
		return false
	}
	return true
}

// eachResult pages through the results the filter selects.
func (a *app) eachResult(ctx context.Context, f resultFilter, fn func(*store.Result) error) error {
	q := store.Query{AccountID: f.account, Status: store.Status(f.status), Limit: 500}
	for {
		page, err := a.st.Results(ctx, q)
		if err != nil {
			return err
		}
		for i := range page.Results {
			if f.match(&page.Results[i]) {
				if err := fn(&page.Results[i]); err != nil {
					return err
				}
			}
		}
		if len(page.Results) < q.Limit {
			return nil
		}
		q.Offset += q.Limit
	}
}

func newResultsCmd(a *app) *cobra.Command {
	var f resultFilter
	var format string
	cmd := &cobra.Command{
		Use:   "results [--account ID] [--widget CODE] [--integration NAME] [--batch ID] [--status S] [--format table|jsonl|csv]",
		Short: "Show the result of every account's install (no secrets)",
		Long: `Shows one record per (account, widget): status, attempts, and the last
error's class, HTTP status, title, detail and Kommo request ID.
Statuses: queued, retrying, installed, already_installed, failed, uninstalled.`,
		Args:    cobra.NoArgs,
		PreRunE: a.needRedis,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.status != "" && !store.Status(f.status).Valid() {
				return usagef("--status: %q is not one of queued, retrying, installed, already_installed, failed, uninstalled", f.status)
			}
			var enc func(*store.Result) error
			var flush func() error
			switch format {
			case "jsonl":
				je := json.NewEncoder(a.stdout)
				enc = func(r *store.Result) error { return je.Encode(r) }
				flush = func() error { return nil }
			case "csv":
				cw := csv.NewWriter(a.stdout)
				_ = cw.Write([]string{"account_id", "widget_code", "operation", "status", "attempts", "class", "http_status", "title", "detail", "request_id", "updated_at", "integration"})
				enc = func(r *store.Result) error { return cw.Write(resultRow(r)) }
				flush = func() error { cw.Flush(); return cw.Error() }
			case "table":
				tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "ACCOUNT\tWIDGET\tINTEGRATION\tOP\tSTATUS\tATTEMPTS\tCLASS\tHTTP\tDETAIL\tREQUEST ID\tUPDATED")
				enc = func(r *store.Result) error {
					row := resultRow(r)
					row[8] = clip(row[8], 70)
					_, err := fmt.Fprintln(tw, strings.Join(append([]string{row[0], row[1], row[11]}, append(row[2:7:7], row[8], row[9], row[10])...), "\t"))
					return err
				}
				flush = tw.Flush
			default:
				return usagef("--format: want table, jsonl or csv, got %q", format)
			}
			n := 0
			if err := a.eachResult(cmd.Context(), f, func(r *store.Result) error { n++; return enc(r) }); err != nil {
				return err
			}
			if err := flush(); err != nil {
				return err
			}
			if n == 0 && format == "table" {
				fmt.Fprintln(a.stderr, "no results match")
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.Int64Var(&f.account, "account", 0, "only this account")
	fl.StringVar(&f.widget, "widget", "", "only this widget code")
	fl.StringVar(&f.status, "status", "", "only this status")
	fl.StringVar(&f.integ, "integration", "", "only this integration's (default's include results from before integrations)")
	fl.StringVar(&f.batch, "batch", "", "only this batch's (enqueue batches list)")
	fl.StringVar(&format, "format", "table", "table, jsonl or csv")
	return cmd
}

func resultRow(r *store.Result) []string {
	class, status, title, detail, req := "", "", "", "", ""
	if e := r.LastError; e != nil {
		class, title, detail, req = e.Class, e.Title, e.Detail, e.RequestID
		if e.HTTPStatus != 0 {
			status = strconv.Itoa(e.HTTPStatus)
		}
	}
	return []string{strconv.FormatInt(r.AccountID, 10), r.WidgetCode, r.Operation, string(r.Status), strconv.Itoa(r.Attempts),
		class, status, title, detail, req, r.UpdatedAt.Format(time.RFC3339), store.IntegrationOf(r.Integration)}
}

func clip(s string, n int) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len([]rune(s)) <= n {
		return s
	}
	return string([]rune(s)[:n]) + "…"
}

func newStatusCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:     "status",
		Short:   "Counts by result status, queue sizes, the oldest pending task's age, blocked accounts",
		Args:    cobra.NoArgs,
		PreRunE: a.needRedis,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			counts, err := a.st.CountByStatus(ctx)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "RESULTS\t")
			var total int64
			for _, s := range store.Statuses {
				fmt.Fprintf(tw, "  %s\t%d\n", s, counts[s])
				total += counts[s]
			}
			fmt.Fprintf(tw, "  total\t%d\n", total)
			insp := asynq.NewInspectorFromRedisClient(a.rdb)
			queues, err := insp.Queues()
			if err != nil {
				return fmt.Errorf("list queues: %w", err)
			}
			sort.Strings(queues)
			fmt.Fprintln(tw, "\nQUEUE\tPENDING\tACTIVE\tSCHEDULED\tRETRY\tARCHIVED\tCOMPLETED\tOLDEST PENDING")
			for _, q := range queues {
				qi, err := insp.GetQueueInfo(q)
				if err != nil && reseal.QueueGone(insp, q) {
					continue // deleted since it was listed
				}
				if err != nil {
					return fmt.Errorf("queue %s: %w", q, err)
				}
				oldest := "-"
				if qi.Pending > 0 {
					oldest = qi.Latency.Round(time.Second).String()
				}
				fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%s\n", q, qi.Pending, qi.Active, qi.Scheduled, qi.Retry, qi.Archived, qi.Completed, oldest)
			}
			if len(queues) == 0 {
				fmt.Fprintln(tw, "(no queues yet)")
			}
			blocked, err := a.st.ListBlocked(ctx)
			if err != nil {
				return err
			}
			if p, err := a.st.KommoPaused(ctx); err != nil {
				return err
			} else if p.For(time.Now()) > 0 {
				fmt.Fprintf(tw, "\nKOMMO PAUSED\tall traffic, by every worker, until %s: HTML 403 blocks from accounts %v at once (an IP block); lift with `enqueue accounts unblock --all` once Kommo support lifted it\n",
					p.Until.Format(time.RFC3339), p.Accounts)
			}
			fmt.Fprintf(tw, "\nBLOCKED ACCOUNTS\t%d\n", len(blocked))
			for _, b := range blocked {
				fmt.Fprintf(tw, "  %d\tsince %s, until %s (request %s)\n", b.AccountID, b.Since.Format(time.RFC3339), b.Until.Format(time.RFC3339), b.RequestID)
			}
			return tw.Flush()
		},
	}
}
